"""Users' public keys: where they come from, what is accepted, and authorized_keys.

Validation happens before anything is written: ssh-keygen (not a home-made regex) must
parse each key, and what ssh-keygen would also accept but we must not (authorized_keys
options such as ``command=...``, private keys) is refused with a message saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgumentError, KeySourceError
from .system import tool_environment, write_file

__all__ = [
    "GITHUB_URL_ENV",
    "PublicKey",
    "fetch_github_keys",
    "merge_authorized_keys",
    "parse_public_key",
    "read_key_argument",
]

# Plain public keys OpenSSH 9 accepts by default. DSA is off in OpenSSH since 7.0 and
# certificates need a CA setup this package does not make.
KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
GITHUB_URL_ENV = "COLAB_SSH_GITHUB_URL"  # the base URL, for tests: a local stand-in for github.com
_GITHUB_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}\Z")
_PRIVATE_MARKERS = ("PRIVATE KEY-----", "PuTTY-User-Key-File")


@dataclass(frozen=True)
class PublicKey:
    """One validated public key: ``kind`` and ``blob`` identify it; the comment is kept for people."""

    kind: str
    blob: str
    comment: str = ""

    @property
    def line(self) -> str:
        return f"{self.kind} {self.blob}" + (f" {self.comment}" if self.comment else "")


def _describe(source: str) -> str:
    return f"The public key from {source}"


def parse_public_key(text: str, source: str, ssh_keygen: str = "ssh-keygen") -> PublicKey:
    """One OpenSSH public-key line, checked by ssh-keygen; anything else is refused, saying why."""
    what = _describe(source)
    stripped = text.strip()
    if not stripped:
        raise InvalidArgumentError(
            f"{what} is empty. Pass the one line from your id_ed25519.pub (or id_rsa.pub)."
        )
    if any(marker in stripped for marker in _PRIVATE_MARKERS):
        raise InvalidArgumentError(
            f"{what} is a private key: never paste or upload it. Pass the public half, the one line in"
            " the matching .pub file (e.g. ~/.ssh/id_ed25519.pub)."
        )
    if "\n" in stripped or "\r" in stripped:
        raise InvalidArgumentError(
            f"{what} spans several lines; pass one key per string (a list for several keys)."
        )
    if any(not ch.isprintable() for ch in stripped):
        raise InvalidArgumentError(f"{what} contains control characters; copy the .pub line again.")
    fields = stripped.split(maxsplit=2)
    kind = fields[0]
    if kind not in KEY_TYPES:
        if "=" in kind or "," in kind or '"' in kind:
            raise InvalidArgumentError(
                f"{what} starts with authorized_keys options ({kind[:40]!r}); pass the bare key"
                " (type, base64, comment) without options."
            )
        hint = " DSA keys are disabled in OpenSSH; make an Ed25519 key:" if kind == "ssh-dss" else ""
        raise InvalidArgumentError(
            f"{what} is not of a supported type ({kind[:40]!r}).{hint} Supported: {', '.join(KEY_TYPES)}."
            " Make one with `ssh-keygen -t ed25519`."
        )
    if len(fields) < 2:
        raise InvalidArgumentError(f"{what} has a type but no key data; copy the whole .pub line.")
    checked = subprocess.run(
        [ssh_keygen, "-l", "-f", "-"],
        input=f"{kind} {fields[1]}\n",
        capture_output=True,
        text=True,
        check=False,
        env=tool_environment(),  # the caller's may be too big to exec
    )
    if checked.returncode != 0:
        raise InvalidArgumentError(
            f"{what} is not a valid {kind} key (ssh-keygen cannot read it: the base64 part is damaged"
            " or cut off). Copy the whole .pub line again."
        )
    return PublicKey(kind, fields[1], fields[2] if len(fields) > 2 else "")


def read_key_argument(value: str | os.PathLike[str], ssh_keygen: str = "ssh-keygen") -> list[PublicKey]:
    """One ``public_key=`` entry: a key line, or the path of a .pub file (one key per line)."""
    text = os.fspath(value)
    first_word = text.strip().split(maxsplit=1)[0] if text.strip() else ""
    if first_word in KEY_TYPES:
        return [parse_public_key(text, "public_key", ssh_keygen)]
    # A key line always has a space; a path given as text has none (pass a Path for odd names).
    looks_like_path = isinstance(value, os.PathLike) or (
        not any(ch.isspace() for ch in text.strip()) and ("/" in text or text.strip().endswith(".pub"))
    )
    if looks_like_path:
        path = Path(text).expanduser()
        if not path.is_file():
            raise InvalidArgumentError(f"public_key names a file that does not exist: {path}.")
        content = path.read_text(errors="replace")
        if any(marker in content for marker in _PRIVATE_MARKERS):
            raise InvalidArgumentError(
                f"{path} is a private key: pass the public half, {path}.pub, instead (and keep the"
                " private key on your computer)."
            )
        lines = [line for line in content.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise InvalidArgumentError(f"{path} holds no public key.")
        return [parse_public_key(line, str(path), ssh_keygen) for line in lines]
    return [parse_public_key(text, "public_key", ssh_keygen)]


def check_github_user(name: str) -> str:
    if not isinstance(name, str) or not _GITHUB_NAME.match(name):
        raise InvalidArgumentError(
            f"github_user {name!r} is not a GitHub user name (letters, digits and single hyphens, at most"
            " 39 characters)."
        )
    return name


def fetch_github_keys(name: str, *, base_url: str | None = None, timeout: float = 10.0) -> list[PublicKey]:
    """The keys GitHub publishes at https://github.com/<name>.keys."""
    import urllib.error  # here: importing urllib costs start-up time that only this fetch needs
    import urllib.request

    base = (base_url or os.environ.get(GITHUB_URL_ENV) or "https://github.com").rstrip("/")
    url = f"{base}/{name}.keys"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) URL built here
            body = response.read(1_000_000).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise KeySourceError(
                f"GitHub has no user {name!r} ({url} answered 404). Check the spelling."
            ) from None
        raise KeySourceError(
            f"Fetching {url} failed with HTTP {error.code}; try again, or pass public_key=."
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise KeySourceError(
            f"Could not reach {url} ({reason}). The runtime needs internet access to fetch GitHub keys;"
            " or pass public_key= with your key."
        ) from None
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        raise KeySourceError(
            f"GitHub user {name!r} has no public SSH keys ({url} is empty). Add one at"
            " https://github.com/settings/keys, or pass public_key=."
        )
    return [parse_public_key(line, f"GitHub user {name!r}") for line in lines]


def merge_authorized_keys(existing: str, keys: Iterable[PublicKey]) -> str:
    """Existing lines kept as they are, each new key appended once (same type and data = same key)."""
    present = set()
    for line in existing.splitlines():
        for kind, blob in zip(line.split(), line.split()[1:], strict=False):
            if kind in KEY_TYPES:
                present.add((kind, blob))
    lines = existing.splitlines()
    for key in keys:
        if (key.kind, key.blob) not in present:
            present.add((key.kind, key.blob))
            lines.append(key.line)
    return "\n".join(lines) + "\n" if lines else ""


def install_authorized_keys(
    home: Path, uid: int, gid: int, keys: Sequence[PublicKey]
) -> tuple[bytes | None, bool]:
    """Add keys to ~/.ssh/authorized_keys (0700 dir, 0600 file, owned by the user; sshd's StrictModes).

    Returns what is needed to undo it: the previous bytes, and whether ~/.ssh was created.
    """
    ssh_dir = home / ".ssh"
    created_dir = not ssh_dir.exists()
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    os.chown(ssh_dir, uid, gid)
    authorized = ssh_dir / "authorized_keys"
    existing = authorized.read_text(errors="replace") if authorized.exists() else ""
    previous = write_file(authorized, merge_authorized_keys(existing, keys), mode=0o600)
    os.chown(authorized, uid, gid)
    return previous, created_dir
