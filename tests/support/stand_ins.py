"""Stand-ins for what needs the internet or the Colab UI (google.colab, ngrok's cloud, github.com),
and where the stand-in programs live. Plain helpers: fixtures that use them are in the conftest files."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
STAND_IN_NGROK = TESTS / "stand_ins" / "ngrok"


@dataclass
class ColabStub:
    """Stands in for google.colab: the Colab UI is not here."""

    secrets: dict[str, str] = field(default_factory=dict)
    secret_error: str | None = None  # name of the exception userdata.get raises for a missing secret
    mounts: list[str] = field(default_factory=list)
    # Whether this test process plays a notebook kernel (the default) or a terminal / supervisor.
    in_kernel: bool = True


def refuse_outside_a_kernel(stub: ColabStub) -> None:
    """What google.colab does when there is no kernel to reach the notebook's front end through:
    drive.mount() and userdata.get() first send a request to the front end
    (googlecolab/colabtools google/colab/drive.py:133-138), and _message.send_request() takes the
    kernel from ipykernel's IPKernelApp, which outside a kernel has none (_message.py:116, 137)."""
    if not stub.in_kernel:
        raise AttributeError("'NoneType' object has no attribute 'shell'")


@dataclass
class NgrokCloud:
    """The stand-in agent's view of ngrok's cloud: which tokens are accounts, with or without a card."""

    accounts_file: Path
    state: Path
    accounts: dict[str, dict[str, object]] = field(default_factory=dict)

    def add_account(
        self,
        token: str,
        *,
        card: bool = True,
        max_sessions: int = 3,
        verified: bool = True,
        revoked: bool = False,
    ) -> str:
        self.accounts[token] = {
            "card": card,
            "max_sessions": max_sessions,
            "verified": verified,
            "revoked": revoked,
        }
        self.accounts_file.write_text(json.dumps(self.accounts))
        return token


@dataclass
class GitHubStandIn:
    """Serves https://github.com/<user>.keys from a dict, on 127.0.0.1: GitHub is not reachable here."""

    keys: dict[str, str]
    url: str


@contextlib.contextmanager
def serve_paths(routes: dict[str, bytes], requests: list[str] | None = None) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering GET for ``routes`` (404 otherwise); yields its URL.

    ``routes`` is read at request time, so a test may add paths while the server runs.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if requests is not None:
                requests.append(self.path)
            if self.path not in routes:
                self.send_error(404, "Not Found")
                return
            body = routes[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _PublishedKeys(dict[str, str]):
    """user -> the text of https://github.com/<user>.keys, mirrored into the server's routes."""

    def __init__(self, routes: dict[str, bytes]) -> None:
        super().__init__()
        self._routes = routes

    def __setitem__(self, user: str, keys: str) -> None:
        super().__setitem__(user, keys)
        self._routes[f"/{user}.keys"] = keys.encode()

    def update(self, *args: object, **kwargs: str) -> None:  # type: ignore[override]
        for user, keys in dict(*args, **kwargs).items():  # type: ignore[call-overload]
            self[user] = keys


@contextlib.contextmanager
def http_server(
    answer: Callable[[http.server.BaseHTTPRequestHandler], None], host: str = "127.0.0.1"
) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server; ``answer(handler)`` writes each response to a GET (a redirect, a file
    that trickles or ends early, ...). Yields (base URL, paths asked)."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            answer(self)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{host}:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()
