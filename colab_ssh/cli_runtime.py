"""``colab-ssh start``, ``stop`` and ``status`` (and the internal ``serve``): the runtime's commands,
from a terminal, a notebook's ``!`` line, or a VM. cli.py dispatches to them; it imports this
module (and with it the runtime) only for these commands.

``start`` launches the background supervisor (supervisor.py says why there is one) and waits
until it is up; ``start --foreground`` serves in this process instead. ``stop`` ends the
supervisor and whatever start_ssh() left running; ``status`` reads what the supervisor recorded.

Exit codes: 0 success; 1 failure (one line on stderr, ``--debug`` adds the traceback);
2 a bad command line (argparse's usage message).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from . import colab
from .authtoken import ENV_NAME, TOKEN_PAGE, resolve_authtoken
from .connection import render_details
from .core import stop_ssh
from .errors import AuthtokenMissingError, ColabSSHError
from .exit_status import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, PROGRAM
from .options import Passing, StartOptions, add_flags
from .paths import Paths, canonical_folder
from .platform import Platform, detect_platform
from .processes import command_line, running_record, sshd_is_ours
from .secret_text import conceal
from .sshd import answers_banner
from .supervisor import HEALTH_INTERVAL, serve, supervise
from .supervisor_launch import SupervisorError, spawn_supervisor, stop_spawned, wait_for_supervisor
from .supervisor_state import STOP_TIMEOUT, Secrets, StateFiles, connection_from_json, stop_supervisor
from .system import check_system
from .tunnels.registry import find_kind, kinds, leftovers_running

__all__ = ["RUNTIME_COMMANDS", "CliError", "add_parsers", "report", "validate"]

RUNTIME_COMMANDS = ("start", "stop", "status")  # and "serve", the supervisor's own, not listed
START_TIMEOUT = 300.0  # a fresh runtime installs openssh-server and downloads the ngrok agent


class CliError(Exception):
    """A failure reported as one line (exit 1)."""


# --- the options, as start_ssh() takes them -------------------------------------------------


def _check_platform(options: StartOptions) -> None:
    """Colab-only options refused outside Colab with a message, before anything starts."""
    platform = detect_platform()
    if options["mount_drive"] and platform is not Platform.COLAB:
        raise CliError(
            f"--mount-drive needs Google Colab; this is {platform.value}. Mount your storage"
            " yourself and leave --mount-drive off."
        )
    if options["mount_drive"] and not colab.drive_mounted():
        # A command has no notebook front end to ask for Drive consent through: fail now, not
        # after the supervisor started.
        raise CliError(f"--mount-drive: Google Drive is not mounted at /content/drive; {colab.DRIVE_FIX}.")


def _read_line(stream: TextIO, prompt: str) -> str:
    if stream.isatty():
        return getpass.getpass(prompt)
    return stream.readline().rstrip("\r\n")


def read_secrets(arguments: argparse.Namespace, options: StartOptions) -> Secrets:
    """The token (stdin, $NGROK_AUTHTOKEN, or a hidden prompt on a terminal) and the password (stdin).

    Colab's secrets are readable only from a notebook cell, never from a command: in Colab's
    terminal they are skipped instead of failing in a confusing way.
    """
    # conceal(): a traceback printed with its locals shows '<hidden>' for them.
    authtoken = conceal(_read_line(sys.stdin, "ngrok authtoken: ") if arguments.authtoken_stdin else None)
    password = conceal(_read_line(sys.stdin, "password: ") if arguments.password_stdin else None)
    if find_kind(options["tunnel"]).needs != "authtoken":
        return Secrets(password=password)
    try:
        authtoken = conceal(
            resolve_authtoken(
                authtoken, os.environ, colab_secret=lambda _name: (None, "not readable from a command")
            )
        )
    except AuthtokenMissingError:
        raise CliError(
            f"No ngrok authtoken: set {ENV_NAME}, pipe it in with --authtoken-stdin, or run {PROGRAM}"
            f" in a terminal to be asked. Get one at {TOKEN_PAGE}; or use --tunnel none where the port"
            " is reachable."
        ) from None
    return Secrets(authtoken=authtoken, password=password)


# --- start ---------------------------------------------------------------------------------------


def _already_running(files: StateFiles, pid: int, options: StartOptions, quiet: bool) -> int:
    state = files.read_json(files.connection)
    if state is None:
        raise CliError(f"{PROGRAM} is already starting (supervisor pid {pid}); try `{PROGRAM} status`.")
    if state.get("options") != json.loads(json.dumps(dict(options.values))):
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
    process = spawn_supervisor(options, secrets, files, check_interval=arguments.check_interval)
    try:
        connection = wait_for_supervisor(
            process,
            files,
            arguments.timeout,
            out=None if arguments.quiet else sys.stdout,
            everything=arguments.debug,
        )
    except KeyboardInterrupt:
        print("Interrupted: stopping what had started ...", file=sys.stderr, flush=True)
        stop_spawned(process, files)
        files.clear()
        return EXIT_INTERRUPTED
    with warnings.catch_warnings():  # it outlives us on purpose: no "subprocess still running" warning
        warnings.simplefilter("ignore", ResourceWarning)
        del process
    if not arguments.quiet:
        print(render_details(connection), flush=True)
        print(f"It keeps running after this command. `{PROGRAM} stop` ends it; `{PROGRAM} status` checks it.")
    return EXIT_OK


def command_start(arguments: argparse.Namespace) -> int:
    options = StartOptions.from_arguments(arguments)
    check_system()
    _check_platform(options)
    files = StateFiles(Path(arguments.state_dir))
    with files.locked():
        running = files.running_pid()
        if running is not None:
            return _already_running(files, running, options, arguments.quiet)
        if not arguments.foreground:
            return _launch(options, files, arguments)
        secrets = read_secrets(arguments, options)
        files.clear()
        files.record_pid(os.getpid(), command_line(os.getpid()) or ())
    serve(
        options,
        secrets,
        files,
        show_details=True,
        quiet=arguments.quiet,
        check_interval=arguments.check_interval,
    )
    return EXIT_OK


def _command_serve(arguments: argparse.Namespace) -> int:
    """``serve``, the supervisor `start` launches: its errors go to error.json, which `start` reports."""
    served = supervise(
        StartOptions.from_arguments(arguments),
        StateFiles(Path(arguments.state_dir)),
        check_interval=arguments.check_interval,
    )
    return EXIT_OK if served else EXIT_FAILURE


# --- stop and status ---------------------------------------------------------------------------


def _leftovers(state_dir: Path) -> bool:
    """Whether an sshd or tunnel agent of ours runs without a supervisor (e.g. started by start_ssh())."""
    paths = Paths(state_dir=state_dir)
    return running_record(paths.sshd_pid, sshd_is_ours(paths.sshd_config)) is not None or leftovers_running(
        paths
    )


def command_stop(arguments: argparse.Namespace) -> int:
    check_system()
    files = StateFiles(Path(arguments.state_dir))
    if not files.state_dir.is_dir():
        print("Nothing was running.")
        return EXIT_OK
    with files.locked():
        leftovers = _leftovers(files.state_dir)
        stopped = stop_supervisor(files.state_dir, timeout=arguments.timeout)
        stop_ssh(state_dir=files.state_dir)  # what it left (after a SIGKILL, everything), or start_ssh()'s
        files.clear()
    print("Stopped." if stopped or leftovers else "Nothing was running.")
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
            f" An sshd or tunnel agent of start_ssh() runs in {files.state_dir}; `{PROGRAM} stop` ends it."
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


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register start, stop, status and serve on cli.py's parser."""
    start = commands.add_parser("start", help="start sshd and the tunnel; they keep running after it returns")
    add_flags(start, (Passing.ARGV, Passing.STDIN, Passing.CALLER))
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
    add_flags(serve_parser, (Passing.ARGV,))  # the secrets come on its stdin
    serve_parser.add_argument("--check-interval", type=_seconds, default=HEALTH_INTERVAL)
    _common(serve_parser)
    serve_parser.set_defaults(handler=_command_serve)


def validate(arguments: argparse.Namespace) -> None:
    """What argparse cannot check alone; parser.error() prints the usage and exits with 2."""
    if (
        arguments.command == "start"
        and arguments.authtoken_stdin
        and find_kind(arguments.tunnel).needs != "authtoken"
    ):
        with_token = " or ".join(kind.name for kind in kinds() if kind.needs == "authtoken")
        arguments.command_parser.error(f"--authtoken-stdin goes with --tunnel {with_token}")
    if getattr(arguments, "state_dir", None) is not None:
        # Resolved once, here: the supervisor runs in / and `stop` may be typed elsewhere, through
        # a link or with ~; every process must name the same folder.
        arguments.state_dir = str(canonical_folder(arguments.state_dir, "--state-dir", trusted=False))


def report(error: BaseException, debug: bool) -> None:
    """One line; with --debug also the rest of the message (apt's or sshd's output) and the traceback."""
    first, _, more = str(error).strip().partition("\n")
    if isinstance(error, SupervisorError):  # its first line says "unexpected" already where it applies
        expected = error.expected
        more = "\n".join(filter(None, [more, error.more]))
    else:
        expected = isinstance(error, CliError | ColabSSHError)
        if not expected:
            first = f"unexpected {type(error).__name__}: {first}"
    hint = " (run it again with --debug for details)" if (more or not expected) and not debug else ""
    print(f"{PROGRAM}: error: {first}{hint}", file=sys.stderr)
    if not debug:
        return
    if more:
        print(more.rstrip(), file=sys.stderr)
    if isinstance(error, SupervisorError) and error.trace:
        print(error.trace.rstrip(), file=sys.stderr)  # the supervisor's, where the error happened
    else:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
