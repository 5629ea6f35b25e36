"""start_ssh()'s arguments, checked before anything on the machine changes: each option's check.

options.py says which check goes with which option and runs them in its order (check_request());
the checks taking ``checked`` also read the options checked before theirs.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .authtoken import check_authtoken
from .errors import InvalidArgumentError, UnsafePathError
from .host_keys import check_saved_host_keys
from .keys import PublicKey, read_key_argument
from .keys import check_github_user as _check_github_name
from .paths import Paths, canonical_folder
from .secret_text import SecretText
from .tunnels import Tunnel
from .tunnels.registry import TunnelKind, find_kind, kinds

__all__ = [
    "Request",
    "check_authtoken_argument",
    "check_folder",
    "check_github_user",
    "check_host_keys_dir",
    "check_keys",
    "check_login_user",
    "check_monitor_interval",
    "check_mount_drive",
    "check_on_change",
    "check_password",
    "check_port",
    "check_region",
    "check_state_dir",
    "check_tunnel",
]

MIN_PASSWORD_LENGTH = 8
# An account name that sshd's AllowUsers takes literally: no pattern characters (* ? ! ,), no '@'
# (AllowUsers reads user@host), no whitespace; the characters useradd itself allows.
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*\Z")
_NOBODY_UID = 65534  # the kernel's overflow uid: the "nobody" account, owner of nothing
_LOGIN_DEFS = Path("/etc/login.defs")
_UID_MIN = re.compile(r"^[ \t]*UID_MIN[ \t]+(\d+)(?:[ \t].*)?$", re.MULTILINE)
# Shells that exist to refuse a login.
_NO_LOGIN_SHELLS = frozenset({"nologin", "false"})

KeyArgument = str | os.PathLike[str]


@dataclass(frozen=True)
class Request:
    """What the caller asked for; a re-run asking for the same thing reuses the running session."""

    # repr=False: a traceback printed with its locals must not show them (and they are SecretText).
    authtoken: str | None = field(repr=False)
    password: str | None = field(repr=False)
    tunnel: str | Tunnel
    port: int
    region: str | None
    mount_drive: bool
    user: str
    paths: Paths
    public_keys: tuple[PublicKey, ...] = ()
    github_user: str | None = None
    host_keys_dir: Path | None = None


def check_password(password: object) -> str | None:
    if password is None:
        return None
    if not isinstance(password, str):
        raise InvalidArgumentError(f"password must be a string, not {type(password).__name__}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgumentError(
            f"password is too short ({len(password)} characters); the SSH port is public, so use at"
            f" least {MIN_PASSWORD_LENGTH}, or leave password out and one is generated."
        )
    if any(not ch.isprintable() for ch in password):
        raise InvalidArgumentError(
            "password contains a line break or another control character, which chpasswd cannot take;"
            " use printable characters only."
        )
    if password != password.strip():
        # Spaces at either end are invisible where the password is printed, and a password of
        # spaces only is as good as none.
        raise InvalidArgumentError(
            "password starts or ends with a space (or is spaces only); they are invisible where the"
            " password is shown. Remove them, or leave password out and one is generated."
        )
    return SecretText(password)


def _first_login_uid(login_defs: Path) -> int:
    """UID_MIN from /etc/login.defs (where useradd starts numbering people's accounts), else 1000."""
    try:
        text = login_defs.read_text(errors="replace")
    except OSError:
        return 1000
    # One search, not a split of every line: every start_ssh() checks the user, a re-run too.
    found = _UID_MIN.search(text)
    return int(found.group(1)) if found else 1000


def check_login_user(user: object, *, login_defs: Path = _LOGIN_DEFS) -> pwd.struct_passwd:
    """The account to log in as: it must exist, be a person's account (or root), and be able to log in.

    A system account (sshd, www-data, nobody) or one whose shell refuses logins would make
    start_ssh() report success for a login that can never work, and we would change its
    password entry for nothing.
    """
    if not isinstance(user, str):
        raise InvalidArgumentError(f"user must be an account name, not {user!r}.")
    if not _ACCOUNT_NAME.match(user):
        raise InvalidArgumentError(
            f"user {user!r} is not an account name (letters, digits, '.', '_' and '-' only); leave user"
            " as 'root' or pass the name of an existing account."
        )
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise InvalidArgumentError(
            f"There is no user {user!r} on this machine; leave user as 'root'."
        ) from None
    uid = account.pw_uid
    if uid == _NOBODY_UID:
        raise InvalidArgumentError(
            f"user {user!r} is the unprivileged placeholder account (uid {uid}), which cannot log in;"
            " pass a person's account, or leave user as 'root'."
        )
    if uid != 0 and uid < _first_login_uid(login_defs):
        raise InvalidArgumentError(
            f"user {user!r} is a system account (uid {uid}, below UID_MIN in {login_defs}), not one to"
            " log in as; pass a person's account (create one with `useradd -m -s /bin/bash NAME`),"
            " or leave user as 'root'."
        )
    # sshd itself refuses an account whose shell is missing or not executable (allowed_user() in
    # OpenSSH's auth.c; an empty shell means /bin/sh there and in passwd(5)); nologin and false
    # are executable but exist to refuse.
    shell = account.pw_shell or "/bin/sh"
    if Path(shell).name in _NO_LOGIN_SHELLS or not os.access(shell, os.X_OK):
        raise InvalidArgumentError(
            f"user {user!r} cannot log in: its shell is {shell}. Give it one"
            f" (`usermod -s /bin/bash {user}`), or pass another account."
        )
    if not Path(account.pw_dir).is_dir():
        raise InvalidArgumentError(
            f"user {user!r} has no home folder ({account.pw_dir} does not exist), so a login would fail."
            f" Create it (`mkhomedir_helper {user}`), or pass another account."
        )
    return account


def check_tunnel(tunnel: object) -> str | Tunnel:
    if isinstance(tunnel, str):
        find_kind(tunnel)  # InvalidArgumentError naming the known tunnels, plugins included
        return tunnel
    if not isinstance(tunnel, Tunnel):
        raise InvalidArgumentError(
            "tunnel must be a name (ngrok, cloudflared, none or an installed plugin's) or a tunnel"
            f" object with name, open(port), alive() and close(); got {type(tunnel).__name__}."
        )
    return tunnel


def check_region(region: object, tunnel: str | Tunnel) -> str:
    kind: TunnelKind | None = find_kind(tunnel) if isinstance(tunnel, str) else None
    if kind is None or not kind.regions:
        with_regions = " / ".join(other.name for other in kinds() if other.regions)
        raise InvalidArgumentError(
            f"region= is an {with_regions} setting; tunnel={tunnel!r} has no regions. Leave region out."
        )
    if not isinstance(region, str) or region not in kind.regions:
        raise InvalidArgumentError(
            f"Unknown {kind.name} region {region!r}; choose one of {', '.join(kind.regions)}, or leave"
            f" it out and {kind.name} picks the nearest."
        )
    return region


def check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgumentError(f"port must be a whole number from 1 to 65535, not {port!r}.")
    return port


def check_folder(value: object, name: str) -> Path:
    """A folder root writes in: canonical (see canonical_folder), trusted, and not a file."""
    if not isinstance(value, str | os.PathLike) or not os.fspath(value):
        raise InvalidArgumentError(f"{name} must be a folder path, not {value!r}.")
    if isinstance(os.fspath(value), bytes):
        raise InvalidArgumentError(f"{name} must be a text path, not bytes.")
    text = os.fspath(value)
    if "\0" in text:
        raise InvalidArgumentError(f"{name} {text!r} contains a NUL character; pass a real folder path.")
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():  # a file is named as such, before the owner checks
        raise InvalidArgumentError(f"{name} {path} is a file, not a folder.")
    try:
        return canonical_folder(text, name)
    except UnsafePathError as error:
        message = str(error)
        raise UnsafePathError(message if message.startswith(name) else f"{name}: {message}") from None


def check_keys(public_key: object) -> tuple[PublicKey, ...]:
    if public_key is None:
        return ()
    entries = public_key if isinstance(public_key, list | tuple) else [public_key]
    if not entries:
        raise InvalidArgumentError("public_key is an empty list; pass at least one key or leave it out.")
    keys: list[PublicKey] = []
    for entry in entries:
        if not isinstance(entry, str | os.PathLike):
            raise InvalidArgumentError(
                f"public_key entries must be key lines or .pub paths, not {type(entry).__name__}."
            )
        keys.extend(read_key_argument(entry))
    return tuple(dict.fromkeys(keys))


def check_authtoken_argument(authtoken: object) -> str | None:
    if authtoken is None:
        return None
    if not isinstance(authtoken, str):
        raise InvalidArgumentError(f"authtoken must be a string, not {type(authtoken).__name__}.")
    return SecretText(check_authtoken(authtoken, "the authtoken argument"))


# --- more options' checks; those taking ``checked`` read the options before theirs (OPTIONS' order) ---


def check_mount_drive(mount_drive: object) -> bool:
    if not isinstance(mount_drive, bool):
        raise InvalidArgumentError(f"mount_drive must be True or False, not {mount_drive!r}.")
    return mount_drive


def check_github_user(github_user: object, checked: Mapping[str, Any]) -> str | None:
    """The name, and password= refused beside any key (the last of the login options checked)."""
    if github_user is not None:
        github_user = _check_github_name(github_user)  # type: ignore[arg-type]
    if checked["password"] is not None and (checked["public_key"] or github_user):
        raise InvalidArgumentError(
            "password= and public keys exclude each other: with a key, password login is switched off."
            " Pass one or the other."
        )
    return github_user


def check_state_dir(state_dir: object) -> Path:
    return check_folder(Paths().state_dir if state_dir is None else state_dir, "state_dir")


def check_host_keys_dir(host_keys_dir: object) -> Path | None:
    if host_keys_dir is None:
        return None
    saved = check_folder(host_keys_dir, "host_keys_dir")
    check_saved_host_keys(saved)
    return saved


def check_on_change(on_change: object) -> object:
    if on_change is not None and not callable(on_change):
        raise InvalidArgumentError(
            f"on_change must be a function taking the new Connection, not {on_change!r}."
        )
    return on_change


def check_monitor_interval(interval: object) -> object:
    if interval is not None and (
        isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0
    ):
        raise InvalidArgumentError(
            f"monitor_interval must be a positive number of seconds or None, not {interval!r}."
        )
    return interval
