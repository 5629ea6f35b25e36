"""mount_drive with the google.colab stub: a plain folder is not Drive; in a cell Drive is mounted
through google.colab. Real mounts are in tests/integration/test_drive.py."""

from __future__ import annotations

import pytest

from colab_ssh import ColabSSHError
from colab_ssh import colab as colab_module

from ..support.stand_ins import ColabStub


def test_a_folder_that_is_not_a_mount_is_not_drive(colab: ColabStub, tmp_path):
    """A plain /content/drive/MyDrive folder (someone's mkdir) is not Drive: writing there would
    vanish with the runtime."""
    colab.in_kernel = False
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)

    assert not colab_module.drive_mounted(str(tmp_path / "drive"))
    with pytest.raises(ColabSSHError, match="only a notebook cell can mount it"):
        colab_module.mount_drive(str(tmp_path / "drive"))


def test_in_a_cell_drive_is_mounted_through_colab(colab: ColabStub, tmp_path):
    assert colab_module.mount_drive(str(tmp_path / "drive")) == str(tmp_path / "drive")
    assert colab.mounts == [str(tmp_path / "drive")]
