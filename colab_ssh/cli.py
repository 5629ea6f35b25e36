"""The ``colab-ssh`` command: start, stop and status from a terminal, a notebook's ``!`` line, or a VM.

``start`` has to return while sshd and the tunnel keep running, but pyngrok ends the ngrok
agent when the Python process that started it exits. So ``start`` launches a small
supervisor, ``python -m colab_ssh serve``, in its own session (a closed terminal or an
interrupted cell does not reach it), with /dev/null as input and a log file as output (a
caller reading ``colab-ssh start | cat`` must see the end of the output when ``start`` exits).
The supervisor calls start_ssh(), writes the connection to ``connection.json`` (mode 0600:
it holds the password) or the error to ``error.json``, brings back whatever dies, and on
SIGTERM calls stop_ssh() and exits. The ngrok authtoken and the password reach it through
a pipe on its standard input, never its command line, where ``ps`` would show them.

Exit codes: 0 success; 1 failure (one line on stderr, ``--debug`` adds the traceback);
2 a bad command line (argparse's usage message).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import getpass
import inspect
import json
import logging
import os
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from . import __version__
from .authtoken import ENV_NAME, TOKEN_PAGE, resolve_authtoken
from .connection import Connection, HostKey, render_details
from .core import ssh_status, start_ssh, stop_ssh
from .display import connection_display_suppressed
from .errors import AuthtokenMissingError, ColabSSHError
from .paths import Paths
from .platform import Platform, detect_platform
from .request import NGROK_REGIONS, TUNNEL_NAMES
from .sshd import answers_banner
from .system import check_system, write_file

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "main", "stop_supervisor"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
PROGRAM = "colab-ssh"
START_TIMEOUT = 300.0  # a fresh runtime installs openssh-server and downloads the ngrok agent
STOP_TIMEOUT = 30.0
HEALTH_INTERVAL = 30.0
_POLL = 0.1
LOG_MARK = "[log "  # starts the supervisor's log lines that are not progress


class CliError(Exception):
    """A failure reported as one line (exit 1); ``more`` and ``trace`` are shown with --debug only."""

    def __init__(self, message: str, *, more: str = "", trace: str = "", expected: bool = True) -> None:
        super().__init__(message)
        self.more = more
        self.trace = trace
        self.expected = expected


# --- the options, as start_ssh() takes them -------------------------------------------------


@dataclass(frozen=True)
class StartOptions:
    """start_ssh()'s options that may appear on a command line: none of them is a secret."""

    tunnel: str = "ngrok"
    port: int = 22
    region: str | None = None
    user: str = "root"
    mount_drive: bool = False
    public_keys: tuple[str, ...] = ()
    github_user: str | None = None
    host_keys_dir: str | None = None

    def api_arguments(self) -> dict[str, Any]:
        """Keyword arguments for start_ssh(); the optional ones only when given (older versions lack them)."""
        arguments: dict[str, Any] = {
            "tunnel": self.tunnel,
            "port": self.port,
            "region": self.region,
            "user": self.user,
            "mount_drive": self.mount_drive,
        }
        if self.public_keys:
            arguments["public_key"] = list(self.public_keys)
        if self.github_user is not None:
            arguments["github_user"] = self.github_user
        if self.host_keys_dir is not None:
            arguments["host_keys_dir"] = self.host_keys_dir
        return arguments

    def argv(self) -> list[str]:
        """The same options for the supervisor's command line."""
        words = ["--tunnel", self.tunnel, "--port", str(self.port), "--user", self.user]
        if self.region is not None:
            words += ["--region", self.region]
        if self.mount_drive:
            words.append("--mount-drive")
        for key in self.public_keys:
            words += ["--public-key", key]
        if self.github_user is not None:
            words += ["--github-user", self.github_user]
        if self.host_keys_dir is not None:
            words += ["--host-keys-dir", self.host_keys_dir]
        return words


@dataclass(frozen=True)
class Secrets:
    """What must never be on a command line or in a log."""

    authtoken: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def _absolute_if_file(value: str) -> str:
    """A .pub path made absolute (the supervisor runs in /); key text unchanged."""
    path = Path(value).expanduser()
    return str(path.absolute()) if path.is_file() else value


def options_from(arguments: argparse.Namespace) -> StartOptions:
    return StartOptions(
        tunnel=arguments.tunnel,
        port=arguments.port,
        region=arguments.region,
        user=arguments.user,
        mount_drive=arguments.mount_drive,
        public_keys=tuple(_absolute_if_file(key) for key in arguments.public_key),
        github_user=arguments.github_user,
        host_keys_dir=(
            None
            if arguments.host_keys_dir is None
            else str(Path(arguments.host_keys_dir).expanduser().absolute())
        ),
    )


def _check_supported(options: StartOptions) -> None:
    """A clear error, not a TypeError, if this start_ssh() predates an option."""
    known = inspect.signature(start_ssh).parameters
    missing = [name for name in options.api_arguments() if name not in known]
    if missing:
        raise CliError(f"This version of colab_ssh has no {', '.join(missing)} option; upgrade it.")


def _check_platform(options: StartOptions) -> None:
    """Colab-only options refused outside Colab with a message, before anything starts."""
    platform = detect_platform()
    if options.mount_drive and platform is not Platform.COLAB:
        raise CliError(
            f"--mount-drive needs Google Colab; this is {platform.value}. Mount your storage"
            " yourself and leave --mount-drive off."
        )


# --- the files in the state folder ---------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process for good."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


@dataclass(frozen=True)
class StateFiles:
    """The command line's files, beside start_ssh()'s own in the state folder."""

    state_dir: Path

    @property
    def pid(self) -> Path:
        return self.state_dir / "supervisor.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / "supervisor.log"

    @property
    def connection(self) -> Path:
        return self.state_dir / "connection.json"

    @property
    def error(self) -> Path:
        return self.state_dir / "error.json"

    @property
    def lock(self) -> Path:
        return self.state_dir / "cli.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One start or stop at a time: two supervisors would fight over the port and the files."""
        self.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        descriptor = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def record_pid(self, pid: int) -> None:
        write_file(self.pid, f"{pid} {_start_time(pid) or ''}\n", mode=0o644)

    def running_pid(self) -> int | None:
        """The supervisor's pid if it still runs (the start time guards against a recycled pid)."""
        try:
            pid_text, started = self.pid.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return None
        return pid if _start_time(pid) == started else None

    def write_json(self, path: Path, content: dict[str, Any]) -> None:
        write_file(path, json.dumps(content, indent=1) + "\n", mode=0o600)

    def read_json(self, path: Path) -> dict[str, Any] | None:
        """The file's object; None while it is missing (or, never seen thanks to atomic writes, torn)."""
        try:
            content = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return content if isinstance(content, dict) else None

    def clear(self) -> None:
        for path in (self.pid, self.connection, self.error):
            path.unlink(missing_ok=True)


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

    def __init__(self, options: StartOptions, secrets: Secrets, files: StateFiles, *, quiet: bool) -> None:
        self.options = options
        self.secrets = secrets
        self.files = files
        self.quiet = quiet
        self.since = _now()

    def start(self) -> Connection:
        """start_ssh() with the same arguments every time: the second call brings back what died."""
        arguments = self.options.api_arguments()
        if "on_change" in inspect.signature(start_ssh).parameters:
            arguments["on_change"] = self._changed  # its monitor thread found a new tunnel address
        return start_ssh(
            self.secrets.authtoken,
            password=self.secrets.password,
            quiet=self.quiet,
            state_dir=self.files.state_dir,
            **arguments,
        )

    def _changed(self, connection: Connection) -> None:
        print(f"{_now()} the tunnel came back at {connection.host}:{connection.port}", flush=True)
        self.record(connection)

    def record(self, connection: Connection, last_error: str | None = None) -> None:
        status = ssh_status()
        self.files.write_json(
            self.files.connection,
            {
                "pid": os.getpid(),
                "since": self.since,
                "checked_at": _now(),
                "options": dataclasses.asdict(self.options),
                "connection": connection_to_json(status.connection or connection),
                "sshd_alive": status.sshd_alive,
                "tunnel_alive": status.tunnel_alive,
                "restarts": status.restarts,
                "last_error": last_error,
            },
        )

    def health_check(self, connection: Connection) -> Connection:
        """Bring back a dead sshd or tunnel (start_ssh()'s own monitor may be quicker), record the state."""
        status = ssh_status()
        last_error = None
        if not (status.running and status.sshd_alive and status.tunnel_alive):
            print(f"{_now()} sshd or the tunnel stopped; bringing it back", flush=True)
            try:
                connection = self.start()
            except ColabSSHError as error:
                last_error = str(error).splitlines()[0]
                print(f"{_now()} could not bring it back: {last_error}", flush=True)
        self.record(connection, last_error)
        return connection


def serve(
    options: StartOptions,
    secrets: Secrets,
    files: StateFiles,
    *,
    show_details: bool,
    quiet: bool = False,
    check_interval: float = HEALTH_INTERVAL,
) -> int:
    """Start, then keep sshd and the tunnel up until asked to stop; stop_ssh() on the way out.

    ``show_details``: print the details here (``start --foreground``); otherwise they are never
    shown, also not when the tunnel comes back at a new address, and only progress lines go to
    our output (the supervisor's log, which ``start`` relays). ``quiet``: not even those.
    """
    with contextlib.ExitStack() as stack:
        if not show_details:
            stack.enter_context(connection_display_suppressed())
        return _serve(_Server(options, secrets, files, quiet=quiet), show_details, check_interval)


def _serve(server: _Server, show_details: bool, check_interval: float) -> int:
    stop = _StopRequest()
    try:
        connection = server.start()
    except BaseException:
        _forget_pid(server.files)
        raise
    try:
        server.record(connection)
        if show_details and not server.quiet:
            print(f"Serving until Ctrl-C or `{PROGRAM} stop`.", flush=True)
        while not stop.wait(check_interval):
            connection = server.health_check(connection)
    finally:
        stop_ssh(state_dir=server.files.state_dir)
        server.files.connection.unlink(missing_ok=True)
        _forget_pid(server.files)
    return EXIT_OK


def _forget_pid(files: StateFiles) -> None:
    if files.running_pid() == os.getpid():
        files.pid.unlink(missing_ok=True)


def _error_record(error: BaseException) -> dict[str, Any]:
    return {
        "type": type(error).__name__,
        "message": str(error),
        "expected": isinstance(error, ColabSSHError),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }


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


def _supervise(arguments: argparse.Namespace) -> int:
    """``serve``: secrets from the pipe on stdin, then /dev/null there; errors into error.json."""
    _log_records_marked()
    raw = sys.stdin.read()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    files = StateFiles(Path(arguments.state_dir))
    try:
        loaded = json.loads(raw) if raw.strip() else {}
        secrets = Secrets(authtoken=loaded.get("authtoken"), password=loaded.get("password"))
        return serve(
            options_from(arguments),
            secrets,
            files,
            show_details=False,
            check_interval=arguments.check_interval,
        )
    except BaseException as error:
        files.write_json(files.error, _error_record(error))
        return EXIT_FAILURE


# --- start ---------------------------------------------------------------------------------------


def _read_line(stream: TextIO, prompt: str) -> str:
    if stream.isatty():
        return getpass.getpass(prompt)
    return stream.readline().rstrip("\r\n")


def read_secrets(arguments: argparse.Namespace, options: StartOptions) -> Secrets:
    """The token (stdin, $NGROK_AUTHTOKEN, or a hidden prompt on a terminal) and the password (stdin).

    Colab's secrets are readable only from a notebook cell, never from a command: in Colab's
    terminal they are skipped instead of failing in a confusing way.
    """
    authtoken = _read_line(sys.stdin, "ngrok authtoken: ") if arguments.authtoken_stdin else None
    password = _read_line(sys.stdin, "password: ") if arguments.password_stdin else None
    if options.tunnel != "ngrok":
        return Secrets(password=password)
    try:
        authtoken = resolve_authtoken(
            authtoken, os.environ, colab_secret=lambda _name: (None, "not readable from a command")
        )
    except AuthtokenMissingError:
        raise CliError(
            f"No ngrok authtoken: set {ENV_NAME}, pipe it in with --authtoken-stdin, or run {PROGRAM}"
            f" in a terminal to be asked. Get one at {TOKEN_PAGE}; or use --tunnel none where the port"
            " is reachable."
        ) from None
    return Secrets(authtoken=authtoken, password=password)


def _spawn_supervisor(
    options: StartOptions, secrets: Secrets, files: StateFiles, log: int, check_interval: float
) -> subprocess.Popen[bytes]:
    package_root = str(Path(__file__).resolve().parent.parent)
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
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
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=log,
        stderr=log,
        cwd="/",
        env=environment,
        start_new_session=True,
    )
    files.record_pid(process.pid)
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


def _stop_process(pid: int, files: StateFiles, timeout: float) -> None:
    """End the supervisor, then stop_ssh() for anything it left (after a SIGKILL, everything)."""
    _end_process(pid, timeout)
    stop_ssh(state_dir=files.state_dir)


def stop_supervisor(state_dir: str | os.PathLike[str], *, timeout: float = STOP_TIMEOUT) -> bool:
    """End the ``colab-ssh start`` supervisor of this state folder if one runs; True if one did.

    For stop_ssh(): otherwise the supervisor would bring back what stop_ssh() stopped. It never
    ends the calling process (the supervisor's own stop_ssh() on its way out comes here too).
    """
    files = StateFiles(Path(state_dir))
    pid = files.running_pid()
    if pid is None or pid == os.getpid():
        return False
    _end_process(pid, timeout)
    files.clear()
    return True


def _end_process(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; the start time makes sure it is still the same process."""
    started = _start_time(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _start_time(pid) == started and started is not None and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(_POLL)
    if _start_time(pid) == started and started is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for_supervisor(
    process: subprocess.Popen[bytes], files: StateFiles, relay: _LogRelay, timeout: float
) -> Connection:
    deadline = time.monotonic() + timeout
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
            _stop_process(process.pid, files, STOP_TIMEOUT)
            process.wait()
            raise CliError(f"sshd and the tunnel were not up within {timeout:.0f} s; see {files.log}.")
        time.sleep(_POLL)


def _error_from(record: dict[str, Any] | None, returncode: int | None, files: StateFiles) -> CliError:
    """The supervisor's error.json as our own error: the same first line, its traceback for --debug."""
    if record is None:
        return CliError(f"The supervisor exited (status {returncode}) before it was up; see {files.log}.")
    message = str(record.get("message", "")).strip() or str(record.get("type", "error"))
    first, _, rest = message.partition("\n")
    expected = bool(record.get("expected"))
    if not expected:
        first = f"unexpected {record.get('type')}: {first}"
    return CliError(first, more=rest, trace=str(record.get("traceback", "")), expected=expected)


def _already_running(files: StateFiles, pid: int, options: StartOptions, quiet: bool) -> int:
    state = files.read_json(files.connection)
    if state is None:
        raise CliError(f"{PROGRAM} is already starting (supervisor pid {pid}); try `{PROGRAM} status`.")
    if state.get("options") != json.loads(json.dumps(dataclasses.asdict(options))):
        raise CliError(
            f"{PROGRAM} already runs with other options; run `{PROGRAM} stop` first to change them."
        )
    if not quiet:
        print(f"Already running (since {_age(str(state.get('since', '')))}).\n", flush=True)
        print(render_details(connection_from_json(state["connection"])), flush=True)
    return EXIT_OK


def _launch(options: StartOptions, files: StateFiles, arguments: argparse.Namespace) -> int:
    secrets = read_secrets(arguments, options)
    files.clear()
    log = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(log, 0o600)
    try:
        process = _spawn_supervisor(options, secrets, files, log, arguments.check_interval)
    finally:
        os.close(log)
    relay = _LogRelay(files.log, None if arguments.quiet else sys.stdout, everything=arguments.debug)
    try:
        connection = _wait_for_supervisor(process, files, relay, arguments.timeout)
    except KeyboardInterrupt:
        print("Interrupted: stopping what had started ...", file=sys.stderr, flush=True)
        _stop_process(process.pid, files, STOP_TIMEOUT)
        process.wait()
        files.clear()
        return EXIT_INTERRUPTED
    finally:
        relay.close()
    with warnings.catch_warnings():  # it outlives us on purpose: no "subprocess still running" warning
        warnings.simplefilter("ignore", ResourceWarning)
        del process
    if not arguments.quiet:
        print(render_details(connection), flush=True)
        print(f"It keeps running after this command. `{PROGRAM} stop` ends it; `{PROGRAM} status` checks it.")
    return EXIT_OK


def command_start(arguments: argparse.Namespace) -> int:
    options = options_from(arguments)
    check_system()
    _check_platform(options)
    _check_supported(options)
    files = StateFiles(Path(arguments.state_dir))
    with files.locked():
        running = files.running_pid()
        if running is not None:
            return _already_running(files, running, options, arguments.quiet)
        if not arguments.foreground:
            return _launch(options, files, arguments)
        secrets = read_secrets(arguments, options)
        files.clear()
        files.record_pid(os.getpid())
    return serve(
        options,
        secrets,
        files,
        show_details=True,
        quiet=arguments.quiet,
        check_interval=arguments.check_interval,
    )


# --- stop and status ---------------------------------------------------------------------------


def _leftovers(state_dir: Path) -> bool:
    """Whether an sshd or agent of ours runs without a supervisor (e.g. started by start_ssh())."""
    paths = Paths(state_dir=state_dir)
    for pid_file in (paths.sshd_pid, paths.ngrok_pid):
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _start_time(pid) is not None:
            return True
    return False


def command_stop(arguments: argparse.Namespace) -> int:
    check_system()
    files = StateFiles(Path(arguments.state_dir))
    if not files.state_dir.is_dir():
        print("Nothing was running.")
        return EXIT_OK
    with files.locked():
        pid = files.running_pid()
        leftovers = _leftovers(files.state_dir)
        if pid is not None:
            _stop_process(pid, files, arguments.timeout)
        stop_ssh(state_dir=files.state_dir)
        files.clear()
    print("Stopped." if pid is not None or leftovers else "Nothing was running.")
    return EXIT_OK


def _age(since: str) -> str:
    try:
        seconds = (datetime.now(timezone.utc) - datetime.fromisoformat(since)).total_seconds()
    except ValueError:
        return since
    minutes = int(seconds // 60)
    ago = f"{int(seconds)} s" if minutes < 1 else f"{minutes} min" if minutes < 120 else f"{minutes // 60} h"
    return f"{since.replace('T', ' ').replace('+00:00', ' UTC')}, {ago} ago"


def command_status(arguments: argparse.Namespace) -> int:
    files = StateFiles(Path(arguments.state_dir))
    pid = files.running_pid()
    if pid is None:
        note = (
            f" An sshd or ngrok agent of start_ssh() runs in {files.state_dir}; `{PROGRAM} stop` ends it."
            if _leftovers(files.state_dir)
            else ""
        )
        print(f"{PROGRAM} is not running.{note}")
        return EXIT_FAILURE
    try:
        state = files.read_json(files.connection)
    except PermissionError:
        raise CliError(f"Cannot read {files.connection}: run as root.") from None
    if state is None:
        print(f"{PROGRAM} is starting (supervisor pid {pid}).")
        return EXIT_FAILURE
    connection = connection_from_json(state["connection"])
    answering = answers_banner(connection.local_port)
    headline = "up" if answering else f"down: sshd does not answer on port {connection.local_port}"
    print(f"{PROGRAM} is {headline} (since {_age(str(state.get('since', '')))}).")
    print(f"  address:  {connection.host}:{connection.port} (tunnel: {connection.tunnel})")
    print(f"  ssh:      {connection.ssh_command}")
    print(f"  restarts: {state.get('restarts', 0)}; supervisor pid {pid}; log {files.log}")
    if state.get("last_error"):
        print(f"  last error: {state['last_error']}")
    if arguments.details:
        print("\n" + render_details(connection), end="")
    return EXIT_OK if answering else EXIT_FAILURE


# --- the command line --------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 1 to 65535, not {port}")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return seconds


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state-dir",
        default=str(Paths().state_dir),
        metavar="DIR",
        help="where config, logs and pid files go (default: %(default)s)",
    )
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tunnel", choices=TUNNEL_NAMES, default="ngrok", help="ngrok, or none: this machine's own address"
    )
    parser.add_argument("--port", type=_port, default=22, help="the port sshd listens on (default: 22)")
    parser.add_argument("--region", choices=NGROK_REGIONS, help="ngrok region (default: the nearest)")
    parser.add_argument(
        "--user", default="root", help="the account to log in as; it must exist (default: root)"
    )
    parser.add_argument("--mount-drive", action="store_true", help="mount Google Drive first (Colab only)")
    parser.add_argument(
        "--public-key",
        action="append",
        default=[],
        metavar="KEY_OR_FILE",
        help="log in with this key (a key line or a .pub file; repeatable); turns password login off",
    )
    parser.add_argument(
        "--github-user", metavar="NAME", help="log in with the keys github.com/NAME.keys lists"
    )
    parser.add_argument("--host-keys-dir", metavar="DIR", help="keep the host keys here across runtimes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Make this Linux machine (a Colab or Kaggle runtime, a VM) an SSH host.",
        epilog="Exit status: 0 success, 1 failure, 2 bad command line.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    commands = parser.add_subparsers(dest="command", metavar="{start,stop,status}")

    start = commands.add_parser("start", help="start sshd and the tunnel; they keep running after it returns")
    _server_options(start)
    start.add_argument(
        "--authtoken-stdin", action="store_true", help=f"read the ngrok token from stdin (else ${ENV_NAME})"
    )
    start.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (after the token, if both)",
    )
    start.add_argument("--quiet", action="store_true", help="print nothing but errors")
    start.add_argument("--check-interval", type=_seconds, default=HEALTH_INTERVAL, help=argparse.SUPPRESS)
    start.add_argument("--foreground", action="store_true", help="stay in the foreground until Ctrl-C")
    start.add_argument(
        "--timeout",
        type=_seconds,
        default=START_TIMEOUT,
        metavar="SECONDS",
        help="give up after SECONDS (default: 300)",
    )
    _common(start)
    start.set_defaults(handler=command_start, command_parser=start)

    stop = commands.add_parser("stop", help="stop sshd and the tunnel")
    stop.add_argument(
        "--timeout",
        type=_seconds,
        default=STOP_TIMEOUT,
        metavar="SECONDS",
        help="SIGKILL after SECONDS (default: 30)",
    )
    _common(stop)
    stop.set_defaults(handler=command_stop)

    status = commands.add_parser("status", help="whether it is up, where, since when (exit 0 if up)")
    status.add_argument("--details", action="store_true", help="also print the full connection details")
    _common(status)
    status.set_defaults(handler=command_status)

    serve_parser = commands.add_parser("serve")  # internal: the supervisor `start` launches
    _server_options(serve_parser)
    serve_parser.add_argument("--check-interval", type=_seconds, default=HEALTH_INTERVAL)
    _common(serve_parser)
    serve_parser.set_defaults(handler=_supervise)
    return parser


def _validate(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> None:
    """What argparse cannot check alone; parser.error() prints the usage and exits with 2."""
    if arguments.command is None:
        parser.error("name a command: start, stop or status")
    if arguments.command == "start" and arguments.authtoken_stdin and arguments.tunnel != "ngrok":
        arguments.command_parser.error("--authtoken-stdin goes with --tunnel ngrok")


def _report(error: BaseException, debug: bool) -> None:
    """One line; with --debug also the rest of the message (apt's or sshd's output) and the traceback."""
    expected = isinstance(error, ColabSSHError) or (isinstance(error, CliError) and error.expected)
    first, _, more = str(error).strip().partition("\n")
    if isinstance(error, CliError):
        more = "\n".join(filter(None, [more, error.more]))
    if not isinstance(error, CliError | ColabSSHError):
        first = f"unexpected {type(error).__name__}: {first}"
    hint = " (run it again with --debug for details)" if (more or not expected) and not debug else ""
    print(f"{PROGRAM}: error: {first}{hint}", file=sys.stderr)
    if not debug:
        return
    if more:
        print(more.rstrip(), file=sys.stderr)
    if isinstance(error, CliError) and error.trace:
        print(error.trace.rstrip(), file=sys.stderr)  # the supervisor's, where the error happened
    else:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``colab-ssh`` script and ``python -m colab_ssh``."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    _validate(parser, arguments)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    try:
        return handler(arguments)
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        _report(error, arguments.debug)
        return EXIT_FAILURE
