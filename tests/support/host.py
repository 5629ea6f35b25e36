"""The real machine as the tests meet it: free ports, our processes, accounts' homes, programs on PATH,
and the real OpenSSH client (with client keys made by ssh-keygen)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from colab_ssh import Connection, start_ssh
from colab_ssh.paths import Paths
from colab_ssh.system import read_password_hash


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def our_processes(state_dir: Path) -> list[int]:
    """Live (non-zombie) processes whose command line mentions the test's state dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command_line = (entry / "cmdline").read_bytes().decode(errors="replace")
            status = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(state_dir) in command_line and status != "Z":
            found.append(int(entry.name))
    return found


def hold_open_for_writing(path: Path, seconds: float) -> subprocess.Popen[bytes]:
    """A process holding ``path`` open for writing for ``seconds``: what a child forked by another
    thread holds, a copy of a writer's descriptor, until its own exec. Running ``path`` meanwhile
    fails with ETXTBSY (execve(2)); system.retry_while_text_busy waits that out."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        return subprocess.Popen(["sleep", str(seconds)], pass_fds=(descriptor,))
    finally:
        os.close(descriptor)


def machine_state(state_dir: Path, user: str) -> dict[str, object]:
    """What a start changes on the machine, to compare before and after a start that failed: sshd's
    config, the user's authorized_keys and password, the session environment and its profile hook,
    the saved password record, ngrok's token file, and our processes."""
    paths = Paths(state_dir=state_dir)

    def read(path: Path) -> bytes | None:
        return path.read_bytes() if path.exists() else None

    return {
        "sshd_config": read(paths.sshd_config),
        "authorized_keys": read(home_of(user) / ".ssh" / "authorized_keys"),
        "profile": read(paths.profile_script),
        "session_environment": read(paths.session_env_file),
        "password_record": read(paths.password_record),
        "password": read_password_hash(paths.shadow_file, user),
        "processes": our_processes(state_dir),
        "ngrok_config": read(paths.ngrok_config),
    }


def live_processes_of(user: str) -> list[str]:
    """Command lines of the user's processes that have not exited (zombies wait for init)."""
    listing = subprocess.run(["ps", "-u", user, "-o", "stat=,args="], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if line.strip() and not line.strip().startswith("Z")]


@dataclass(frozen=True)
class SshClient:
    """The real OpenSSH client, fed the password through sshpass's environment variable
    (never on a command line) and ignoring known_hosts (tests make new host keys often)."""

    known_hosts: Path

    def options(self) -> list[str]:
        return [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "LogLevel=ERROR",
        ]

    def run_with_key(
        self, connection: Connection, command: str, identity: Path, *extra: str, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Key login only: no password is offered, so success proves the key was accepted."""
        argv = [
            "ssh", "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", "PasswordAuthentication=no",
            "-o", "KbdInteractiveAuthentication=no", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={self.known_hosts}",
            *extra, "-p", str(connection.port), f"{connection.user}@{connection.host}", command,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)

    def run(
        self,
        connection: Connection,
        command: str,
        *,
        password: str | None = None,
        tty: bool = False,
        stdin: str | None = None,
        host: str | None = None,
        port: int | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        secret = connection.password if password is None else password
        argv = [
            "sshpass",
            "-e",
            "ssh",
            *self.options(),
            "-p",
            str(port or connection.port),
            *(["-tt"] if tty else []),
            f"{connection.user}@{host or connection.host}",
        ]
        if command:
            argv.append(command)
        return subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "SSHPASS": secret or ""},
            check=False,
        )


@dataclass(frozen=True)
class ClientKey:
    private: Path
    public_line: str


def make_client_key(directory: Path, name: str = "id_ed25519", kind: str = "ed25519") -> ClientKey:
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", f"{name}@laptop", "-f", str(private)], check=True
    )
    return ClientKey(private, private.with_suffix(".pub").read_text().strip())


def home_of(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


@contextlib.contextmanager
def copies_for_other_accounts(*sources: Path) -> Iterator[Path]:
    """A fresh folder holding copies of ``sources`` (files, or folders without ``__pycache__``) that
    every account can read and enter and only root can write, removed afterwards. What a test hands
    another account must come from here, not from this checkout: a clone may sit in a folder others
    cannot enter (CI clones under /root, mode 0700), and pytest's tmp_path is root's alone too."""
    folder = Path(tempfile.mkdtemp(prefix="colab-ssh-shared-"))
    try:
        closed = [str(parent) for parent in folder.parents if not parent.stat().st_mode & 0o001]
        assert not closed, f"other accounts cannot enter {closed}: point TMPDIR at a folder they can"
        for source in sources:
            if source.is_dir():
                shutil.copytree(source, folder / source.name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, folder / source.name)
        # The clone's modes follow root's umask (0077 leaves files 0600): readable by all, and
        # executable by all where the source is executable.
        for path in (folder, *folder.rglob("*")):
            executable = path.is_dir() or path.stat().st_mode & 0o100
            path.chmod(0o755 if executable else 0o644)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def have(program: str) -> bool:
    return shutil.which(program) is not None


def interrupt_when(ready: Callable[[], bool], *, within: float = 30) -> threading.Thread:
    """Ctrl-C as a notebook delivers it (SIGINT to the kernel's process) once ``ready()`` holds."""

    def watch() -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):  # a process gone while ready() looked at /proc
                if ready():
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def start_published_ngrok(
    user: str, port: int, state_dir: Path, keys_dir: Path, token: str, public_key: str, **options: object
) -> Connection:
    """start_ssh() over ngrok as the laptop's lookups meet it: the host keys in ``keys_dir``, where
    the runtime publishes its address too, and a monitor that reopens a dead tunnel within a second."""
    return start_ssh(
        tunnel="ngrok",
        authtoken=token,
        port=port,
        user=user,
        state_dir=state_dir,
        host_keys_dir=keys_dir,
        public_key=public_key,
        quiet=True,
        monitor_interval=0.5,
        **options,  # type: ignore[arg-type]
    )
