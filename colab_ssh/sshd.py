"""Running our own sshd: validate its config, launch it detached, wait for its banner, stop it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

from .errors import ColabSSHError, SshdConfigError, SshdStartError
from .system import tail

__all__ = [
    "SshdProcess",
    "answers_banner",
    "descendants",
    "port_in_use",
    "require_free_port",
    "session_members",
    "sshd_version",
    "stop_stale_process",
    "terminate_pid",
    "validate_config",
]

_POLL_SECONDS = 0.005


def validate_config(sshd: str, config: Path, port: int) -> None:
    """``sshd -t``: the config must parse and the host keys must load."""
    result = subprocess.run(
        [sshd, "-t", "-f", str(config), "-p", str(port)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SshdConfigError(
            f"sshd rejected the configuration colab_ssh generated ({config}); the previous one was"
            " restored and nothing was started.",
            sshd_message=(result.stderr or result.stdout).strip(),
        )


def sshd_version(sshd: str) -> tuple[int, int]:
    """(major, minor) of the installed sshd; (0, 0) if it does not say."""
    # `-V` exists from OpenSSH 9.1; older ones print the version with their usage message.
    result = subprocess.run(
        [sshd, "-V"], stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def port_in_use(port: int) -> bool:
    """Whether some program already listens on ``port`` (sshd would fail to bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - the address sshd itself binds
        except OSError:
            return True
    return False


def answers_banner(port: int, timeout: float = 1.0) -> bool:
    """Whether an SSH server answers on the loopback port with its version banner."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            return connection.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _process_command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
            return True
        time.sleep(_POLL_SECONDS)
    return False


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _process_table() -> list[tuple[int, int, int]]:
    """(pid, parent pid, session id) of every process."""
    table = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        table.append((int(entry.name), int(fields[1]), int(fields[3])))
    return table


def descendants(*roots: int) -> list[int]:
    """Every process below the given ones."""
    children: dict[int, list[int]] = {}
    for pid, parent, _session in _process_table():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    pending = list(roots)
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def session_members(session_id: int) -> list[int]:
    """Processes still in a session, e.g. a dead sshd listener's connection handlers."""
    return [pid for pid, _parent, session in _process_table() if session == session_id and pid != session_id]


def terminate_pid(pid: int, timeout: float = 3.0) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, timeout):
            return


def stop_stale_process(pid_file: Path, marker: str) -> None:
    """Stop a process a previous kernel of ours left running (a notebook restart keeps them).

    Only a process whose command line contains ``marker`` (our config path) is touched,
    so a recycled pid never makes us kill someone else's program.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    if pid != os.getpid() and any(marker in part for part in _process_command_line(pid)):
        below = descendants(pid)
        terminate_pid(pid)
        late = session_members(pid)
        for child in dict.fromkeys([*below, *late, *descendants(*late)]):
            terminate_pid(child, timeout=1.0)
    pid_file.unlink(missing_ok=True)


class SshdProcess:
    """An sshd started by us, in its own session so that interrupting a cell does not kill it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def launch(cls, sshd: str, config: Path, port: int, log_path: Path, timeout: float = 10.0) -> SshdProcess:
        """Start sshd and return once it answers with its banner."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            # Its own session, and a log file instead of our stdout/stderr: a daemon holding
            # the caller's pipes would make anyone reading them wait forever.
            process = subprocess.Popen(
                [sshd, "-D", "-f", str(config), "-p", str(port), "-E", str(log_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        started = cls(process, port, log_path)
        started._wait_for_banner(timeout)
        return started

    def _log_tail(self) -> str:
        try:
            return tail(self.log_path.read_text(errors="replace"))
        except OSError:
            return "(no log)"

    def _wait_for_banner(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SshdStartError(
                    f"sshd exited with code {self.process.returncode} right after starting on port"
                    f" {self.port}.",
                    log_tail=self._log_tail(),
                )
            if answers_banner(self.port, timeout=0.5):
                return
            time.sleep(_POLL_SECONDS)
        self.stop()
        raise SshdStartError(
            f"sshd did not answer on port {self.port} within {timeout:.0f} s; it was stopped.",
            log_tail=self._log_tail(),
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self) -> bool:
        return self.alive() and answers_banner(self.port)

    def stop(self) -> None:
        """Stop the listener and every session it started (they would outlive it otherwise)."""
        listener = self.process.pid
        sessions = descendants(listener)
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # A connection accepted while we looked is in the listener's session, now orphaned.
        late = session_members(listener)
        for pid in dict.fromkeys([*sessions, *late, *descendants(*late)]):
            terminate_pid(pid, timeout=1.0)


def require_free_port(port: int) -> None:
    if port_in_use(port):
        raise ColabSSHError(
            f"Port {port} is already in use on this machine (often the system's own sshd, on 22)."
            f" Pass another port, e.g. start_ssh(port=2222), or stop the program using it."
        )
