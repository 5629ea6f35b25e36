"""The ``colab-ssh`` command: the runtime's start/stop/status and the laptop's connect/disconnect/proxy.

One program for both sides of the connection. On the runtime (a Colab or Kaggle runtime, a VM),
``start`` launches the background supervisor and waits until it is up, ``stop`` ends it,
``status`` reads what it recorded (cli_runtime.py). On the laptop, ``connect`` writes the ssh
config from the notebook's code, ``disconnect`` removes it, and ``proxy`` is what that config
runs to find the runtime's current address (colab_ssh.laptop).

This module imports the runtime only for the runtime's commands: a laptop (Windows and macOS
included) runs connect, disconnect and proxy with the standard library alone, and on a system
without the runtime's modules (Windows: no pwd, no fcntl) the help lists the laptop's commands.

Exit codes: 0 success; 1 failure (one line on stderr, ``--debug`` adds the traceback);
2 a bad command line (argparse's usage message).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable, Sequence
from types import ModuleType

from . import __version__
from .exit_status import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROGRAM

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_USAGE", "LAPTOP_COMMANDS", "build_parser", "main"]

# The laptop's commands: each module has add_parser(subparsers) and run(arguments) -> int.
LAPTOP_MODULES = {
    "colab_ssh.laptop.commands": ("connect", "disconnect"),
    "colab_ssh.laptop.proxy": ("proxy",),
}
LAPTOP_COMMANDS = tuple(name for names in LAPTOP_MODULES.values() for name in names)
# What a system without the runtime lacks (Windows); any other ImportError is a bug, and shows.
_RUNTIME_ONLY = {"pwd", "fcntl", "grp", "termios", "resource"}

_Commands = argparse._SubParsersAction  # argparse exposes no public name for it


def _laptop_modules() -> list[ModuleType]:
    found = []
    for name in LAPTOP_MODULES:
        try:
            found.append(importlib.import_module(name))
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
    return found


def _runtime_module() -> ModuleType | None:
    try:
        return importlib.import_module("colab_ssh.cli_runtime")
    except ModuleNotFoundError as error:
        if error.name not in _RUNTIME_ONLY:
            raise
        return None


def build_parser(*, runtime: bool = True) -> argparse.ArgumentParser:
    """The whole command line; with ``runtime=False`` (or where the runtime cannot run) the laptop's
    commands only, so that they never import the runtime."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Make this Linux machine (a Colab or Kaggle runtime, a VM) an SSH host: start,"
        " stop, status. On your laptop: connect (writes Host colab into ~/.ssh/config from the"
        " notebook's code), disconnect.",
        epilog="Exit status: 0 success, 1 failure, 2 bad command line.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    commands: _Commands[argparse.ArgumentParser] = parser.add_subparsers(dest="command")
    shown: list[str] = []
    cli_runtime = _runtime_module() if runtime else None
    if cli_runtime is not None:
        cli_runtime.add_parsers(commands)
        shown += cli_runtime.RUNTIME_COMMANDS
    for module in _laptop_modules():
        before = set(commands.choices)
        module.add_parser(commands)
        for name in [name for name in commands.choices if name not in before]:
            commands.choices[name].set_defaults(handler=module.run, laptop=True)
            shown.append(name)
    commands.metavar = "{" + ",".join(shown) + "}"
    return parser


def _command_word(argv: Sequence[str]) -> str | None:
    return next((word for word in argv if not word.startswith("-")), None)


def _command_names(parser: argparse.ArgumentParser) -> str:
    """ "start, stop, status, connect or disconnect": the commands the parser lists."""
    action = next(action for action in parser._actions if isinstance(action, _Commands))
    *names, last = str(action.metavar).strip("{}").split(",")
    return f"{', '.join(names)} or {last}" if names else last


def _report(error: BaseException, debug: bool) -> None:
    first = str(error).strip().partition("\n")[0]
    hint = "" if debug else " (run it again with --debug for details)"
    print(f"{PROGRAM}: error: unexpected {type(error).__name__}: {first}{hint}", file=sys.stderr)
    if debug:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``colab-ssh`` script and ``python -m colab_ssh``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    laptop = _command_word(argv) in LAPTOP_COMMANDS
    parser = build_parser(runtime=not laptop)
    arguments = parser.parse_args(argv)
    if arguments.command is None:
        parser.error(f"name a command: {_command_names(parser)}")
    cli_runtime = None if getattr(arguments, "laptop", False) else _runtime_module()
    if cli_runtime is not None:
        cli_runtime.validate(arguments)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    try:
        return handler(arguments)
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if cli_runtime is not None:
            cli_runtime.report(error, arguments.debug)
        else:
            _report(error, arguments.debug)
        return EXIT_FAILURE
