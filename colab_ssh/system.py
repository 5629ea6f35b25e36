"""The few places that read or change the machine: checks, packages, keys, passwords, files."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import string
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from .errors import ColabSSHError, PackageInstallError, UnsafePathError, UnsupportedSystemError
from .paths import STATE_DIR_MODE
from .safe_files import trusted_dir

__all__ = [
    "TEXT_BUSY",
    "PasswordChange",
    "check_system",
    "ensure_package",
    "find_program",
    "generate_password",
    "local_address",
    "open_log",
    "read_file",
    "read_password_hash",
    "remove_file",
    "restore_file",
    "retry_while_text_busy",
    "set_password_hash",
    "tail",
    "tool_environment",
    "write_file",
]

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 24
# sbin is not on every user's PATH, but sshd and chpasswd live there.
_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"
# Signs in apt's output that the package lists are missing or stale: worth one `apt-get update`.
_STALE_LISTS = (
    "Unable to locate package",
    "has no installation candidate",
    "Failed to fetch",
    "404  Not Found",
    "404 Not Found",
)
# What the tools we run (chpasswd, sshd, ssh-keygen) get for PATH: not the caller's.
_TOOL_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Passed on from our environment when set: the time zone, which sshd hands on to sessions.
_TOOL_KEEP = ("TZ",)
# While we install, keep Debian's maintainer scripts from starting the system's own sshd on port 22.
_POLICY_RC_D = "#!/bin/sh\n# Written by colab_ssh for the length of one apt-get install.\nexit 101\n"


def check_system(platform: str = sys.platform, euid: Callable[[], int] = os.geteuid) -> None:
    """Linux and root, or a clear refusal before anything is touched."""
    if not platform.startswith("linux"):
        raise UnsupportedSystemError(
            f"colab_ssh runs on the Linux machine that should become the SSH host (a Colab runtime,"
            f" a VM); this is {platform!r}. Run start_ssh() inside the notebook runtime, not on your laptop."
        )
    if euid() != 0:
        raise UnsupportedSystemError(
            "colab_ssh needs root (it installs openssh-server, writes sshd's config and sets a password);"
            f" this process runs as uid {euid()}. Colab runtimes run as root; elsewhere use `sudo`."
        )


def tool_environment(**extra: str) -> dict[str, str]:
    """A small, fixed environment for the programs we run.

    The caller's may be too large to exec at all (E2BIG: the kernel limits one string to
    128 KiB and the whole environment to ARG_MAX), and sshd would pass some of it on.
    """
    environment = {"PATH": _TOOL_PATH, "LC_ALL": "C"}
    for name in _TOOL_KEEP:
        value = os.environ.get(name)
        if value is not None and len(value) < 4096:
            environment[name] = value
    return {**environment, **extra}


def find_program(name: str) -> str | None:
    """Absolute path of a program, looking in sbin too (sshd must be started by absolute path)."""
    path = os.environ.get("PATH", "")
    return shutil.which(name, path=f"{path}:{_SBIN}" if path else _SBIN)


T = TypeVar("T")
TEXT_BUSY = os.strerror(errno.ETXTBSY)  # "Text file busy", as a shell reports a failed exec


def retry_while_text_busy(start: Callable[[], T], *, seconds: float = 2.0) -> T:
    """``start()`` (which runs a program we just wrote), again while exec says ETXTBSY.

    A program written while another thread forks is "busy" until that child has exec'd its own
    program: the child holds a copy of the write descriptor for that moment (O_CLOEXEC closes it
    only at the exec). The start steps write the ngrok launcher and download agents on threads
    while others start chpasswd and sshd, so the first run of a fresh file can meet this.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            return start()
        except OSError as error:
            if error.errno != errno.ETXTBSY or time.monotonic() > deadline:
                raise
        time.sleep(0.005)


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_apt(argv: list[str], log_path: Path) -> subprocess.CompletedProcess[str]:
    # apt keeps the caller's environment (proxies, APT_CONFIG); one too large to exec is an error.
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        # Its own session: a notebook's interrupt signals the kernel's whole process group
        # (jupyter_client's LocalProvisioner.send_signal uses killpg), and dpkg stopped halfway
        # leaves a package half-configured; start_ssh() waits for apt instead, then undoes.
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            check=False,
            start_new_session=True,
        )
    except OSError as error:
        raise PackageInstallError(f"Could not run {argv[0]}: {error}.", output_tail="") from None
    with os.fdopen(open_log(log_path), "a") as log:  # 0600, never through a link
        log.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    return result


def ensure_package(
    program: str,
    package: str,
    *,
    log_path: Path,
    apt_get: str = "apt-get",
    policy_rc_d: Path = Path("/usr/sbin/policy-rc.d"),
) -> str:
    """Path of ``program``, installing ``package`` with apt first if it is missing.

    No ``apt-get update`` unless the install fails for missing or stale package lists
    (it costs tens of seconds on a fresh runtime); then one update and one retry.
    """
    found = find_program(program)
    if found:
        return found
    install = [apt_get, "install", "-y", "-q", "--no-install-recommends", package]
    wrote_policy = not policy_rc_d.exists()
    if wrote_policy:
        write_file(policy_rc_d, _POLICY_RC_D, mode=0o755)
    try:
        result = _run_apt(install, log_path)
        output = result.stdout + result.stderr
        if result.returncode != 0 and any(sign in output for sign in _STALE_LISTS):
            update = _run_apt([apt_get, "update", "-q"], log_path)
            result = _run_apt(install, log_path)
            output = update.stdout + update.stderr + result.stdout + result.stderr
    finally:
        if wrote_policy:
            remove_file(policy_rc_d)
    if result.returncode != 0:
        raise PackageInstallError(
            f"Could not install {package} with apt-get (exit code {result.returncode}). Check the"
            f" runtime's internet access, or install it yourself: apt-get install {package}",
            output_tail=tail(output),
        )
    found = find_program(program)
    if not found:
        raise PackageInstallError(
            f"apt-get installed {package}, but {program} is still not on PATH or in /usr/sbin.",
            output_tail=tail(output),
        )
    return found


def generate_password() -> str:
    # os.urandom, as secrets.choice uses, without importing secrets (it loads OpenSSL, ~3 ms of
    # a warm start). Unbiased: a byte counts only below the largest multiple of the alphabet's size.
    size = len(PASSWORD_ALPHABET)
    limit = 256 - 256 % size
    chosen: list[str] = []
    while len(chosen) < PASSWORD_LENGTH:
        chosen += [PASSWORD_ALPHABET[byte % size] for byte in os.urandom(PASSWORD_LENGTH) if byte < limit]
    return "".join(chosen[:PASSWORD_LENGTH])


class PasswordChange:
    """chpasswd running in the background while sshd starts: hashing is slow on purpose (~30 ms)."""

    def __init__(self, user: str, password: str, chpasswd: str = "chpasswd") -> None:
        self.user = user
        try:
            self._process = subprocess.Popen(
                [chpasswd],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=tool_environment(),
            )
        except OSError as error:
            raise ColabSSHError(f"Could not run chpasswd to set the password of {user!r}: {error}.") from None
        stdin, stderr = self._process.stdin, self._process.stderr
        assert stdin is not None and stderr is not None  # noqa: S101 - PIPEs were asked for
        self._stderr: IO[str] = stderr
        # The secret goes through stdin, written now so chpasswd works while we do other things.
        stdin.write(f"{user}:{password}\n")
        stdin.close()
        self._errors: str | None = None

    def wait(self) -> None:
        """Wait for chpasswd (once; later calls repeat the verdict); raise if it failed."""
        if self._errors is None:
            self._errors = self._stderr.read().strip()  # a line or two: cannot fill the pipe
            self._stderr.close()
            self._process.wait()
        if self._process.returncode != 0:
            raise ColabSSHError(f"chpasswd could not set the password of {self.user!r}: {self._errors}")


def read_password_hash(shadow_file: Path, user: str) -> str | None:
    """The user's current password hash, so a failed start can put it back."""
    try:
        lines = shadow_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) > 1 and fields[0] == user:
            return fields[1]
    return None


def set_password_hash(user: str, password_hash: str, chpasswd: str = "chpasswd") -> None:
    """Put a hash from /etc/shadow back (``chpasswd -e``), fed on stdin like every password."""
    try:
        result = subprocess.run(
            [chpasswd, "-e"],
            input=f"{user}:{password_hash}\n",
            capture_output=True,
            text=True,
            check=False,
            env=tool_environment(),
        )
    except OSError as error:
        raise ColabSSHError(f"Could not run chpasswd to restore the password of {user!r}: {error}.") from None
    if result.returncode != 0:
        raise ColabSSHError(f"chpasswd could not restore the password of {user!r}: {result.stderr.strip()}")


def _write_error(path: Path, error: OSError) -> ColabSSHError:
    return ColabSSHError(
        f"colab_ssh could not write {path} ({error.strerror or error}). The folder must be on a disk"
        " root can write to (not read-only, not full); pass state_dir= another folder if it is ours."
    )


def write_file(
    path: Path, text: str | bytes, *, mode: int, uid: int = 0, gid: int = 0, folder_mode: int = STATE_DIR_MODE
) -> bytes | None:
    """Atomically replace ``path`` (owner and mode set before the first byte); returns the old bytes.

    Through ``safe_files``: the folder (created with ``folder_mode`` if missing) and every folder
    above it must be root's and closed to others, no link is followed, and the new file gets a
    random name opened exclusively before it is renamed into place, so a reader never sees half a
    file and a secret is never readable by others, not even for an instant.
    """
    try:
        with trusted_dir(path.parent, create_mode=folder_mode) as folder:
            return folder.write(path.name, text, mode=mode, uid=uid, gid=gid)
    except UnsafePathError:
        raise
    except OSError as error:
        raise _write_error(path, error) from None


def restore_file(
    path: Path, previous: bytes | None, *, mode: int = 0o600, uid: int = 0, gid: int = 0
) -> None:
    """Undo write_file(): put the old bytes back (with ``mode``), or remove a file that did not exist."""
    try:
        with trusted_dir(path.parent) as folder:
            folder.restore(path.name, previous, mode=mode, uid=uid, gid=gid)
    except UnsafePathError:
        if previous is not None:
            raise
        # Nothing to remove in a folder that is gone (or was never trusted, so never written).


def remove_file(path: Path) -> None:
    """Remove ``path`` if it is there; a link is removed itself, and only in a trusted folder."""
    with contextlib.suppress(UnsafePathError), trusted_dir(path.parent) as folder:
        try:
            folder.remove(path.name)
        except OSError as error:
            try:
                os.lstat(path.name, dir_fd=folder.fd)
            except FileNotFoundError:
                return  # nothing there (a read-only disk says so with EROFS, not ENOENT)
            raise _write_error(path, error) from None


def read_file(path: Path) -> bytes | None:
    """The bytes of a plain file in a trusted folder (None if missing); links are refused."""
    try:
        folder = trusted_dir(path.parent)
    except UnsafePathError:
        if not path.parent.exists():
            return None
        raise
    with folder:
        return folder.read(path.name)


def open_log(path: Path, *, folder_mode: int = STATE_DIR_MODE) -> int:
    """A descriptor appending to ``path``, 0600 and never through a link, for a child's output."""
    try:
        with trusted_dir(path.parent, create_mode=folder_mode) as folder:
            return folder.open_log(path.name)
    except UnsafePathError:
        raise
    except OSError as error:
        raise _write_error(path, error) from None


def local_address() -> str:
    """This machine's address on its network, for tunnel="none" (no packet is sent)."""
    try:
        output = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, check=False, timeout=5, env=tool_environment()
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        output = ""
    for address in output.split():
        if ":" not in address and not address.startswith("127."):
            return address
    try:
        address = socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"
    return address
