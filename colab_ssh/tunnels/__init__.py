"""Tunnels: how the SSH port becomes reachable from the user's laptop.

A tunnel is anything with this small interface; ``start_ssh(tunnel=...)`` takes a name
("ngrok", "none") or such an object, so another service is one new module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Endpoint", "Tunnel"]


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
