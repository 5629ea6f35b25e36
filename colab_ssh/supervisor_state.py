"""The ``colab-ssh start`` supervisor as others see it: its files, whether it runs, stopping it.

Below core.py on purpose: stop_ssh() must end the supervisor (else it would bring back what
stop_ssh() stopped), while supervisor.py, which serves start_ssh()'s session, sits above core.
So what both need lives here, and neither imports the other back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .connection import Connection, HostKey
from .errors import ColabSSHError
from .ownership import open_lock_file
from .paths import Paths
from .processes import holds_open, read_record, record_process, same_process, stop_tree, supervisor_is_ours
from .system import read_file, remove_file, write_file

__all__ = [
    "LOG_MARK",
    "STOP_TIMEOUT",
    "Secrets",
    "StateFiles",
    "connection_from_json",
    "connection_to_json",
    "stop_supervisor",
]

LOG_MARK = "[log "  # starts the supervisor's log lines that are not progress (start does not relay them)
STOP_TIMEOUT = 30.0  # seconds the supervisor gets to stop sshd and the tunnel before SIGKILL


@dataclass(frozen=True)
class StateFiles:
    """The command line's files, beside start_ssh()'s own in the state folder (named in Paths)."""

    state_dir: Path

    @property
    def _paths(self) -> Paths:
        return Paths(state_dir=self.state_dir)

    @property
    def pid(self) -> Path:
        return self._paths.supervisor_pid

    @property
    def log(self) -> Path:
        return self._paths.supervisor_log

    @property
    def connection(self) -> Path:
        return self._paths.connection_json

    @property
    def error(self) -> Path:
        return self._paths.error_json

    @property
    def lock(self) -> Path:
        return self._paths.cli_lock

    @property
    def serving(self) -> Path:
        return self._paths.serving_lock

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One start or stop at a time: two supervisors would fight over the port and the files."""
        descriptor = open_lock_file(self.lock)  # no-follow, close-on-exec: not inherited by children
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def record_pid(self, pid: int, argv: Sequence[str]) -> None:
        record_process(self.pid, pid, argv)

    def running_pid(self) -> int | None:
        """The supervisor's pid if it still runs: the recorded process (pid, start time, argv), and ours.

        Ours: its command line is ``colab_ssh serve`` for this folder (as we spawn it), or it
        holds serving.lock open (a foreground server, whatever script runs it). A pid file naming
        any other process, even with its true start time, names no supervisor.
        """
        record = read_record(self.pid)
        if record is None or not same_process(record):
            return None
        if supervisor_is_ours(self.state_dir)(record.argv) or holds_open(record.pid, self.serving):
            return record.pid
        return None

    def forget_own_pid(self) -> None:
        """Remove the pid file if it names this process (never another supervisor's)."""
        if self.running_pid() == os.getpid():
            remove_file(self.pid)

    def write_json(self, path: Path, content: dict[str, Any]) -> None:
        write_file(path, json.dumps(content, indent=1) + "\n", mode=0o600)

    def read_json(self, path: Path) -> dict[str, Any] | None:
        """The file's object; None while it is missing (or, never seen thanks to atomic writes, torn)."""
        try:
            content = json.loads(read_file(path) or b"null")  # never through a link
        except (OSError, ColabSSHError, ValueError):
            return None
        return content if isinstance(content, dict) else None

    def clear(self) -> None:
        for path in (self.pid, self.connection, self.error):
            remove_file(path)


def stop_supervisor(state_dir: str | os.PathLike[str], *, timeout: float = STOP_TIMEOUT) -> bool:
    """End the ``colab-ssh start`` supervisor of this state folder if one runs; True if one did.

    For stop_ssh(): otherwise the supervisor would bring back what stop_ssh() stopped. It never
    ends the calling process (the supervisor's own stop_ssh() on its way out comes here too).
    SIGTERM, and SIGKILL after ``timeout``, to it and what it started (processes.stop_tree()).
    """
    files = StateFiles(Path(state_dir))
    pid = files.running_pid()
    if pid is None or pid == os.getpid():
        return False
    stop_tree(pid, timeout=timeout)
    files.clear()
    return True


@dataclass(frozen=True)
class Secrets:
    """What must never be on a command line or in a log: options.OPTIONS' Passing.STDIN ones."""

    authtoken: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def connection_to_json(connection: Connection) -> dict[str, Any]:
    """For connection.json, so that `start` and `status` in other processes can show it."""
    return dataclasses.asdict(connection)


def connection_from_json(content: dict[str, Any]) -> Connection:
    """The inverse of connection_to_json(); keys this version does not know are left out."""
    names = {item.name for item in dataclasses.fields(Connection)}
    values = {name: value for name, value in content.items() if name in names}
    values["host_keys"] = tuple(HostKey(**key) for key in values.get("host_keys", ()))
    values["client_hints"] = tuple(values.get("client_hints", ()))
    return Connection(**values)
