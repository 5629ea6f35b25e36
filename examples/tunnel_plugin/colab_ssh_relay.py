"""A colab_ssh tunnel plugin: ``start_ssh(tunnel="relay")`` / ``colab-ssh start --tunnel relay``.

Clients connect to another port of this machine (``RELAY_PORT``, else one the system picks) and
each connection is relayed to sshd on the loopback interface. It stands for any service that
forwards a public address to a local port: open() starts the forwarding and returns where
clients connect, alive() says whether it still forwards, close() stops it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

from colab_ssh.tunnels import Endpoint


class RelayTunnel:
    """The entry point's factory: colab_ssh calls it with no arguments."""

    name = "relay"

    def __init__(self) -> None:
        self._listener: socket.socket | None = None

    def open(self, local_port: int) -> Endpoint:
        listener = socket.create_server(("127.0.0.1", int(os.environ.get("RELAY_PORT", "0"))))
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener, local_port), daemon=True).start()
        return Endpoint(host="127.0.0.1", port=listener.getsockname()[1])

    def alive(self) -> bool:
        return self._listener is not None

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() below
            listener.close()

    def _accept(self, listener: socket.socket, local_port: int) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(("127.0.0.1", local_port))
            except OSError:
                client.close()  # sshd is down (being brought back): this client tries again
                continue
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
