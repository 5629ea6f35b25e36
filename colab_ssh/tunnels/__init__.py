"""Tunnels: how the SSH port becomes reachable from the user's laptop.

A tunnel is anything with this small interface; ``start_ssh(tunnel=...)`` takes such an object
or a name from :mod:`.registry` ("ngrok", "cloudflared", "none", or an installed plugin's). So
another service is one new module: passed as an object, or named through the entry-point group
``colab_ssh.tunnels`` in its distribution (README: "Writing a tunnel plugin"); a built-in one also
gets its entry in ``registry.BUILT_IN``.

Whatever a tunnel returns ends up in text the user runs on their laptop: the ``ssh`` command,
the ``~/.ssh/config`` block (one directive per line) and the ProxyCommand that ssh runs through
a shell. A newline in a host or port would add directives of the tunnel's choosing there, so
every endpoint goes through :func:`open_checked`, built-in tunnels and the caller's own alike.

start_ssh() calls open() while sshd is starting (sshd answers on the port within milliseconds;
a tunnel does not need it until the first client comes). A tunnel may also have ``prepare()``:
the slow work before open() that needs no port (the built-in ones download their agent there;
ngrok's also starts its agent, whose login to ngrok's cloud takes about a second, so that open()
only asks the running agent for the endpoint), which start_ssh() runs while openssh-server installs
and Drive's consent waits; see :func:`prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..connect_code import ConnectCodeError, check_host
from ..errors import TunnelError

__all__ = ["Endpoint", "Tunnel", "can_prepare", "check_endpoint", "open_checked", "prepare", "tag_endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """Where clients connect: the tunnel's public side."""

    host: str
    port: int
    # For tunnels that are not raw TCP: what the client's ssh runs to reach the host
    # (OpenSSH's ProxyCommand; %h is the host), and how to install that program.
    proxy_command: str | None = None
    client_hints: tuple[str, ...] = ()


@runtime_checkable
class Tunnel(Protocol):
    """Open for a local port, report the public endpoint, say whether alive, close."""

    name: str

    def open(self, local_port: int) -> Endpoint:
        """Start forwarding to ``local_port``; raise a ColabSSHError subclass on failure."""
        ...

    def alive(self) -> bool:
        """Whether the endpoint returned by open() still forwards."""
        ...

    def close(self) -> None:
        """Stop forwarding and end every process the tunnel started; harmless if not open."""
        ...


_MAX_TEXT = 1000  # a proxy command or hint longer than this is not something we print


def _is_host(host: str) -> bool:
    """The connection code's host check, with an IPv6 zone id allowed: the ssh command the runtime
    prints may carry one (shell-quoted); the config block writes it escaped (Connection.ssh_config)."""
    try:
        check_host(host, zone_id=True)
    except ConnectCodeError:
        return False
    return True


def _is_plain_line(text: str) -> bool:
    """One line of printable text: no newline, tab, escape or other control character."""
    return 0 < len(text) <= _MAX_TEXT and text.isprintable()


def check_endpoint(endpoint: object, tunnel_name: str) -> Endpoint:
    """The endpoint itself if every field is safe to print into ssh commands and configs.

    Raises TunnelError naming the tunnel and the field otherwise; the bad value is shown with
    repr() so that a newline in it is visible rather than acted on.
    """

    def refuse(problem: str) -> TunnelError:
        return TunnelError(
            f"The tunnel {tunnel_name!r} returned an unusable endpoint: {problem}. Nothing was"
            " printed or changed for it; fix the tunnel's open() (a host name or IP address, a port"
            " 1-65535, a one-line proxy command, plain-text hints)."
        )

    if not isinstance(endpoint, Endpoint):
        raise refuse(f"open() returned {type(endpoint).__name__}, not colab_ssh.tunnels.Endpoint")
    host, port = endpoint.host, endpoint.port
    if not isinstance(host, str) or not _is_host(host):
        raise refuse(f"the host {host!r} is not a host name or an IP address")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise refuse(f"the port {port!r} is not a whole number from 1 to 65535")
    command = endpoint.proxy_command
    if command is not None and not (isinstance(command, str) and _is_plain_line(command)):
        raise refuse(f"the proxy command {command!r} is not a single line of printable text")
    hints = endpoint.client_hints
    if not isinstance(hints, tuple):
        raise refuse(f"the client hints {hints!r} are not a tuple of strings")
    for hint in hints:
        if not (isinstance(hint, str) and _is_plain_line(hint)):
            raise refuse(f"the client hint {hint!r} is not a single line of printable text")
    return endpoint


def tag_endpoint(tunnel: Tunnel, metadata: str) -> None:
    """Before open(): a tunnel that can tag its endpoint gets a text naming this host.

    Such a tunnel has an ``endpoint_metadata`` attribute (ngrok's does: ngrok's API lists the
    text with the endpoint, which is how ``colab-ssh proxy --ngrok-api`` finds it). Others are
    left alone.
    """
    if hasattr(tunnel, "endpoint_metadata"):
        setattr(tunnel, "endpoint_metadata", metadata)  # noqa: B010 - an attribute the Protocol lacks


def open_checked(tunnel: Tunnel, local_port: int) -> Endpoint:
    """``tunnel.open()``, refused (and the tunnel closed again) if its endpoint is unsafe to print."""
    endpoint = tunnel.open(local_port)
    name = str(getattr(tunnel, "name", type(tunnel).__name__))
    try:
        return check_endpoint(endpoint, name)
    except TunnelError:
        tunnel.close()
        raise


def can_prepare(tunnel: Tunnel) -> bool:
    """Whether the tunnel has the optional ``prepare()``."""
    return callable(getattr(tunnel, "prepare", None))


def prepare(tunnel: Tunnel) -> None:
    """The tunnel's ``prepare()`` if it has one (optional: open() must work without it)."""
    if can_prepare(tunnel):
        tunnel.prepare()  # type: ignore[attr-defined]  # checked just above
