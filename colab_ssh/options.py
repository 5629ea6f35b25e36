"""start_ssh()'s options, each declared once: name, default, check, how it reaches the supervisor, CLI flag.

Everything that lists the options reads this table: check_request() runs the checks in this
order, the ``colab-ssh start`` and ``serve`` flags (and their help) are generated from it, and
StartOptions turns the values into the supervisor's command line and back into start_ssh()'s
keyword arguments. start_ssh() keeps its own explicit signature (for IDEs and help());
tests/unit/test_options.py proves the signature, this table, the CLI's flags and the supervisor's
arguments agree.

Adding an option: one Option below, a parameter of start_ssh() with the same default, and its
use (a Request field in request.py if the session needs it, and the code that acts on it).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .authtoken import ENV_NAME
from .paths import Paths
from .request import (
    Request,
    check_authtoken_argument,
    check_github_user,
    check_host_keys_dir,
    check_keys,
    check_login_user,
    check_monitor_interval,
    check_mount_drive,
    check_on_change,
    check_password,
    check_port,
    check_region,
    check_state_dir,
    check_tunnel,
)
from .tunnels.registry import BUILT_IN, DEFAULT_TUNNEL, kinds, tunnel_names

if TYPE_CHECKING:
    import argparse  # the command line's; start_ssh() never loads it

__all__ = [
    "ARGV_OPTIONS",
    "OPTIONS",
    "Flag",
    "Option",
    "Passing",
    "StartOptions",
    "add_flags",
    "check_request",
    "parse_port",
    "secret_names",
]

# A check gets the value and the values checked before it (in OPTIONS' order); it returns the
# value as the session uses it, or raises an InvalidArgumentError naming the problem and the fix.
Check = Callable[[Any, Mapping[str, Any]], Any]


class Passing(enum.Enum):
    """How an option reaches the supervisor that ``colab-ssh start`` launches."""

    ARGV = "argv"  # on its command line: never a secret
    STDIN = "stdin"  # a secret: through the pipe on its standard input, never argv (ps shows argv)
    CALLER = "caller"  # not passed on: each caller's own (the notebook's callback, the CLI's --quiet)


@dataclass(frozen=True)
class Flag:
    """The option on the command line (argparse's arguments, plus how a value is made cwd-independent)."""

    name: str
    help: str
    action: str | None = None  # "store_true", "append"; None: takes one value
    parse: Callable[[str], Any] | None = None
    choices: Callable[[], Sequence[str]] | None = None  # read when the parser is built
    metavar: str | None = None
    # The supervisor runs in /: a relative path given to `start` is made absolute first.
    absolute: Callable[[str], str] | None = None


@dataclass(frozen=True)
class Option:
    name: str  # start_ssh()'s keyword
    default: Any
    passing: Passing
    check: Check | None = None  # None: taken as given
    flag: Flag | None = None  # None: not a `colab-ssh start` flag


def parse_port(text: str) -> int:
    import argparse  # here: only the command line parses text

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be from 1 to 65535, not {port}")
    return port


def _absolute_if_file(value: str) -> str:
    """A .pub path made absolute; key text unchanged."""
    path = Path(value).expanduser()
    return str(path.absolute()) if path.is_file() else value


def _absolute(value: str) -> str:
    return str(Path(value).expanduser().absolute())


# --- what the flags and checks need beside request.py's checks -------------------------------------


def _alone(check: Callable[[Any], Any]) -> Check:
    return lambda value, _checked: check(value)


def _check_region(region: object, checked: Mapping[str, Any]) -> str | None:
    return None if region is None else check_region(region, checked["tunnel"])


def _regions() -> list[str]:
    """Every region some tunnel kind knows, in its own order."""
    return list(dict.fromkeys(region for kind in kinds() for region in kind.regions))


# --tunnel's help: the built-in kinds (argparse lists installed plugins among the choices).
_TUNNEL_HELP = "; ".join(f"{kind.name}: {kind.summary}" for kind in BUILT_IN) + "; or a plugin's name"
_REGION_HELP = f"{' / '.join(kind.name for kind in BUILT_IN if kind.regions)} region (default: the nearest)"


# --- the table -----------------------------------------------------------------------------------

# In start_ssh()'s order; the checks run in this order too.
OPTIONS: tuple[Option, ...] = (
    Option(
        "authtoken",
        None,
        Passing.STDIN,
        _alone(check_authtoken_argument),
        Flag("--authtoken-stdin", f"read the ngrok token from stdin (else ${ENV_NAME})", "store_true"),
    ),
    Option(
        "password",
        None,
        Passing.STDIN,
        _alone(check_password),
        Flag("--password-stdin", "read the password from stdin (after the token, if both)", "store_true"),
    ),
    Option(
        "tunnel",
        DEFAULT_TUNNEL,
        Passing.ARGV,
        _alone(check_tunnel),
        Flag("--tunnel", _TUNNEL_HELP, choices=tunnel_names),
    ),
    Option(
        "port",
        22,
        Passing.ARGV,
        _alone(check_port),
        Flag("--port", "the port sshd listens on (default: 22)", parse=parse_port),
    ),
    Option(
        "region",
        None,
        Passing.ARGV,
        _check_region,
        Flag("--region", _REGION_HELP, choices=_regions),
    ),
    Option(
        "mount_drive",
        False,
        Passing.ARGV,
        _alone(check_mount_drive),
        Flag("--mount-drive", "mount Google Drive first (Colab only)", "store_true"),
    ),
    # The notebook's quiet hides the details; the CLI's --quiet prints nothing but errors (the
    # supervisor never shows details, so it is not passed on).
    Option("quiet", False, Passing.CALLER, None, Flag("--quiet", "print nothing but errors", "store_true")),
    Option(
        "user",
        "root",
        Passing.ARGV,
        _alone(lambda user: check_login_user(user).pw_name),
        Flag("--user", "the account to log in as; it must exist (default: root)"),
    ),
    # Every command has --state-dir (cli._common): stop and status need it too.
    Option("state_dir", None, Passing.CALLER, _alone(check_state_dir)),
    Option(
        "public_key",
        None,
        Passing.ARGV,
        _alone(check_keys),
        Flag(
            "--public-key",
            "log in with this key (a key line or a .pub file; repeatable); turns password login off",
            "append",
            metavar="KEY_OR_FILE",
            absolute=_absolute_if_file,
        ),
    ),
    Option(
        "github_user",
        None,
        Passing.ARGV,
        check_github_user,
        Flag("--github-user", "log in with the keys github.com/NAME.keys lists", metavar="NAME"),
    ),
    Option(
        "host_keys_dir",
        None,
        Passing.ARGV,
        _alone(check_host_keys_dir),
        Flag("--host-keys-dir", "keep the host keys here across runtimes", metavar="DIR", absolute=_absolute),
    ),
    Option("on_change", None, Passing.CALLER, _alone(check_on_change)),
    Option("monitor_interval", 5.0, Passing.CALLER, _alone(check_monitor_interval)),
)

_BY_NAME = {option.name: option for option in OPTIONS}


def check_request(**values: object) -> Request:
    """Every option checked in OPTIONS' order (left out: its default); the first failure is raised."""
    unknown = sorted(set(values) - set(_BY_NAME))
    if unknown:
        raise TypeError(f"check_request() got unknown options: {', '.join(unknown)}")
    checked: dict[str, Any] = {}
    for option in OPTIONS:
        value = values.get(option.name, option.default)
        checked[option.name] = value if option.check is None else option.check(value, checked)
    return Request(
        authtoken=checked["authtoken"],
        password=checked["password"],
        tunnel=checked["tunnel"],
        port=checked["port"],
        region=checked["region"],
        mount_drive=checked["mount_drive"],
        user=checked["user"],
        paths=Paths(state_dir=checked["state_dir"]),
        public_keys=checked["public_key"],
        github_user=checked["github_user"],
        host_keys_dir=checked["host_keys_dir"],
    )


# --- the supervisor's options --------------------------------------------------------------------

ARGV_OPTIONS = tuple(option for option in OPTIONS if option.passing is Passing.ARGV)


def _argv_defaults() -> dict[str, Any]:
    return {option.name: option.default for option in ARGV_OPTIONS}


@dataclass(frozen=True)
class StartOptions:
    """start_ssh()'s options that travel on the supervisor's command line (none is a secret), by name.

    Values are as start_ssh() takes them and JSON can hold (a list, not a tuple): connection.json
    records them, and a second ``start`` compares its own with them.
    """

    values: Mapping[str, Any] = field(default_factory=_argv_defaults)

    def __post_init__(self) -> None:
        if set(self.values) != set(_argv_defaults()):
            raise TypeError(
                f"StartOptions needs exactly {sorted(_argv_defaults())}, not {sorted(self.values)}"
            )

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @classmethod
    def from_arguments(cls, arguments: argparse.Namespace) -> StartOptions:
        """From the flags add_flags() declared; paths made absolute (the supervisor runs in /)."""
        values: dict[str, Any] = {}
        for option in ARGV_OPTIONS:
            value = getattr(arguments, option.name)
            absolute = None if option.flag is None else option.flag.absolute
            if absolute is not None and value is not None:
                value = [absolute(item) for item in value] if isinstance(value, list) else absolute(value)
            values[option.name] = value
        return cls(values)

    def api_arguments(self) -> dict[str, Any]:
        """Keyword arguments for start_ssh()."""
        return dict(self.values)

    def argv(self) -> list[str]:
        """The same options for the supervisor's command line; add_flags() parses them back."""
        words: list[str] = []
        for option in ARGV_OPTIONS:
            value, flag = self.values[option.name], option.flag
            assert flag is not None  # noqa: S101 - the supervisor gets its options as flags
            if value is None or value is False:
                continue  # the default: a store_true flag left off, an optional value not given
            if value is True:
                words.append(flag.name)
            elif isinstance(value, list):
                for item in value:
                    words += [flag.name, str(item)]
            else:
                words += [flag.name, str(value)]
        return words


def add_flags(parser: argparse.ArgumentParser, passing: Sequence[Passing]) -> None:
    """The flags of the options passed this way, their defaults start_ssh()'s (False for a store_true)."""
    for option in OPTIONS:
        flag = option.flag
        if flag is None or option.passing not in passing:
            continue
        settings: dict[str, Any] = {"help": flag.help}
        if flag.action is not None:
            settings["action"] = flag.action
        if flag.parse is not None:
            settings["type"] = flag.parse
        if flag.choices is not None:
            settings["choices"] = flag.choices()
        if flag.metavar is not None:
            settings["metavar"] = flag.metavar
        default = False if flag.action == "store_true" else option.default
        dest = f"{option.name}_stdin" if option.passing is Passing.STDIN else option.name
        parser.add_argument(flag.name, dest=dest, default=default, **settings)


def secret_names() -> tuple[str, ...]:
    return tuple(option.name for option in OPTIONS if option.passing is Passing.STDIN)
