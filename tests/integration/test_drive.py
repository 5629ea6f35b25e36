"""mount_drive outside a notebook cell: Colab can only ask for Drive consent from a notebook kernel.

In a cell, google.colab's drive.mount() shows Google's consent through the notebook's front end.
From Colab's terminal, a `!colab-ssh start --mount-drive` line or the supervisor (separate
processes, no kernel) it cannot ask anyone: the google.colab stand-ins (conftest's ``colab``
fixture in-process, the stub package below for subprocesses) refuse there as the real one does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from colab_ssh import ColabSSHError, start_ssh
from colab_ssh import colab as colab_module

from ..support.host import our_processes
from ..support.stand_ins import ColabStub

FIX = 'from google.colab import drive; drive.mount("/content/drive")'

# A google.colab whose drive.mount() behaves as the real one outside a kernel: the consent request
# goes through ipykernel's IPKernelApp, which has no kernel there (colabtools
# google/colab/drive.py:133-138, _message.py:116,137).
STUB_DRIVE = """
def mount(mount_point, force_remount=False, timeout_ms=120000, readonly=False):
    from ipykernel.kernelapp import IPKernelApp
    if not IPKernelApp.initialized():
        raise AttributeError("'NoneType' object has no attribute 'shell'")
    raise AssertionError("a test reached a consent prompt")
"""


@pytest.fixture
def no_drive_here() -> None:
    if Path("/content/drive").is_mount():
        pytest.skip("this machine has Drive mounted at /content/drive")


@pytest.fixture
def mounted_drive(tmp_path: Path) -> Iterator[Path]:
    """A real mount (tmpfs) with a MyDrive folder, as Colab's FUSE mount of Drive has."""
    mount_point = tmp_path / "drive"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "colab-ssh-test-drive", str(mount_point)], check=True)
    try:
        (mount_point / "MyDrive").mkdir()
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_outside_a_cell_an_unmounted_drive_fails_at_once_with_the_fix(
    colab: ColabStub, test_user, port, state_dir, no_drive_here
):
    colab.in_kernel = False

    with pytest.raises(ColabSSHError) as raised:
        start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, mount_drive=True, quiet=True)

    assert FIX in str(raised.value)
    assert "pop-up" not in str(raised.value)  # there is no pop-up outside a cell
    assert type(raised.value).__name__ == "DriveNotMountedError"
    assert colab.mounts == []
    assert our_processes(state_dir) == []
    assert not (state_dir / "sshd_config").exists()


def test_outside_a_cell_a_mounted_drive_is_used_as_it_is(colab: ColabStub, mounted_drive):
    colab.in_kernel = False

    assert colab_module.drive_mounted(str(mounted_drive))
    assert colab_module.mount_drive(str(mounted_drive)) == str(mounted_drive)
    assert colab.mounts == []  # nobody was asked


def test_in_a_cell_a_mounted_drive_is_not_mounted_again(colab: ColabStub, mounted_drive):
    """The real drive.mount() asks for consent before it looks for a mount (colabtools
    google/colab/drive.py:133-143): a re-run must not ask again."""
    assert colab_module.mount_drive(str(mounted_drive)) == str(mounted_drive)
    assert colab.mounts == []


def test_the_command_line_fails_at_once_with_the_fix(tmp_path, test_user, port, state_dir, no_drive_here):
    """`colab-ssh start --mount-drive` in Colab's terminal: refused before any supervisor starts."""
    stubs = tmp_path / "stubs"
    (stubs / "google" / "colab").mkdir(parents=True)
    (stubs / "google" / "colab" / "__init__.py").write_text("")
    (stubs / "google" / "colab" / "drive.py").write_text(STUB_DRIVE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stubs), *sys.path]), "COLAB_RELEASE_TAG": "test"}

    result = subprocess.run(
        [sys.executable, "-m", "colab_ssh", "start", "--tunnel", "none", "--port", str(port),
         "--user", test_user, "--state-dir", str(state_dir), "--mount-drive"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip

    assert result.returncode == 1, result.stdout + result.stderr
    assert FIX in result.stderr
    assert "pop-up" not in result.stderr
    assert not (state_dir / "supervisor.pid").exists()
    assert our_processes(state_dir) == []
