"""Users' public keys: where they come from, what is accepted, and authorized_keys.

Validation happens before anything is written: ssh-keygen (not a home-made regex) must
parse each key, and what ssh-keygen would also accept but we must not (authorized_keys
options such as ``command=...``, private keys) is refused with a message saying so.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgumentError, KeySourceError
from .safe_files import trusted_dir
from .system import tool_environment

__all__ = [
    "GITHUB_URL_ENV",
    "InstalledKeys",
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
AUTHORIZED_KEYS = "authorized_keys"
MAX_KEY_FILE = 64 * 1024  # a .pub file holds a line or a few; anything larger is not one
# GitHub's <user>.keys: one fetch may take this long in all (each read has its own, shorter timeout,
# which a server sending a byte at a time would otherwise restart forever), and may list this
# many keys (each is checked by running ssh-keygen; real accounts have a handful).
GITHUB_DEADLINE = 20.0
GITHUB_MAX_KEYS = 100
GITHUB_MAX_BYTES = 256 * 1024


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


def parse_public_key(
    text: str, source: str, ssh_keygen: str = "ssh-keygen", *, echo: bool = True
) -> PublicKey:
    """One OpenSSH public-key line, checked by ssh-keygen; anything else is refused, saying why.

    Without ``echo`` (text read from a file) no part of the text goes into an error message:
    root can read any file, and the first word of /etc/shadow is part of root's password hash.
    """
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
            shown = f" ({kind[:40]!r})" if echo else ""
            raise InvalidArgumentError(
                f"{what} starts with authorized_keys options{shown}; pass the bare key"
                " (type, base64, comment) without options."
            )
        hint = " DSA keys are disabled in OpenSSH; make an Ed25519 key:" if kind == "ssh-dss" else ""
        shown = f" ({kind[:40]!r})" if echo else ""
        raise InvalidArgumentError(
            f"{what} is not of a supported type{shown}.{hint} Supported: {', '.join(KEY_TYPES)}."
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


def _read_key_file(path: Path) -> str:
    """The text of a .pub file: a plain file, at most MAX_KEY_FILE bytes (never a FIFO or a device)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        raise InvalidArgumentError(f"public_key names a file that does not exist: {path!r}.") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgumentError(f"public_key names {path}, which is not a plain file.")
        data = handle.read(MAX_KEY_FILE + 1)
    if len(data) > MAX_KEY_FILE:
        raise InvalidArgumentError(
            f"{path} is larger than {MAX_KEY_FILE // 1024} KiB, so it is not a .pub file;"
            " pass your public key."
        )
    return data.decode(errors="replace")


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
        content = _read_key_file(path)
        if any(marker in content for marker in _PRIVATE_MARKERS):
            raise InvalidArgumentError(
                f"{path} is a private key: pass the public half, {path}.pub, instead (and keep the"
                " private key on your computer)."
            )
        lines = [line for line in content.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if not lines:
            raise InvalidArgumentError(f"{path} holds no public key.")
        return [parse_public_key(line, str(path), ssh_keygen, echo=False) for line in lines]
    return [parse_public_key(text, "public_key", ssh_keygen)]


def check_github_user(name: str) -> str:
    if not isinstance(name, str) or not _GITHUB_NAME.match(name):
        raise InvalidArgumentError(
            f"github_user {name!r} is not a GitHub user name (letters, digits and single hyphens, at most"
            " 39 characters)."
        )
    return name


def _too_slow(url: str, deadline: float) -> KeySourceError:
    return KeySourceError(
        f"{url} did not send the keys within {deadline:.0f} s; try again, or pass public_key=."
    )


def fetch_github_keys(
    name: str,
    *,
    base_url: str | None = None,
    timeout: float = 10.0,
    deadline: float | None = None,
    max_keys: int | None = None,
) -> list[PublicKey]:
    """The keys GitHub publishes at https://github.com/<name>.keys, within ``deadline`` seconds in all."""
    deadline = GITHUB_DEADLINE if deadline is None else deadline
    max_keys = GITHUB_MAX_KEYS if max_keys is None else max_keys
    # here: https_download imports urllib, whose start-up time only this fetch needs
    import urllib.error

    from .https_download import (
        DeadlineExpiredError,
        DownloadRefusedError,
        TooLargeError,
        UrlRefusedError,
        fetch,
        reason_of,
    )

    base = (base_url or os.environ.get(GITHUB_URL_ENV) or "https://github.com").rstrip("/")
    url = f"{base}/{name}.keys"
    # https_download.fetch: https on every hop (plain http only to loopback, the tests' stand-in),
    # one deadline for the whole transfer (a socket shut down when it passes), a size bound.
    try:
        body = fetch(url, deadline=deadline, max_bytes=GITHUB_MAX_BYTES, timeout=min(timeout, deadline))
    except UrlRefusedError:
        raise KeySourceError(
            f"The GitHub keys URL must be https://, not {url!r}; unset {GITHUB_URL_ENV} or make it https://."
        ) from None
    except DeadlineExpiredError:
        raise _too_slow(url, deadline) from None
    except TooLargeError:
        raise KeySourceError(
            f"{url} sent more than {GITHUB_MAX_BYTES // 1024} KiB; that is not a list of keys."
        ) from None
    except urllib.error.HTTPError as error:
        if error.code == 404:
            raise KeySourceError(
                f"GitHub has no user {name!r} ({url} answered 404). Check the spelling."
            ) from None
        raise KeySourceError(
            f"Fetching {url} failed with HTTP {error.code}; try again, or pass public_key=."
        ) from None
    except Exception as error:  # DownloadRefusedError (a redirect off https), HTTPException, ...
        if not isinstance(error, OSError) or isinstance(error, DownloadRefusedError):
            raise KeySourceError(
                f"Fetching {url} failed ({error}); try again, or pass public_key=."
            ) from None
        raise KeySourceError(
            f"Could not reach {url} ({reason_of(error)}). The runtime needs internet access to fetch GitHub"
            " keys; or pass public_key= with your key."
        ) from None
    lines = [line for line in body.decode("utf-8", errors="replace").splitlines() if line.strip()]
    if not lines:
        raise KeySourceError(
            f"GitHub user {name!r} has no public SSH keys ({url} is empty). Add one at"
            " https://github.com/settings/keys, or pass public_key=."
        )
    if len(lines) > max_keys:
        raise KeySourceError(
            f"{url} lists {len(lines)} keys; colab_ssh takes at most {max_keys}. Pass the keys you use"
            " with public_key= instead."
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


@dataclass(frozen=True)
class InstalledKeys:
    """What install_authorized_keys() changed, so that a failed start can put it back."""

    home: Path
    uid: int
    gid: int
    previous: bytes | None  # authorized_keys before (None: there was none)
    created_dir: bool  # ~/.ssh was made by us

    def undo(self) -> None:
        """Put the old authorized_keys back; remove ~/.ssh only if we made it and it is empty again.

        Root never recurses through the user's folder (a link planted there would be followed):
        only the file we wrote is removed, by name, relative to the folder's descriptor.
        """
        with trusted_dir(self.home, owner=self.uid) as home:
            try:
                ssh_dir = home.subdir(".ssh", uid=self.uid, gid=self.gid, create=False)
            except FileNotFoundError:
                return
            with ssh_dir:
                ssh_dir.restore(AUTHORIZED_KEYS, self.previous, mode=0o600, uid=self.uid, gid=self.gid)
            if self.created_dir:
                home.remove_dir(".ssh")


def install_authorized_keys(home: Path, uid: int, gid: int, keys: Sequence[PublicKey]) -> InstalledKeys:
    """Add keys to ~/.ssh/authorized_keys (0700 dir, 0600 file, owned by the user; sshd's StrictModes).

    The user owns their home and may plant links in it, so every step goes through safe_files:
    a home or ~/.ssh that is a link, belongs to someone else or is writable by others is refused
    (UnsafePathError), authorized_keys is read without following a link, and the new one is a
    file with a random name created exclusively, owned by the user and 0600 before it holds a
    byte, then renamed over the old one. Returns what is needed to undo it.
    """
    with trusted_dir(home, owner=uid) as home_dir, home_dir.subdir(".ssh", uid=uid, gid=gid) as ssh_dir:
        created_dir = ssh_dir.created
        existing = ssh_dir.read(AUTHORIZED_KEYS)
        text = merge_authorized_keys((existing or b"").decode(errors="replace"), keys)
        ssh_dir.replace(AUTHORIZED_KEYS, text, mode=0o600, uid=uid, gid=gid)
    return InstalledKeys(home, uid, gid, existing, created_dir)
