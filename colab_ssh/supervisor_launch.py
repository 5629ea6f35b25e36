"""Launching the ``colab-ssh start`` supervisor, relaying its progress, and waiting until it is up.

``start`` runs ``python -m colab_ssh serve`` (supervisor.py) in its own session, its secrets on
a pipe, its output in a log file; it copies the progress lines of that log to the terminal
until connection.json (the supervisor is up) or error.json (it failed) appears.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from .connection import Connection
from .core import stop_ssh
from .environment import CALLER_PYTHONPATH
from .options import StartOptions
from .processes import stop_tree
from .supervisor_state import LOG_MARK, STOP_TIMEOUT, Secrets, StateFiles, connection_from_json

__all__ = ["SupervisorError", "spawn_supervisor", "stop_spawned", "wait_for_supervisor"]

_POLL = 0.1


class SupervisorError(Exception):
    """The supervisor did not come up: one line for the user; ``more`` and its ``trace`` with --debug."""

    def __init__(self, message: str, *, more: str = "", trace: str = "", expected: bool = True) -> None:
        super().__init__(message)
        self.more = more
        self.trace = trace
        self.expected = expected


def spawn_supervisor(
    options: StartOptions, secrets: Secrets, files: StateFiles, *, check_interval: float
) -> subprocess.Popen[bytes]:
    """Launch the supervisor in its own session, its output in a fresh log, the secrets on its stdin."""
    package_root = str(Path(__file__).resolve().parent.parent)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
        # Our package folder on PYTHONPATH is for the supervisor only: SSH sessions get the
        # caller's PYTHONPATH, recorded here (see environment.caller_environment()).
        CALLER_PYTHONPATH: os.environ.get("PYTHONPATH", ""),
    }
    command = [
        sys.executable,
        "-m",
        "colab_ssh",
        "serve",
        *options.argv(),
        "--state-dir",
        str(files.state_dir),
        "--check-interval",
        str(check_interval),
    ]
    log = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(log, 0o600)
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            cwd="/",
            env=environment,
            start_new_session=True,
        )
    finally:
        os.close(log)
    files.record_pid(process.pid, command)
    assert process.stdin is not None  # noqa: S101 - stdin=PIPE above
    with process.stdin:
        process.stdin.write(json.dumps(dataclasses.asdict(secrets)).encode())
    return process


class _LogRelay:
    """Copies the supervisor's new progress lines to our output as they appear (all lines with --debug)."""

    def __init__(self, path: Path, out: TextIO | None, *, everything: bool = False) -> None:
        self._file = path.open("rb")
        self._partial = b""
        self._out = out
        self._everything = everything

    def pump(self, *, final: bool = False) -> None:
        self._partial += self._file.read()
        *lines, self._partial = self._partial.split(b"\n")
        if final and self._partial:
            lines, self._partial = [*lines, self._partial], b""
        if self._out is not None:
            for line in lines:
                if self._everything or not line.startswith(LOG_MARK.encode()):
                    print(line.decode(errors="replace"), file=self._out, flush=True)

    def close(self) -> None:
        self._file.close()


def wait_for_supervisor(
    process: subprocess.Popen[bytes],
    files: StateFiles,
    timeout: float,
    *,
    out: TextIO | None,
    everything: bool = False,
) -> Connection:
    """The connection once the supervisor is up; meanwhile its progress lines are copied to ``out``.

    ``everything``: its library log lines too. Its error, or no connection within ``timeout``
    (then it is stopped), is raised as a SupervisorError.
    """
    deadline = time.monotonic() + timeout
    with contextlib.closing(_LogRelay(files.log, out, everything=everything)) as relay:
        while True:
            relay.pump()
            state = files.read_json(files.connection)
            if state is not None and state.get("pid") == process.pid:
                relay.pump(final=True)
                return connection_from_json(state["connection"])
            error = files.read_json(files.error)
            if error is not None or process.poll() is not None:
                process.wait()
                relay.pump(final=True)
                raise _error_from(files.read_json(files.error), process.returncode, files)
            if time.monotonic() > deadline:
                stop_spawned(process, files)
                raise SupervisorError(
                    f"sshd and the tunnel were not up within {timeout:.0f} s; see {files.log}."
                )
            time.sleep(_POLL)


def _error_from(record: dict[str, Any] | None, returncode: int | None, files: StateFiles) -> SupervisorError:
    """The supervisor's error.json as our own error: the same first line, its traceback for --debug."""
    if record is None:
        return SupervisorError(
            f"The supervisor exited (status {returncode}) before it was up; see {files.log}."
        )
    message = str(record.get("message", "")).strip() or str(record.get("type", "error"))
    first, _, rest = message.partition("\n")
    expected = bool(record.get("expected"))
    if not expected:
        first = f"unexpected {record.get('type')}: {first}"
    return SupervisorError(first, more=rest, trace=str(record.get("traceback", "")), expected=expected)


# --- stopping it ---------------------------------------------------------------------------------


def stop_spawned(process: subprocess.Popen[bytes], files: StateFiles) -> None:
    """End a supervisor spawned here and reap it; stop_ssh() for anything it left (after a SIGKILL, all)."""
    stop_tree(process.pid, timeout=STOP_TIMEOUT)
    stop_ssh(state_dir=files.state_dir)
    process.wait()
