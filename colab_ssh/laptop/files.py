"""Reading and writing the user's ssh files on the laptop: the only side effects of connect/disconnect.

A write is atomic (a temporary file in the same folder, then ``os.replace``, which also replaces
an existing file on Windows), keeps the file's mode (a new file gets 0600, a new ``~/.ssh``
0700), and keeps the previous content as ``<file>.colab-ssh.bak``. A config that is a link (a
dotfiles manager's) is written through: the link stays, its target changes. Several files are
changed together or not at all: if one write fails, the ones before it are put back.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BACKUP_SUFFIX", "Change", "FileError", "ensure_ssh_folder", "read_text", "write_changes"]

BACKUP_SUFFIX = ".colab-ssh.bak"
NEW_FILE_MODE = 0o600
SSH_FOLDER_MODE = 0o700
_POSIX = os.name == "posix"  # Windows keeps no Unix mode bits: chmod sets the read-only flag only


class FileError(OSError):
    """A file or folder that cannot be read or written; the message names it and the fix."""


@dataclass(frozen=True)
class Change:
    path: Path
    old: str | None  # None: the file does not exist yet
    new: str


def _reason(error: OSError) -> str:
    return error.strerror or type(error).__name__


def read_text(path: Path) -> str | None:
    """The file's text (bytes that are not UTF-8 kept as surrogates), None if it does not exist."""
    try:
        return path.read_bytes().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise FileError(f"{path} is a folder, not a file: move it away, then run this again") from None
    except OSError as error:
        raise FileError(f"cannot read {path}: {_reason(error)}") from None


def ensure_ssh_folder(folder: Path) -> None:
    """``folder`` (~/.ssh) exists: made with mode 0700 if its parent (the home folder) exists."""
    if folder.is_dir():
        return
    if not folder.parent.is_dir():
        raise FileError(f"cannot write into {folder}: {folder.parent} does not exist")
    try:
        folder.mkdir(mode=SSH_FOLDER_MODE)
    except OSError as error:
        raise FileError(f"cannot create {folder}: {_reason(error)}") from None


def _target(path: Path) -> Path:
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _write_atomic(path: Path, text: str, mode: int) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(text.encode("utf-8", "surrogateescape"))
            stream.flush()
            os.fsync(stream.fileno())
        if _POSIX:
            Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise


def _check_writable(path: Path) -> None:
    folder = path.parent
    if not folder.is_dir():
        raise FileError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise FileError(f"cannot write {path}: permission denied; check who owns {folder} and its mode")


def write_changes(changes: Sequence[Change]) -> list[Path]:
    """Write each changed file (keeping a backup of its old text); all or none. The paths written."""
    pending = [change for change in changes if change.new != change.old]
    targets = [_target(change.path) for change in pending]
    for target in targets:
        _check_writable(target)
    done: list[tuple[Path, Change, int]] = []
    try:
        for target, change in zip(targets, pending, strict=True):
            mode = stat.S_IMODE(target.stat().st_mode) if change.old is not None else NEW_FILE_MODE
            if change.old is not None:
                _write_atomic(target.with_name(target.name + BACKUP_SUFFIX), change.old, NEW_FILE_MODE)
            _write_atomic(target, change.new, mode)
            done.append((target, change, mode))
    except OSError as error:
        for target, change, mode in reversed(done):  # put back what was written before the failure
            with contextlib.suppress(OSError):
                if change.old is None:
                    target.unlink()
                else:
                    _write_atomic(target, change.old, mode)
        raise FileError(
            f"cannot write {getattr(error, 'filename', None) or 'a file'}: {_reason(error)}"
        ) from None
    return targets
