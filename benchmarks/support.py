"""What every benchmark needs: a throw-away user, free ports, waiting for a banner, clean-up.

The benchmarks change nothing on the machine that outlives them: the login user is a fresh
account removed at the end (never root, whose password would change), ports are free ones on
127.0.0.1, and every process started is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = [
    "APT_LOCKED",
    "APT_RETRIES",
    "INCIDENTS",
    "REPO",
    "banner_at",
    "child_env",
    "free_port",
    "home_of",
    "log",
    "median",
    "once_more_on_failure",
    "pids_mentioning",
    "stop_pid",
    "stop_ssh_in_new_process",
    "temporary_user",
    "wait_for_banner",
]

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
_POLL = 0.001


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def child_env(pycache: Path, **extra: str) -> dict[str, str]:
    """The environment of every Python the benchmarks time: the same bytecode cache for all.

    Bytecode goes to ``pycache`` (a fresh folder, filled by a warm-up run), so a stale or
    missing ``__pycache__`` in the repository (``PYTHONDONTWRITEBYTECODE`` is common in
    sandboxes) cannot make one measurement compile sources and another not. A pip-installed
    package on Colab has its bytecode compiled at install time: warm is the realistic case.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def banner_at(port: int, timeout: float = 1.0, host: str = "127.0.0.1") -> bool:
    """Whether something answers on host:port with an SSH version banner."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            return connection.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def wait_for_banner(
    port: int,
    started: float,
    timeout: float = 30.0,
    host: str = "127.0.0.1",
    failed: Callable[[], bool] = lambda: False,
) -> float:
    """Seconds from ``started`` (a perf_counter value) until host:port answers with a banner.

    Polls every millisecond: a refused connect costs microseconds, so the poll barely competes
    with the process being timed for the two cores. ``failed()`` true ends the wait at once.
    """
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if banner_at(port, host=host):
            return time.perf_counter() - started
        if failed():
            raise RuntimeError(f"gave up waiting for a banner on {host}:{port}: the process failed")
        time.sleep(_POLL)
    raise TimeoutError(f"no SSH banner on {host}:{port} within {timeout:.0f} s")


def stop_pid(pid: int, timeout: float = 3.0) -> None:
    """SIGTERM one process we started, SIGKILL if it lingers; reap it if it is our child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            if not Path(f"/proc/{pid}").exists() or _state(pid) == "Z":
                return
            time.sleep(0.01)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return "Z"


def _pids_of_uid(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid and _state(int(entry.name)) != "Z":
                    found.append(int(entry.name))
    return found


def stop_ssh_in_new_process(python: str, env: dict[str, str], state_dir: Path) -> None:
    """``stop_ssh(state_dir=...)`` from a fresh process, as after a kernel restart.

    Not in the harness's own process: there, a session of its own (the slow-link one) would be
    stopped instead, whatever the state_dir.
    """
    script = "import sys; from colab_ssh import stop_ssh; stop_ssh(state_dir=sys.argv[1])"
    subprocess.run([python, "-c", script, str(state_dir)], env=env, check=True, timeout=60)


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line (or process title) contains ``text``, a path of ours."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                command = entry.joinpath("cmdline").read_bytes().decode(errors="replace")
                if text in command and _state(int(entry.name)) != "Z":
                    found.append(int(entry.name))
    return found


def home_of(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


@contextlib.contextmanager
def temporary_user() -> Iterator[str]:
    """A fresh account to log in as; its leftover processes (ours: sftp servers, shells) and the
    account itself are removed afterwards."""
    name = f"csb{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    uid = pwd.getpwnam(name).pw_uid
    try:
        yield name
    finally:
        for pid in _pids_of_uid(uid):
            stop_pid(pid, timeout=1.0)
        subprocess.run(["userdel", "-f", "-r", name], check=False, capture_output=True)


# apt's words when another apt or dpkg holds its lock (other tests on this machine run apt too).
APT_LOCKED = ("Could not get lock", "Unable to acquire the dpkg frontend lock", "Unable to lock")
APT_RETRIES = 20


# Failures a measurement survived by running again (once): RESULTS.md lists them, so a flaky
# start is seen, not hidden.
INCIDENTS: list[str] = []


def once_more_on_failure(what: str, measure: Callable[[], T]) -> T:
    """``measure()``; if it raises RuntimeError, note the failure and run it once more."""
    try:
        return measure()
    except RuntimeError as error:
        first_line = next((line for line in reversed(str(error).splitlines()) if line.strip()), "?")
        INCIDENTS.append(f"{what} failed once and was run again: {first_line[:300]}")
        log(f"  {INCIDENTS[-1]}")
        return measure()


def log(message: str) -> None:
    """Progress on stderr: the run takes minutes, and stdout may be the results table."""
    print(message, file=sys.stderr, flush=True)


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's next stdout line, or "" if it printed none within ``timeout`` seconds (a
    thread: pipes have no timeout)."""
    line: list[str] = []
    reader = threading.Thread(
        target=lambda: line.append(process.stdout.readline() if process.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(timeout)
    return line[0] if line else ""


def end_when_stdin_closes(process: subprocess.Popen[str], timeout: float = 60) -> None:
    """End a helper process that exits once its stdin closes; stopped if it does not in time."""
    with contextlib.suppress(OSError):
        if process.stdin is not None:
            process.stdin.close()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_pid(process.pid)
    if process.stdout is not None:
        process.stdout.close()
