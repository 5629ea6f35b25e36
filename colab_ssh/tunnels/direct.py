"""tunnel="none": no tunnel, clients reach this machine's own address (VMs, LANs, tests)."""

from __future__ import annotations

from ..system import local_address
from . import Endpoint

__all__ = ["DirectTunnel"]


class DirectTunnel:
    name = "none"

    def __init__(self, host: str | None = None) -> None:
        self._host = host
        self._port: int | None = None

    def open(self, local_port: int) -> Endpoint:
        self._port = local_port
        return Endpoint(self._host or local_address(), local_port)

    def alive(self) -> bool:
        # Nothing between the client and sshd that could die.
        return self._port is not None

    def close(self) -> None:
        self._port = None
