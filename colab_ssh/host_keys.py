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
import shutil
import subprocess
import tempfile
from pathlib import Path

from .connection import HostKey
from .errors import InvalidArgumentError
from .system import tool_environment, write_file

__all__ = ["KINDS", "check_saved_host_keys", "host_key_fingerprints", "prepare_host_keys", "system_host_keys"]

KINDS = ("ed25519", "ecdsa", "rsa")


def _key_files(directory: Path) -> list[Path]:
    return [
        directory / f"ssh_host_{kind}_key" for kind in KINDS if (directory / f"ssh_host_{kind}_key").exists()
    ]


def _generate_ed25519(path: Path, ssh_keygen: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-C", "colab_ssh", "-f", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        env=tool_environment(),  # the caller's may be too big to exec
    )


def system_host_keys(keys_dir: Path, ssh_keygen: str = "ssh-keygen") -> list[Path]:
    """The machine's own host keys (/etc/ssh); an Ed25519 key is made when there is none.

    Ed25519 alone is fast to make and every OpenSSH client since 2014 speaks it; RSA and
    ECDSA keys already present are used too.
    """
    ed25519 = keys_dir / "ssh_host_ed25519_key"
    if not ed25519.exists():
        _generate_ed25519(ed25519, ssh_keygen)
    return [path for path in _key_files(keys_dir) if path.with_suffix(".pub").exists()]


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


def check_saved_host_keys(persist_dir: Path, ssh_keygen: str = "ssh-keygen") -> None:
    """Refuse a host_keys_dir that is not a folder or holds a damaged key, before anything changes."""
    if persist_dir.exists() and not persist_dir.is_dir():
        raise InvalidArgumentError(f"host_keys_dir {persist_dir} is a file, not a folder.")
    if not persist_dir.is_dir():
        return
    with tempfile.TemporaryDirectory() as private:  # 0700: a safe place for a copy of the key
        for saved in _key_files(persist_dir):
            probe = Path(private) / saved.name
            shutil.copyfile(saved, probe)
            probe.chmod(0o600)  # ssh-keygen refuses keys others can read; Drive shows 0700 or 0644
            _public_half(probe, ssh_keygen)


def prepare_host_keys(
    persist_dir: Path, sshd_keys_dir: Path, ssh_keygen: str = "ssh-keygen"
) -> tuple[list[Path], list[Path]]:
    """Private 0600 copies of the saved keys for sshd, or a new key saved to ``persist_dir``.

    Returns sshd's key paths and the files newly created in ``persist_dir`` (to undo on failure).
    """
    saved = _key_files(persist_dir)
    created: list[Path] = []
    if not saved:
        fresh = sshd_keys_dir / "ssh_host_ed25519_key"
        fresh.unlink(missing_ok=True)
        fresh.with_suffix(".pub").unlink(missing_ok=True)
        _generate_ed25519(fresh, ssh_keygen)
        persist_dir.mkdir(parents=True, exist_ok=True)
        for source in (fresh, fresh.with_suffix(".pub")):
            target = persist_dir / source.name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            created.append(target)
        return [fresh], created
    copies = []
    for source in saved:
        copy = sshd_keys_dir / source.name
        write_file(copy, source.read_text(), mode=0o600)
        write_file(copy.with_suffix(".pub"), _public_half(copy, ssh_keygen) + "\n", mode=0o644)
        copies.append(copy)
    return copies, created


def host_key_fingerprints(private_keys: list[Path]) -> tuple[HostKey, ...]:
    """SHA256 fingerprints as ``ssh-keygen -l`` prints them, computed from the .pub files."""
    keys = []
    for path in private_keys:
        kind, blob = path.with_suffix(".pub").read_text().split()[:2]
        digest = hashlib.sha256(base64.b64decode(blob)).digest()
        fingerprint = "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
        keys.append(HostKey(kind, fingerprint, public_key=f"{kind} {blob}"))
    return tuple(keys)
