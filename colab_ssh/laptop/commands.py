"""``colab-ssh connect CODE`` and ``colab-ssh disconnect``: the laptop's ssh config and known_hosts.

connect decodes the code (every value checked), works out the block (a plain HostName/Port, or a
ProxyCommand that looks the address up each time: ``--from PATH`` or ngrok's API; a tunnel
client such as cloudflared, found or downloaded), then writes the managed block into
``~/.ssh/config`` and the host keys into ``~/.ssh/known_hosts`` together. Nothing is written
until every check passed, and a failed write puts back what was written before it.

Exit codes: 0 done; 1 bad input or a file problem (one line on stderr, the files untouched);
2 a bad command line (argparse).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..connect_code import ConnectCodeError, ConnectDetails, check_port, decode
from . import known_hosts
from .files import BACKUP_SUFFIX, Change, FileError, ensure_ssh_folder, read_text, write_changes
from .ssh_config import Block, ConfigError, aliases_in_use, managed_alias, remove_block, upsert_block

__all__ = ["DEFAULT_NAME", "NGROK_API_KEY", "add_parser", "client_platform", "run"]

DEFAULT_NAME = "colab"
NGROK_API_KEY = "NGROK_API_KEY"
PROGRAM = "colab-ssh"
EXIT_OK, EXIT_FAILURE = 0, 1


class CommandError(Exception):
    """Bad input for connect/disconnect: one line naming the problem and the fix (exit 1)."""


def client_platform(name: str = sys.platform) -> str:
    """ "windows", "darwin" or "linux" (any other Unix): which OpenSSH the block is written for."""
    if name.startswith(("win32", "cygwin", "msys")):
        return "windows"
    return "darwin" if name == "darwin" else "linux"


@dataclass(frozen=True)
class Laptop:
    """What connect and disconnect read from the machine; tests pass their own."""

    home: Path
    platform: str
    python: str  # the interpreter this distribution is installed for (ProxyCommand runs it)
    environ: Mapping[str, str]
    out: TextIO
    err: TextIO

    @classmethod
    def this(cls) -> Laptop:
        return cls(Path.home(), client_platform(), sys.executable, os.environ, sys.stdout, sys.stderr)

    @property
    def ssh_folder(self) -> Path:
        return self.home / ".ssh"

    @property
    def config(self) -> Path:
        return self.ssh_folder / "config"

    @property
    def known_hosts(self) -> Path:
        return self.ssh_folder / "known_hosts"


# --- the command line ----------------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        return check_port(text)
    except ConnectCodeError:
        raise argparse.ArgumentTypeError(f"not a port from 1 to 65535: {text!r}") from None


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``connect`` and ``disconnect``."""
    connect = subparsers.add_parser(
        "connect",
        help="on your laptop: write Host colab into ~/.ssh/config from the notebook's code",
        description="Write (or update) a managed 'Host NAME' block in ~/.ssh/config and pin the"
        " runtime's host key in ~/.ssh/known_hosts, from the code the notebook shows. Then `ssh NAME`,"
        " or VS Code: Remote-SSH: Connect to Host -> NAME.",
    )
    connect.add_argument("code", metavar="CODE", help="the code after `colab-ssh connect` in the notebook")
    connect.add_argument("--name", default=DEFAULT_NAME, help="the Host name to write (default: %(default)s)")
    source = connect.add_mutually_exclusive_group()
    source.add_argument(
        "--from",
        dest="source_folder",
        metavar="PATH",
        help="look the address up at each connection in this folder (where Google Drive for desktop"
        " syncs the runtime's host_keys_dir)",
    )
    source.add_argument(
        "--ngrok-api",
        action="store_true",
        help=f"look the address up at each connection through ngrok's API (${NGROK_API_KEY}); the"
        f" default for an ngrok tunnel when ${NGROK_API_KEY} is set",
    )
    connect.add_argument(
        "--forward",
        type=_port,
        action="append",
        default=[],
        metavar="PORT",
        help="also forward localhost:PORT to the runtime's PORT (repeatable; e.g. 6006 for TensorBoard)",
    )
    connect.add_argument("--open", action="store_true", help="run `ssh NAME` once written")
    connect.add_argument(
        "--yes", action="store_true", help="answer yes to downloading the tunnel's client program"
    )

    disconnect = subparsers.add_parser(
        "disconnect",
        help="on your laptop: remove the block and pinned keys `connect` wrote",
        description="Remove the managed 'Host NAME' block from ~/.ssh/config and its pinned host"
        " keys from ~/.ssh/known_hosts; nothing else changes.",
    )
    disconnect.add_argument("--name", default=DEFAULT_NAME, help="the Host name (default: %(default)s)")


def run(arguments: argparse.Namespace) -> int:
    """``connect`` or ``disconnect``; errors are one line on stderr and exit 1."""
    return run_on(arguments, Laptop.this())


def run_on(arguments: argparse.Namespace, laptop: Laptop) -> int:
    try:
        if arguments.command == "connect":
            return connect(arguments, laptop)
        return disconnect(arguments.name, laptop)
    except (CommandError, ConnectCodeError, ConfigError, FileError) as error:
        print(f"{PROGRAM}: error: {error}", file=laptop.err)
        return EXIT_FAILURE


# --- connect -------------------------------------------------------------------------------------


def _client_program(program: str, assume_yes: bool, laptop: Laptop) -> str:
    """The path of the tunnel's client program: on PATH, in the per-user cache, or downloaded."""
    from . import client_program  # only a tunnel with a client program needs it (and its download code)

    ask = client_program.terminal_ask(assume_yes, stderr=laptop.err)
    try:
        return client_program.resolve(program, ask=ask, environ=laptop.environ, home=laptop.home)
    except client_program.ClientProgramError as error:
        raise CommandError(str(error)) from None


def _source_folder(text: str) -> Path:
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise CommandError(
            f"--from {text}: no such folder; give the folder where Google Drive for desktop syncs the"
            " runtime's host_keys_dir"
        )
    return folder.resolve()


def lookup_arguments(arguments: argparse.Namespace, details: ConnectDetails, laptop: Laptop) -> list[str]:
    """How the proxy looks the address up: ``--from FOLDER``, ``--ngrok-api``, or not at all ([])."""
    if arguments.source_folder is not None:
        return ["--from", str(_source_folder(arguments.source_folder))]
    if arguments.ngrok_api or (details.tunnel == "ngrok" and laptop.environ.get(NGROK_API_KEY)):
        return ["--ngrok-api"]
    return []


def proxy_argv(
    name: str, details: ConnectDetails, lookup: list[str], python: str, client: str | None
) -> tuple[str, ...] | None:
    """ProxyCommand's words: the lookup proxy, the tunnel's client alone, or none (plain address)."""
    if lookup:
        command = [python, "-m", "colab_ssh", "proxy", name, "--alias", details.host_key_alias, *lookup]
        command += ["--client", client] if client is not None else []
        return (*command, "%h", "%p")
    if details.client_command is not None and client is not None:
        return (client, *details.client_command.split(" ")[1:])
    return None


def connect(arguments: argparse.Namespace, laptop: Laptop) -> int:
    details = decode(arguments.code)
    block = Block(
        arguments.name,
        details,
        laptop.platform,
        str(laptop.known_hosts),
        forwards=tuple(dict.fromkeys(arguments.forward)),
    )
    old_config = read_text(laptop.config)
    old_known = read_text(laptop.known_hosts)
    # Every check that can refuse runs before the client program is looked for (or downloaded).
    upsert_block(old_config or "", block, laptop.config)
    lookup = lookup_arguments(arguments, details, laptop)
    client = None
    if details.client_command is not None:
        client = _client_program(details.client_command.split(" ")[0], arguments.yes, laptop)
    block = dataclasses.replace(block, proxy=proxy_argv(block.name, details, lookup, laptop.python, client))
    new_config = upsert_block(old_config or "", block, laptop.config)
    new_known = known_hosts.replace_alias(old_known or "", details.host_key_alias, details.host_keys)
    ensure_ssh_folder(laptop.ssh_folder)
    write_changes(
        [
            Change(laptop.known_hosts, old_known, new_known),
            Change(laptop.config, old_config, new_config),
        ]
    )
    _report_connect(block, laptop, backup=old_config is not None and old_config != new_config)
    if arguments.open:
        laptop.out.flush()
        return subprocess.call(["ssh", block.name])
    return EXIT_OK


def _report_connect(block: Block, laptop: Laptop, *, backup: bool) -> None:
    name, details = block.name, block.details
    lines = [f"Wrote 'Host {name}' in {laptop.config}"]
    if backup:
        lines[0] += f" (the previous file is {laptop.config}{BACKUP_SUFFIX})"
    lines.append(f"Pinned the runtime's host key in {laptop.known_hosts} as {details.host_key_alias}.")
    if block.proxy is not None and "proxy" in block.proxy:
        lines.append(
            f"`ssh {name}` looks up the runtime's current address each time it connects: no new paste"
            " while the runtime keeps its host keys (host_keys_dir=)."
        )
        if "--ngrok-api" in block.proxy and not laptop.environ.get(NGROK_API_KEY):
            lines.append(
                f"Set {NGROK_API_KEY} (an API key from https://dashboard.ngrok.com/api-keys) where ssh"
                " and VS Code run: the lookup reads it when ssh connects. Without it, ssh uses the"
                " address above."
            )
    else:
        lines.append(
            f"The address is {details.host}:{details.port}; a new runtime: run its connect line again."
        )
    lines += [
        "",
        "Next:",
        f"  ssh {name}",
        f"  VS Code: Remote-SSH: Connect to Host... -> {name}",
    ]
    print("\n".join(lines), file=laptop.out)


# --- disconnect ----------------------------------------------------------------------------------


def disconnect(name: str, laptop: Laptop) -> int:
    old_config = read_text(laptop.config) or ""
    new_config = remove_block(old_config, name, laptop.config)
    if new_config == old_config:
        print(f"No 'Host {name}' block of colab-ssh in {laptop.config}: nothing to remove.", file=laptop.out)
        return EXIT_OK
    alias = managed_alias(old_config, name, laptop.config)
    changes = [Change(laptop.config, old_config, new_config)]
    # Another block may pin the same runtime (connect --name twice): its keys stay.
    if alias is not None and alias not in aliases_in_use(new_config, laptop.config).values():
        old_known = read_text(laptop.known_hosts)
        if old_known is not None:
            changes.insert(
                0, Change(laptop.known_hosts, old_known, known_hosts.remove_alias(old_known, alias))
            )
    write_changes(changes)
    print(f"Removed 'Host {name}' from {laptop.config} and its pinned host keys ({alias}).", file=laptop.out)
    return EXIT_OK
