"""Everything that needs Google Colab: secrets, Drive, and telling whether we are in it."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from .errors import ColabOnlyError, ColabSSHError
from .platform import in_notebook, running_shell

__all__ = ["can_prompt", "mount_drive", "read_colab_secret"]

DRIVE_MOUNT_POINT = "/content/drive"


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


def mount_drive() -> str:
    """Mount Google Drive at /content/drive (Colab asks the user to authorise it)."""
    try:
        drive = _colab_module("drive")
    except ImportError:
        raise ColabOnlyError(
            "mount_drive=True needs Google Colab (google.colab is not importable here). On other"
            " machines, mount your storage yourself and leave mount_drive off."
        ) from None
    try:
        drive.mount(DRIVE_MOUNT_POINT)
    except Exception as error:  # Colab raises assorted errors when authorisation fails
        raise ColabSSHError(
            f"Mounting Google Drive at {DRIVE_MOUNT_POINT} failed ({type(error).__name__}: {error})."
            " Allow access in the pop-up, or start without mount_drive=True."
        ) from error
    return DRIVE_MOUNT_POINT


def can_prompt() -> bool:
    """Whether there is someone to ask: a terminal, or a notebook front end that accepts input."""
    stdin = sys.stdin
    if stdin is not None and stdin.isatty():
        return True
    kernel = getattr(running_shell(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))
