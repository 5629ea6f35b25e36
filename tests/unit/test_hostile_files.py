"""A NUL in a folder argument is a ColabSSHError before anything is touched (planted links are in
tests/integration/test_hostile_files.py)."""

from __future__ import annotations

import pytest

from colab_ssh import ColabSSHError, stop_ssh


def test_a_nul_in_stop_ssh_state_dir_is_a_colab_ssh_error():
    with pytest.raises(ColabSSHError, match="NUL"):
        stop_ssh(state_dir="/tmp/a\0b")
