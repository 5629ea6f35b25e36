"""sshd's host keys: made once, optionally kept across sessions, and their fingerprints.

Every new Colab runtime would otherwise get new host keys behind a recycled tunnel address,
and users would face "REMOTE HOST IDENTIFICATION HAS CHANGED" or switch checking off.
With ``host_keys_dir`` (say, a folder on the mounted Drive) the same keys come back each
session. sshd refuses private keys readable by others and Drive keeps no file modes, so
sshd always gets private copies (0600) in our state directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .connection import Connection, HostKey
from .errors import ColabSSHError, InvalidArgumentError
from .paths import STATE_DIR_MODE
from .published import ADDRESS_FILE, render_address
from .safe_files import TrustedDir, check_folder, trusted_dir
from .system import tool_environment

__all__ = [
    "KINDS",
    "check_saved_host_keys",
    "host_key_fingerprints",
    "prepare_host_keys",
    "save_address",
    "system_host_keys",
]

KINDS = ("ed25519", "ecdsa", "rsa")
ED25519 = "ssh_host_ed25519_key"
_NAMES = tuple(f"ssh_host_{kind}_key" for kind in KINDS)


def _generate_ed25519(ssh_keygen: str) -> tuple[bytes, bytes]:
    """A new key pair (private, public), made in a private temporary folder and read back.

    ssh-keygen follows links when it writes, so it only ever writes in a folder of its own;
    our copies are then written through safe_files.
    """
    import tempfile  # here: only new keys and a host_keys_dir need it

    with tempfile.TemporaryDirectory() as private:  # 0700, a random name made exclusively
        path = Path(private) / "key"
        subprocess.run(
            [ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "colab_ssh", "-f", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
        )
        return path.read_bytes(), path.with_suffix(".pub").read_bytes()


def _is_file(folder: TrustedDir, name: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(name, dir_fd=folder.fd).st_mode)
    except FileNotFoundError:
        return False


def system_host_keys(keys_dir: Path, ssh_keygen: str = "ssh-keygen") -> list[Path]:
    """The machine's own host keys (/etc/ssh); an Ed25519 key is made when there is none.

    Ed25519 alone is fast to make and every OpenSSH client since 2014 speaks it; RSA and
    ECDSA keys already present are used too.
    """
    with trusted_dir(keys_dir, create_mode=0o755) as folder:
        if folder.read(ED25519) is None:
            private, public = _generate_ed25519(ssh_keygen)
            folder.replace(f"{ED25519}.pub", public, mode=0o644)
            folder.replace(ED25519, private, mode=0o600)
        return [
            keys_dir / name for name in _NAMES if _is_file(folder, name) and _is_file(folder, f"{name}.pub")
        ]


def _public_half(private_key: Path, ssh_keygen: str) -> str:
    result = subprocess.run(
        [ssh_keygen, "-y", "-f", str(private_key)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env=tool_environment(),  # the caller's may be too big to exec
    )
    if result.returncode != 0 or not result.stdout.startswith(("ssh-", "ecdsa-")):
        raise InvalidArgumentError(
            f"{private_key.name} in host_keys_dir is not an unencrypted OpenSSH private key"
            f" ({result.stderr.strip() or 'unreadable'}). Remove it and a new key is made and saved there."
        )
    return result.stdout.strip()


def _saved_keys(folder: TrustedDir) -> dict[str, bytes]:
    """The private keys in host_keys_dir, read without following links (a link there is refused).

    The .pub names are looked at too: a link planted there is refused rather than replaced.
    """
    saved = {}
    for name in _NAMES:
        data = folder.read(name)
        folder.read(f"{name}.pub")
        if data is not None:
            saved[name] = data
    return saved


def check_saved_host_keys(persist_dir: Path, ssh_keygen: str = "ssh-keygen") -> None:
    """Refuse a host_keys_dir that is not a trusted folder or holds a damaged key, before anything changes.

    Nothing is written there: each key is checked from a private copy.
    """
    if not check_folder(persist_dir):
        return
    import tempfile  # here: only a host_keys_dir needs it

    with (
        trusted_dir(persist_dir) as folder,
        tempfile.TemporaryDirectory() as private,
        trusted_dir(private) as probes,
    ):
        for name, data in _saved_keys(folder).items():
            # ssh-keygen refuses keys others can read; Drive shows 0700 or 0644
            probes.replace(name, data, mode=0o600)
            _public_half(Path(private) / name, ssh_keygen)


def prepare_host_keys(
    persist_dir: Path, sshd_keys_dir: Path, ssh_keygen: str = "ssh-keygen"
) -> tuple[list[Path], list[Path]]:
    """Private 0600 copies of the saved keys for sshd, or a new key saved to ``persist_dir``.

    Returns sshd's key paths and the files newly created in ``persist_dir`` (to undo on failure).
    Every file is read and written through safe_files: no link in either folder is followed.
    """
    with (
        trusted_dir(persist_dir, create_mode=0o700) as saved_dir,
        trusted_dir(sshd_keys_dir.parent, create_mode=STATE_DIR_MODE) as state,
        state.subdir(sshd_keys_dir.name, mode=0o700) as ours,
    ):
        saved = _saved_keys(saved_dir)
        if not saved:
            private, public = _generate_ed25519(ssh_keygen)
            ours.replace(ED25519, private, mode=0o600)
            ours.replace(f"{ED25519}.pub", public, mode=0o644)
            saved_dir.replace(ED25519, private, mode=0o600)
            created = [persist_dir / ED25519]
            saved_dir.replace(f"{ED25519}.pub", public, mode=0o600)
            created.append(persist_dir / f"{ED25519}.pub")
            return [sshd_keys_dir / ED25519], created
        copies = []
        for name, data in saved.items():
            ours.replace(name, data, mode=0o600)
            copy = sshd_keys_dir / name
            ours.replace(f"{name}.pub", _public_half(copy, ssh_keygen) + "\n", mode=0o644)
            copies.append(copy)
        return copies, []


def host_key_fingerprints(private_keys: list[Path]) -> tuple[HostKey, ...]:
    """SHA256 fingerprints as ``ssh-keygen -l`` prints them, computed from the .pub files."""
    keys = []
    for path in private_keys:
        with trusted_dir(path.parent) as folder:  # ours or /etc/ssh: read without following a link
            kind, blob = (folder.read(f"{path.name}.pub") or b"").decode().split()[:2]
        digest = hashlib.sha256(base64.b64decode(blob)).digest()
        fingerprint = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        keys.append(HostKey(kind, fingerprint, public_key=f"{kind} {blob}"))
    return tuple(keys)


def save_address(persist_dir: Path, connection: Connection) -> None:
    """Write the connection details, no secret, next to the saved keys (``colab-ssh proxy --from``).

    One atomic replace (a reader sees the old file or the new one, never half of one); 0644,
    since it holds only what the card shows. It stays after stop_ssh(): it names the last
    address, which a stale lookup tries and the pinned host key makes harmless.
    """
    text = render_address(connection.connect_details, datetime.now(timezone.utc))
    try:
        with trusted_dir(persist_dir) as folder:
            folder.replace(ADDRESS_FILE, text, mode=0o644)
    except OSError as error:
        raise ColabSSHError(
            f"Could not write {ADDRESS_FILE} in host_keys_dir {persist_dir}: {error.strerror or error}."
            " Pick a folder you can write to (is Drive mounted?)."
        ) from error
