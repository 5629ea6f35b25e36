"""``colab-ssh proxy``: ssh's ProxyCommand for a runtime whose address changes (standard library only).

The managed ``Host`` block (``colab-ssh connect``) runs::

    <python> -m colab_ssh proxy NAME --alias ALIAS (--from PATH | --ngrok-api) [--client PROGRAM] %h %p

It looks up where the runtime is now (:mod:`.lookup`), falls back to ``%h %p`` (the block's
HostName and Port: the last address ``connect`` wrote) with a one-line note when the lookup
fails, then joins ssh's stdin and stdout to that address: a TCP relay on two threads (Windows
has no select() on pipes), or, for a tunnel that needs a client program, that program with the
address filled in, given ssh's stdin and stdout. Whatever a source says, ssh still checks the
host key pinned under ALIAS, so a stale or hostile address fails that check instead of logging in.

Errors: one line on stderr (ssh shows it), exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

from ..connect_code import ConnectCodeError, check_host, check_port, check_token
from .lookup import Found, LookupFailed, from_folder, from_ngrok_api

__all__ = ["add_parser", "client_argv", "run"]

EXIT_OK, EXIT_FAILURE = 0, 1
CONNECT_TIMEOUT = 15.0  # seconds to reach the tunnel's public address
CHUNK = 64 * 1024


class ProxyError(Exception):
    """A failure reported as one line on stderr (exit 1)."""


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "proxy",
        help="(for ssh's ProxyCommand) find the runtime's current address, then relay to it",
        description=(
            "Looks up where the runtime NAME is now (the address file in a synced folder, or ngrok's API"
            " with NGROK_API_KEY from the environment), falls back to HOST PORT, and relays stdin and"
            " stdout to it. `colab-ssh connect` writes this into the ssh config; you do not run it yourself."
        ),
    )
    parser.add_argument("name", metavar="NAME", help="the Host name of the managed block (for messages)")
    parser.add_argument(
        "--alias", required=True, help="the HostKeyAlias the runtime's host key is pinned under"
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from",
        dest="folder",
        metavar="PATH",
        type=Path,
        help="the synced host_keys_dir folder holding colab-ssh-address.json (or that file)",
    )
    source.add_argument(
        "--ngrok-api", action="store_true", help="find the endpoint through ngrok's API (NGROK_API_KEY)"
    )
    parser.add_argument("--client", metavar="PROGRAM", help="the tunnel's client program to run, by path")
    parser.add_argument("host", metavar="HOST", help="the last known host (ssh's %%h)")
    parser.add_argument("port", metavar="PORT", help="the last known port (ssh's %%p)")
    parser.set_defaults(handler=run)


def client_argv(template: str, host: str, port: int, program: str | None = None) -> list[str]:
    """The tunnel's client command as an argv list: %h and %p filled in, the program replaced.

    Split like a POSIX shell would split it, but never run by one: the template passed
    connect_code's checks (plain words and %h/%p), and the values were checked too.
    """
    argv = [part.replace("%h", host).replace("%p", str(port)) for part in shlex.split(template)]
    if program is not None:
        argv[0] = program
    return argv


def _look_up(arguments: argparse.Namespace, alias: str) -> Found:
    if arguments.ngrok_api:
        return from_ngrok_api(alias)
    return from_folder(arguments.folder, alias)


def _target(arguments: argparse.Namespace) -> Found:
    """Where to go: the source's answer, or the last known address with a note on stderr."""
    try:
        alias = check_token(arguments.alias, "host key alias")
        check_token(arguments.name, "name")
        last = Found(check_host(arguments.host), check_port(arguments.port), None, "the ssh config")
    except ConnectCodeError as error:
        raise ProxyError(f"{error} (in the ProxyCommand); run `colab-ssh connect` again") from None
    try:
        return _look_up(arguments, alias)
    except LookupFailed as error:
        why = str(error)
    if arguments.client is not None:
        raise ProxyError(
            f"{why}. This tunnel's client command comes from that lookup, so there is nothing to fall back"
            " to: fix the lookup, or run `colab-ssh connect` with the runtime's current code"
        )
    print(f"colab-ssh proxy: {why}; trying the last known address {last.host}:{last.port}", file=sys.stderr)
    return last


def _binary(*fds: int) -> None:
    """Raw bytes on Windows' standard streams (their C runtime translates line ends by default)."""
    if sys.platform == "win32":
        import msvcrt

        for fd in fds:
            msvcrt.setmode(fd, os.O_BINARY)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(connection: socket.socket, stdin: int = 0, stdout: int = 1) -> None:
    """Copy stdin to the socket and the socket to stdout until either side closes."""
    _binary(stdin, stdout)
    finished = threading.Event()

    def outbound() -> None:
        try:
            while data := os.read(stdin, CHUNK):
                connection.sendall(data)
        except OSError:
            pass
        finally:
            finished.set()

    def inbound() -> None:
        try:
            while data := connection.recv(CHUNK):
                _write_all(stdout, data)
        except OSError:
            pass
        finally:
            finished.set()

    for pump in (outbound, inbound):
        # Daemons: a read of ssh's stdin that never returns must not keep the process alive.
        threading.Thread(target=pump, daemon=True).start()
    finished.wait()
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()


def _run_client(argv: list[str]) -> int:
    program = shutil.which(argv[0])
    if program is None:
        raise ProxyError(
            f"the tunnel's client {argv[0]!r} was not found: run `colab-ssh connect` again (it finds or"
            " downloads it), or put it on PATH"
        )
    if sys.platform != "win32":
        # ssh's stdin and stdout become the client's own, nothing of ours in between. An argv
        # list from connect_code's checked template, never a shell.
        os.execv(program, argv)  # noqa: S606
    return subprocess.run([program, *argv[1:]], check=False).returncode


def _connect(found: Found) -> socket.socket:
    try:
        connection = socket.create_connection((found.host, found.port), timeout=CONNECT_TIMEOUT)
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise ProxyError(
            f"could not connect to {found.host}:{found.port} (from {found.source}): {reason}."
            " Is the runtime up?"
        ) from None
    connection.settimeout(None)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def run(arguments: argparse.Namespace) -> int:
    try:
        found = _target(arguments)
        if found.client_command is not None:
            return _run_client(client_argv(found.client_command, found.host, found.port, arguments.client))
        relay(_connect(found))
    except ProxyError as error:
        print(f"colab-ssh proxy: {error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK
