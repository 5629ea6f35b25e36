"""The background supervisor that ``colab-ssh start`` launches (its files: supervisor_state.py).

``start`` has to return while sshd and the tunnel keep running, but pyngrok ends the ngrok
agent when the Python process that started it exits. So ``start`` launches a small
supervisor, ``python -m colab_ssh serve``, in its own session (a closed terminal or an
interrupted cell does not reach it), with /dev/null as input and a log file as output (a
caller reading ``colab-ssh start | cat`` must see the end of the output when ``start`` exits).
The supervisor calls start_ssh(), writes the connection to ``connection.json`` (mode 0600:
it holds the password) or the error to ``error.json``, keeps start_ssh()'s monitor (the one
loop that brings back whatever dies) running, records the session's events (events.py) there
and as lines in its log, and on SIGTERM calls stop_ssh() and exits. The ngrok authtoken and
the password reach it through a pipe on its standard input, never its command line, where
``ps`` would show them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from types import FrameType
from typing import Any

from .connection import Connection
from .core import ssh_status, start_ssh, stop_ssh
from .display import connection_display_suppressed
from .errors import ColabSSHError
from .events import EventKind, SessionEvent, subscribed
from .exit_status import PROGRAM
from .options import OPTIONS, StartOptions
from .ownership import open_lock_file
from .secret_text import conceal
from .supervisor_state import LOG_MARK, Secrets, StateFiles, connection_to_json
from .system import remove_file

__all__ = ["HEALTH_INTERVAL", "MONITOR_INTERVAL", "PROGRAM", "serve", "supervise"]

HEALTH_INTERVAL = 30.0  # how often the state in connection.json is refreshed
# start_ssh()'s default monitor interval, from the one place options are declared.
MONITOR_INTERVAL: float = next(option.default for option in OPTIONS if option.name == "monitor_interval")


# --- what the supervisor serves ------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- serving: the supervisor, and `start --foreground` ----------------------------------------


class _StopRequest:
    """SIGTERM, SIGINT and SIGHUP only raise a flag: a start under way finishes, then we stop cleanly.

    (Blocking the signals instead would be inherited by sshd and the ngrok agent.)
    """

    def __init__(self) -> None:
        self.requested = False
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.requested = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True as soon as a stop was requested."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.requested


class _Server:
    """One start_ssh() session kept up until a stop is requested, its state kept in connection.json."""

    def __init__(
        self,
        options: StartOptions,
        secrets: Secrets,
        files: StateFiles,
        *,
        quiet: bool,
        check_interval: float,
    ) -> None:
        self.options = options
        self.secrets = secrets
        self.files = files
        self.quiet = quiet
        # start_ssh()'s monitor is the one loop that brings back what died: as often as it
        # would anyway, or as often as we check, if that is more often.
        self.monitor_interval = min(MONITOR_INTERVAL, check_interval)
        self.last_error: str | None = None  # the monitor's last failure to bring something back
        self.since = _now()
        self.lost = False  # the session was stopped by another process: nothing left to serve or stop
        self.gave_up: str | None = None  # why sshd cannot be brought back (its port taken): not retried

    def start(self) -> Connection:
        """start_ssh(); its monitor keeps the session up, and reports through on_event()."""
        return start_ssh(
            self.secrets.authtoken,
            password=self.secrets.password,
            quiet=self.quiet,
            state_dir=self.files.state_dir,
            monitor_interval=self.monitor_interval,
            **self.options.api_arguments(),
        )

    def on_event(self, event: SessionEvent) -> None:
        """The session's events: a line in our log (which `start` relays), the state in connection.json."""
        if event.kind is EventKind.UP:
            return  # start() returns the connection: serve() records it
        print(f"{_now()} {event.describe()}", flush=True)
        if event.kind is EventKind.ERROR:
            self.last_error = event.detail
        if event.kind is not EventKind.RESTART:
            self.record(event.connection, self.gave_up or self.last_error)

    def record(self, connection: Connection, last_error: str | None = None) -> None:
        status = ssh_status()
        self.files.write_json(
            self.files.connection,
            {
                "pid": os.getpid(),
                "since": self.since,
                "checked_at": _now(),
                "options": dict(self.options.values),
                "connection": connection_to_json(status.connection or connection),
                "sshd_alive": status.sshd_alive,
                "tunnel_alive": status.tunnel_alive,
                "restarts": status.restarts,
                "last_error": last_error,
            },
        )

    def health_check(self, connection: Connection) -> Connection:
        """Record the state; notice when start_ssh()'s monitor gave up (it alone brings back what died)."""
        status = ssh_status()
        if status.monitor_error is not None and not status.monitoring:
            # start_ssh()'s monitor gave up: the port is someone else's now, or another process
            # stopped the session. Trying again every interval would only fail the same way (and
            # restart sshd in a loop); `colab-ssh status` shows why it is down.
            self.lost = not status.running
            self._give_up(status.monitor_error)
        if self.lost:
            return connection
        if status.sshd_alive and status.tunnel_alive:
            self.last_error = None
        connection = status.connection or connection
        self.record(connection, self.gave_up or self.last_error)
        return connection

    def _give_up(self, reason: str) -> None:
        if self.gave_up is None:
            self.gave_up = reason
            print(f"{_now()} not trying again: {reason}", flush=True)


def serve(
    options: StartOptions,
    secrets: Secrets,
    files: StateFiles,
    *,
    show_details: bool,
    quiet: bool = False,
    check_interval: float = HEALTH_INTERVAL,
) -> None:
    """Start, then keep sshd and the tunnel up until asked to stop; stop_ssh() on the way out.

    ``show_details``: print the details here (``start --foreground``); otherwise they are never
    shown, also not when the tunnel comes back at a new address, and only progress lines go to
    our output (the supervisor's log, which ``start`` relays). ``quiet``: not even those.
    """
    with contextlib.ExitStack() as stack:
        # Held open while serving: how `stop` and `status` know this process as ours (running_pid).
        stack.callback(os.close, open_lock_file(files.serving))
        if not show_details:
            stack.enter_context(connection_display_suppressed())
        server = _Server(options, secrets, files, quiet=quiet, check_interval=check_interval)
        stack.enter_context(subscribed(server.on_event))
        stop = _StopRequest()
        try:
            connection = server.start()
        except BaseException:
            files.forget_own_pid()
            raise
        try:
            server.record(connection)
            if show_details and not quiet:
                print(f"Serving until Ctrl-C or `{PROGRAM} stop`.", flush=True)
            while not stop.wait(check_interval) and not server.lost:
                connection = server.health_check(connection)
        finally:
            if not server.lost:  # else the folder may belong to another process's session now
                stop_ssh(state_dir=files.state_dir)
            remove_file(files.connection)
            files.forget_own_pid()


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n", "\\n")


def _log_records_marked() -> None:
    """Library log records go to the log as ``[log NAME] LEVEL: ...`` lines, which start does not relay.

    Without a handler Python would print pyngrok's warnings bare, indistinguishable from
    our progress lines.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(f"{LOG_MARK}%(name)s] %(levelname)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    logging.captureWarnings(True)


def _error_record(error: BaseException) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": str(error),
        "expected": isinstance(error, ColabSSHError),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }


def _read_secrets() -> Secrets:
    """The secrets from the pipe on stdin, then /dev/null there (in a function of its own, so that
    no frame of a later traceback holds them in a plain local)."""
    raw = sys.stdin.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    loaded = json.loads(raw) if raw.strip() else {}
    return Secrets(authtoken=conceal(loaded.get("authtoken")), password=conceal(loaded.get("password")))


def supervise(options: StartOptions, files: StateFiles, *, check_interval: float) -> bool:
    """The supervisor (``serve``): secrets from the pipe on stdin, then /dev/null there; serve().

    True once it stopped as asked; False if it failed, with the error in error.json for ``start``.
    """
    _log_records_marked()
    try:
        secrets = _read_secrets()
        serve(options, secrets, files, show_details=False, check_interval=check_interval)
    except BaseException as error:
        files.write_json(files.error, _error_record(error))
        return False
    return True
