"""Everything that needs Google Colab: secrets, Drive, and telling whether we are in it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from .errors import ColabOnlyError, ColabSSHError, DriveNotMountedError
from .platform import in_notebook, running_shell

__all__ = ["DRIVE_FIX", "can_prompt", "drive_mounted", "mount_drive", "read_colab_secret"]

DRIVE_MOUNT_POINT = "/content/drive"
DRIVE_FIX = (
    'run `from google.colab import drive; drive.mount("/content/drive")` in a notebook cell first'
    " (Google asks for your consent there), then start again"
)


def _colab_module(name: str) -> Any:
    return importlib.import_module(f"google.colab.{name}")


def read_colab_secret(name: str) -> tuple[str | None, str]:
    """The secret's value, or None and why not (for an error message that lists what we tried)."""
    try:
        userdata = _colab_module("userdata")
    except ImportError:
        return None, "not in Colab"
    if not in_notebook():
        # Outside a notebook cell (Colab's terminal, a supervisor) the lookup waits for a UI
        # that is not there until it times out.
        return None, "only readable from a notebook cell"
    try:
        value = userdata.get(name)
    except Exception as error:
        reason = {
            "SecretNotFoundError": "no such secret",
            "NotebookAccessError": "the notebook has no access to it (toggle access in the key panel)",
        }.get(type(error).__name__, f"unreadable ({type(error).__name__})")
        return None, reason
    if not value:
        return None, "empty"
    return str(value), "found"


def drive_mounted(mount_point: str = DRIVE_MOUNT_POINT) -> bool:
    """Whether Drive is mounted at ``mount_point``: a mount with a "MyDrive" (or "My Drive") in it."""
    folder = Path(mount_point)
    return folder.is_mount() and any((folder / name).is_dir() for name in ("MyDrive", "My Drive"))


def mount_drive(mount_point: str = DRIVE_MOUNT_POINT) -> str:
    """Mount Google Drive at ``mount_point`` (Colab asks the user to authorise it).

    Outside a notebook cell nobody can be asked: google.colab's drive.mount() sends its consent
    request through the notebook kernel (google/colab/drive.py, _message.send_request), which a
    terminal or the supervisor does not have. An already mounted Drive is used as it is, in a
    cell too (no second consent prompt); otherwise, outside a cell, we fail at once with the fix.
    """
    try:
        drive = _colab_module("drive")
    except ImportError:
        raise ColabOnlyError(
            "mount_drive=True needs Google Colab (google.colab is not importable here). On other"
            " machines, mount your storage yourself and leave mount_drive off."
        ) from None
    if drive_mounted(mount_point):
        # Even in a cell: drive.mount() asks for consent before it checks for a mount
        # (google/colab/drive.py:133-143), so calling it again would prompt on every re-run.
        return mount_point
    if not in_notebook():
        raise DriveNotMountedError(
            f"Google Drive is not mounted at {mount_point}, and only a notebook cell can mount it"
            f" (this is a terminal or a background process): {DRIVE_FIX}."
        )
    try:
        drive.mount(mount_point)
    except Exception as error:  # Colab raises assorted errors when authorisation fails
        raise ColabSSHError(
            f"Mounting Google Drive at {mount_point} failed ({type(error).__name__}: {error})."
            " Allow access in the pop-up, or start without mount_drive=True."
        ) from error
    return mount_point


def can_prompt() -> bool:
    """Whether there is someone to ask: a terminal, or a notebook front end that accepts input."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        return True
    kernel = getattr(running_shell(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))
