"""DelayRelay: a colab_ssh tunnel object that puts a slow link between the client and sshd.

``start_ssh(tunnel=DelayRelay(delay_s=0.05))`` prints commands that point at the relay, so the
benchmark runs exactly the printed ``ssh`` and ``sshfs`` commands and ``~/.ssh/config`` block
over a link with a real latency, as a user behind ngrok would. The relaying itself happens in
``delay_server.py``, in its own process.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from colab_ssh import Endpoint, TunnelError

from .support import read_line

__all__ = ["DelayRelay", "EchoServer", "measure_rtt"]

SERVER = Path(__file__).with_name("delay_server.py")
READY_TIMEOUT = 10.0


class DelayRelay:
    """Relays 127.0.0.1:<some port> to sshd's port, ``delay_s`` late in each direction."""

    name = "relay"

    def __init__(self, delay_s: float = 0.05, host: str = "127.0.0.1") -> None:
        self.delay_s = delay_s
        self.host = host
        self._process: subprocess.Popen[str] | None = None
        self.port: int | None = None

    def open(self, local_port: int) -> Endpoint:
        self.close()
        process = subprocess.Popen(
            [
                sys.executable,
                str(SERVER),
                "--upstream-port",
                str(local_port),
                "--listen-host",
                self.host,
                "--delay-ms",
                repr(self.delay_s * 1000),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        line = read_line(process, READY_TIMEOUT).strip()
        if not line.startswith("READY "):
            self.close()
            raise TunnelError(f"the delay relay did not start (it said {line!r})")
        self.port = int(line.split()[1])
        return Endpoint(self.host, self.port)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def close(self) -> None:
        process, self._process, self.port = self._process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


class EchoServer:
    """Sends back what it receives: the far end of the round-trip measurement."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _address = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(connection,), daemon=True).start()

    @staticmethod
    def _echo(connection: socket.socket) -> None:
        with connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := connection.recv(4096):
                connection.sendall(data)

    def close(self) -> None:
        self._listener.close()


def measure_rtt(delay_s: float, pings: int = 10) -> float:
    """Median seconds of a one-byte TCP ping-pong through a DelayRelay like the one sshd sits behind."""
    echo = EchoServer()
    relay = DelayRelay(delay_s=delay_s)
    try:
        endpoint = relay.open(echo.port)
        samples = []
        with socket.create_connection((endpoint.host, endpoint.port), timeout=10) as connection:
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for _ in range(pings):
                started = time.perf_counter()
                connection.sendall(b"x")
                if connection.recv(1) != b"x":
                    raise RuntimeError("the echo through the relay returned something else")
                samples.append(time.perf_counter() - started)
        return statistics.median(samples)
    finally:
        relay.close()
        echo.close()
