"""The one way tests run a local HTTP server (stand-ins for github.com, ngrok's CDN and API, pages
for the browser): on a thread, on 127.0.0.1 or another given address, stopped cleanly.

Why not plain ``serve_forever`` on a blocking socket: a listening socket whose pending connection
is gone by the time ``accept()`` runs (reset by the client, or its descriptor number closed and
reused elsewhere in the process) blocks ``accept()`` forever, and ``shutdown()`` then waits for a
loop that never comes round again: the whole run hangs in a fixture's teardown. Here the listening
socket has a timeout, so ``accept()`` gives up after ACCEPT_TIMEOUT and the loop checks for
shutdown; the teardown gives the thread a bounded time and fails the test, saying why, if it is
still there. A listening socket whose descriptor no longer is that socket at the end (someone closed
our descriptor number) fails the test too: that is a bug worth seeing, not a hang.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

ACCEPT_TIMEOUT = 1.0  # seconds accept() may wait before the loop looks for a shutdown again
STOP_TIMEOUT = 10.0  # seconds the teardown waits for the serving thread


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping or trickling does not hold up the teardown

    def server_activate(self) -> None:
        super().server_activate()
        self.socket.settimeout(ACCEPT_TIMEOUT)

    def get_request(self) -> tuple[Any, Any]:
        connection, address = super().get_request()
        connection.settimeout(None)  # the answer itself blocks as usual; handlers set their own
        return connection, address


def _identity(descriptor: int) -> tuple[int, int] | None:
    try:
        status = os.fstat(descriptor)
    except OSError:  # closed behind our back
        return None
    return status.st_dev, status.st_ino


@contextlib.contextmanager
def serving(
    handler: Callable[..., http.server.BaseHTTPRequestHandler], host: str = "127.0.0.1"
) -> Iterator[http.server.ThreadingHTTPServer]:
    """``handler`` served on ``host`` at a free port on a thread; yields the server (its port is
    ``server.server_address[1]``). Stops it on the way out, within STOP_TIMEOUT."""
    server = _Server((host, 0), handler)
    descriptor = server.socket.fileno()
    listening = _identity(descriptor)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        still_ours = _identity(descriptor) == listening
        stopper = threading.Thread(target=server.shutdown, daemon=True)
        stopper.start()
        stopper.join(STOP_TIMEOUT)
        thread.join(STOP_TIMEOUT)
        server.server_close()
        assert still_ours, (
            f"descriptor {descriptor} of the test server on {host} was closed by"
            " someone else and reused: a double close in the code under test"
        )
        assert not thread.is_alive(), f"the test server on {host} did not stop in {STOP_TIMEOUT} s"


def url_of(server: http.server.ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host!s}:{port}"
