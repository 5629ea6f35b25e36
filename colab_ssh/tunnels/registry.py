"""Every tunnel kind that ``start_ssh(tunnel="name")`` and ``colab-ssh start --tunnel name`` know.

A kind says once what the rest of the package needs to know about it: its name, how it is
built from the start options, which secret it needs, its files in the state folder, which
processes of an earlier kernel it may have left running (and how to know them), whether its
endpoint is raw TCP, and which errors it raises. request.py checks names and regions against
it, core.py builds tunnels and stops leftovers from it, the CLI takes its choices, help and
secrets from it.

Built-in kinds are listed in :data:`BUILT_IN`. Any other comes from an installed distribution
through the entry-point group ``colab_ssh.tunnels`` (``name = module:factory``): the factory is
called with no arguments and returns a :class:`~colab_ssh.tunnels.Tunnel`. A plugin cannot take
a built-in name (it is ignored, with a warning), since that would change what an existing
notebook or script starts without anyone asking.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import (
    AuthtokenMissingError,
    CloudflaredDownloadError,
    CloudflaredIntegrityError,
    CloudflaredStartError,
    ColabSSHError,
    InvalidArgumentError,
    NgrokAgentVersionError,
    NgrokAuthtokenError,
    NgrokDownloadError,
    NgrokSessionLimitError,
    NgrokTcpNeedsCardError,
    TunnelError,
)
from ..paths import Paths
from ..processes import cloudflared_is_ours, ngrok_agent_is_ours, running_record, stop_recorded
from ..progress import Progress
from ..system import remove_file
from . import Tunnel
from .direct import DirectTunnel

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "BUILT_IN",
    "DEFAULT_TUNNEL",
    "ENTRY_POINT_GROUP",
    "TunnelKind",
    "TunnelSettings",
    "find_kind",
    "kinds",
    "leftovers_running",
    "stop_leftovers",
    "tunnel_names",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "colab_ssh.tunnels"
DEFAULT_TUNNEL = "ngrok"

# Is-this-our-process test for a recorded pid (see processes.py): checked before any signal.
IsOurs = Callable[[Sequence[str]], bool]


@dataclass(frozen=True)
class TunnelSettings:
    """The start options a kind may build its tunnel from."""

    paths: Paths
    progress: Progress
    authtoken: str | None = None  # the authtoken= argument, if given (a SecretText)
    region: str | None = None


def _no_files(_paths: Paths) -> tuple[Path, ...]:
    return ()


def _no_processes(_paths: Paths) -> tuple[tuple[Path, IsOurs], ...]:
    return ()


@dataclass(frozen=True)
class TunnelKind:
    """One tunnel kind, as the rest of the package sees it."""

    name: str
    summary: str  # a few words for --tunnel's help
    build: Callable[[TunnelSettings], Tunnel]
    # The secret it needs, by start_ssh()'s and the CLI's name for it ("authtoken"), or None.
    needs: str | None = None
    # Raw TCP: clients connect to host:port with plain ssh. False: they need a ProxyCommand
    # (the endpoint names it). None: a plugin's endpoint says, once opened.
    raw_tcp: bool | None = True
    # Clients reach sshd itself, so sshd listens on every interface rather than on loopback only.
    direct: bool = False
    regions: tuple[str, ...] = ()  # what region= may be; () means the kind has no regions
    # Its files in the state folder (config, logs, pid files), and those of them to remove when an
    # earlier kernel's leftovers are stopped (a secret, a pid file the agent wrote itself).
    files: Callable[[Paths], tuple[Path, ...]] = _no_files
    stale_files: Callable[[Paths], tuple[Path, ...]] = _no_files
    # The processes it records (pid file, and how to recognise the recorded argv as ours).
    processes: Callable[[Paths], tuple[tuple[Path, IsOurs], ...]] = _no_processes
    errors: tuple[type[ColabSSHError], ...] = ()  # besides TunnelError itself
    origin: str = "built in"  # for plugins: the distribution and entry point


# --- the built-in kinds ---------------------------------------------------------------------------


def _build_ngrok(settings: TunnelSettings) -> Tunnel:
    from ..authtoken import resolve_authtoken
    from .ngrok import NgrokTunnel  # here: pyngrok (and yaml) load only when ngrok is used

    token = resolve_authtoken(settings.authtoken, os.environ)
    return NgrokTunnel(token, region=settings.region, paths=settings.paths, progress=settings.progress)


def _build_cloudflared(settings: TunnelSettings) -> Tunnel:
    from .cloudflared import CloudflaredTunnel  # here: its download code loads only when it is used

    return CloudflaredTunnel(settings.paths, settings.progress)


def _ngrok_files(paths: Paths) -> tuple[Path, ...]:
    return (paths.ngrok_config, paths.ngrok_log, paths.ngrok_launcher, paths.ngrok_pid)


def _cloudflared_files(paths: Paths) -> tuple[Path, ...]:
    return (
        paths.cloudflared_config,
        paths.cloudflared_log,
        paths.cloudflared_pid,
        paths.cloudflared_agent_pid,
    )


BUILT_IN: tuple[TunnelKind, ...] = (
    TunnelKind(
        name="ngrok",
        summary="ngrok's TCP endpoint (needs an ngrok authtoken)",
        build=_build_ngrok,
        needs="authtoken",
        regions=("us", "eu", "ap", "au", "sa", "jp", "in"),
        files=_ngrok_files,
        # ngrok.yml holds the token: a dead owner could not remove it.
        stale_files=lambda paths: (paths.ngrok_config,),
        processes=lambda paths: ((paths.ngrok_pid, ngrok_agent_is_ours(paths.ngrok_config)),),
        errors=(
            AuthtokenMissingError,
            NgrokAuthtokenError,
            NgrokAgentVersionError,
            NgrokSessionLimitError,
            NgrokTcpNeedsCardError,
            NgrokDownloadError,
        ),
    ),
    TunnelKind(
        name="cloudflared",
        summary="a Cloudflare quick tunnel (clients need cloudflared)",
        build=_build_cloudflared,
        raw_tcp=False,
        files=_cloudflared_files,
        # cloudflared writes its own --pidfile; we never read it, so it only goes.
        stale_files=lambda paths: (paths.cloudflared_agent_pid,),
        processes=lambda paths: ((paths.cloudflared_pid, cloudflared_is_ours(paths.cloudflared_agent_pid)),),
        errors=(
            CloudflaredStartError,
            CloudflaredDownloadError,
            CloudflaredIntegrityError,
        ),
    ),
    TunnelKind(
        name="none",
        summary="no tunnel: this machine's own address",
        build=lambda _settings: DirectTunnel(),
        direct=True,
    ),
)
_BUILT_IN_NAMES = frozenset(kind.name for kind in BUILT_IN)


# --- plugins ----------------------------------------------------------------------------------------

# A plugin's name ends up on the supervisor's command line, in argparse's choices and in printed
# text: a short word, never an option ("-x") or anything with spaces or control characters.
_PLUGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _describe(entry: EntryPoint) -> str:
    dist = entry.dist
    source = f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"{entry.name} = {entry.value} ({source})"


def _plugin_entries() -> dict[str, EntryPoint]:
    """The usable entry points of the group, by name; the others are logged and left out."""
    from importlib.metadata import entry_points  # here: reading installed metadata costs ~10 ms

    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in _BUILT_IN_NAMES:
            logger.warning(
                "Ignored the tunnel plugin %s: %r is a built-in tunnel, which plugins cannot replace;"
                " give the plugin another name.",
                _describe(entry),
                entry.name,
            )
        elif not _PLUGIN_NAME.fullmatch(entry.name):
            logger.warning(
                "Ignored the tunnel plugin %s: a tunnel name is letters, digits and ._- (64 at most),"
                " starting with a letter or digit.",
                _describe(entry),
            )
        elif entry.name in found and found[entry.name].value != entry.value:
            logger.warning(
                "Ignored the tunnel plugin %s: %s already uses that name.",
                _describe(entry),
                _describe(found[entry.name]),
            )
        else:
            found.setdefault(entry.name, entry)  # the same entry seen twice on sys.path is one
    return found


def _plugin_builder(entry: EntryPoint) -> Callable[[TunnelSettings], Tunnel]:
    def build(_settings: TunnelSettings) -> Tunnel:
        where = _describe(entry)
        try:
            factory = entry.load()
            tunnel = factory()
        except ColabSSHError:
            raise
        except Exception as error:
            raise TunnelError(
                f"The tunnel plugin {where} failed to start: {type(error).__name__}: {error}."
                " Fix or reinstall that distribution, or choose another tunnel."
            ) from error
        if not isinstance(tunnel, Tunnel):
            raise TunnelError(
                f"The tunnel plugin {where} returned {type(tunnel).__name__}, not a tunnel (an object"
                " with name, open(local_port), alive() and close()). Fix the plugin's factory."
            )
        return tunnel

    return build


def _plugin_kind(entry: EntryPoint) -> TunnelKind:
    return TunnelKind(
        name=entry.name,
        summary=f"plugin from {entry.dist.name if entry.dist is not None else entry.value}",
        build=_plugin_builder(entry),
        raw_tcp=None,
        origin=_describe(entry),
    )


# --- lookups -------------------------------------------------------------------------------------


def kinds() -> tuple[TunnelKind, ...]:
    """The built-in kinds, then the installed plugins (read anew: a pip install counts at once)."""
    return BUILT_IN + tuple(_plugin_kind(entry) for entry in _plugin_entries().values())


def tunnel_names() -> tuple[str, ...]:
    return tuple(kind.name for kind in kinds())


def find_kind(name: str) -> TunnelKind:
    """The kind called ``name``; InvalidArgumentError listing the known names otherwise."""
    for kind in BUILT_IN:
        if kind.name == name:
            return kind
    entry = _plugin_entries().get(name)
    if entry is not None:
        return _plugin_kind(entry)
    raise InvalidArgumentError(
        f"Unknown tunnel {name!r}; choose one of {', '.join(map(repr, tunnel_names()))}, install"
        f" a plugin that provides it (entry-point group {ENTRY_POINT_GROUP!r}), or pass an object"
        " with open(port), alive() and close()."
    )


def stop_leftovers(paths: Paths) -> None:
    """Stop what any built-in kind recorded in the state folder, and remove its stale files.

    Only a recorded process that is still the same one and that its kind recognises as ours
    is signalled (processes.stop_recorded). Plugins record nothing here: their close() is
    their only clean-up.
    """
    for kind in BUILT_IN:
        for pid_file, ours in kind.processes(paths):
            stop_recorded(pid_file, ours)
        for stale in kind.stale_files(paths):
            remove_file(stale)


def leftovers_running(paths: Paths) -> bool:
    """Whether a process some built-in kind recorded in the state folder still runs."""
    return any(
        running_record(pid_file, ours) is not None
        for kind in BUILT_IN
        for pid_file, ours in kind.processes(paths)
    )
