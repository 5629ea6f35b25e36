"""The login user's password hash from before start_ssh() changed it, kept so that stop_ssh() puts it back.

start_ssh() sets a password (or turns a locked "!" hash into "*" for key logins). Left in place
after stop, that password would open the account to the machine's own sshd, if it allows
passwords. The previous hash goes to a root-only file in the state folder, so a stop in a later
process (after a notebook restart, `colab-ssh stop`) can still put it back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .safe_files import trusted_dir
from .system import read_password_hash, set_password_hash

__all__ = ["PasswordRecord", "forget", "load", "restore", "save"]

logger = logging.getLogger("colab_ssh")


@dataclass(frozen=True)
class PasswordRecord:
    user: str
    previous: str = field(repr=False)  # the hash before we changed it
    ours: str | None = field(default=None, repr=False)  # the hash we set (None: not known yet)


def _folder_and_name(record_file: Path) -> tuple[Path, str]:
    return record_file.parent, record_file.name


def load(record_file: Path) -> PasswordRecord | None:
    folder, name = _folder_and_name(record_file)
    if not folder.exists():
        return None
    with trusted_dir(folder) as directory:
        data = directory.read(name)
    if data is None:
        return None
    try:
        content = json.loads(data)
        return PasswordRecord(str(content["user"]), str(content["previous"]), content.get("ours"))
    except (ValueError, KeyError, TypeError):
        logger.warning("Ignoring %s: it is not a password record colab_ssh wrote.", record_file)
        return None


def save(record_file: Path, record: PasswordRecord) -> None:
    """Write the record (root-only, 0600) before the password is changed, and again once it is."""
    folder, name = _folder_and_name(record_file)
    content = {"user": record.user, "previous": record.previous, "ours": record.ours}
    with trusted_dir(folder) as directory:
        directory.replace(name, json.dumps(content) + "\n", mode=0o600)


def forget(record_file: Path) -> None:
    folder, name = _folder_and_name(record_file)
    if folder.exists():
        with trusted_dir(folder) as directory:
            directory.remove(name)


def restore(record_file: Path, shadow_file: Path) -> None:
    """Put the recorded hash back and forget the record; harmless when there is none.

    If the hash changed since we set it (someone ran passwd), the newer one is left alone.
    """
    record = load(record_file)
    if record is None:
        return
    current = read_password_hash(shadow_file, record.user)
    if current is None:
        logger.info("User %r is gone; not restoring its password.", record.user)
    elif record.ours is not None and current != record.ours:
        logger.warning(
            "The password of %r changed since start_ssh() set it; leaving the new one.", record.user
        )
    elif current != record.previous:
        set_password_hash(record.user, record.previous)  # a ColabSSHError keeps the record for a retry
    forget(record_file)
