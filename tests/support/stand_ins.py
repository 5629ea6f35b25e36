"""Stand-ins for what needs the internet or the Colab UI (google.colab, ngrok's cloud, github.com),
and where the stand-in programs live. Plain helpers: fixtures that use them are in the conftest files."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .http_server import serving, url_of

if TYPE_CHECKING:
    import pytest

TESTS = Path(__file__).resolve().parent.parent
STAND_INS = TESTS / "stand_ins"
STAND_IN_NGROK = STAND_INS / "ngrok"
# Plays cloudflared on both sides and Cloudflare's edge between them: the runtime's agent and the
# laptop's `cloudflared access` meet through its state folder (which hostname leads where).
STAND_IN_CLOUDFLARED = STAND_INS / "cloudflared"


def use_cloudflare_edge(monkeypatch: pytest.MonkeyPatch, state: Path) -> Path:
    """Both sides through the cloudflared stand-in, with ``state`` as the edge's: the runtime's agent
    (COLAB_SSH_CLOUDFLARED) and a client run in this environment (an account of its own is given
    CLOUDFLARED_STAND_IN_STATE too)."""
    monkeypatch.setenv("COLAB_SSH_CLOUDFLARED", str(STAND_IN_CLOUDFLARED))
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_STATE", str(state))
    monkeypatch.delenv("CLOUDFLARED_STAND_IN_FAIL", raising=False)
    return state


# Stands in for apt-get where the real one would need the internet or a broken package list: it
# records each call and answers like apt does (what it answers is read from files and variables
# the test sets). An install takes APT_SECONDS; once it succeeds, the package's program is in
# APT_BIN: a link to APT_LINK if set (a real program the package would bring), else "fakeprog".
APT_STAND_IN = """#!/bin/sh
echo "$* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >> "$APT_CALLS"
case "$1" in
  update) echo "Reading package lists... Done"; exit 0 ;;
  install)
    sleep "${APT_SECONDS:-0}"
    if [ -f "$APT_LISTS_FRESH" ] || [ "$APT_MODE" = ok ]; then
      if [ -n "$APT_LINK" ]; then
        ln -sf "$APT_LINK" "$APT_BIN/"
      else
        printf '#!/bin/sh\\necho fake\\n' > "$APT_BIN/fakeprog"; chmod +x "$APT_BIN/fakeprog"
      fi
      echo "Setting up fakepkg (1.0) ..."; exit 0
    fi
    if [ "$APT_MODE" = broken ]; then
      echo "E: Sub-process /usr/bin/dpkg returned an error code (1)" >&2; exit 100
    fi
    echo "E: Unable to locate package fakepkg" >&2; exit 100 ;;
esac
"""


@dataclass
class ColabStub:
    """Stands in for google.colab: the Colab UI is not here."""

    secrets: dict[str, str] = field(default_factory=dict)
    secret_error: str | None = None  # name of the exception userdata.get raises for a missing secret
    mounts: list[str] = field(default_factory=list)
    # Whether this test process plays a notebook kernel (the default) or a terminal / supervisor.
    in_kernel: bool = True
    # How long the user takes to answer Google's consent pop-up in drive.mount(), and whether
    # they refuse it (then drive.mount() raises what the real one does: consent_refusal()).
    consent_seconds: float = 0.0
    consent_refused: bool = False


class MessageError(Exception):
    """google.colab._message.MessageError: what drive.mount() raises when the front end answers its
    consent request with an error, as when the user refuses or closes the pop-up
    (google/colab/_message.py read_reply_from_input; googlecolab/colabtools#5531 shows the
    traceback: "MessageError: Error: credential propagation was unsuccessful")."""


def consent_refusal() -> MessageError:
    return MessageError("Error: credential propagation was unsuccessful")


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
def serve_paths(
    routes: dict[str, bytes], requests: list[str] | None = None, *, delay: float = 0.0
) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering GET for ``routes`` (404 otherwise); yields its URL.

    ``routes`` is read at request time, so a test may add paths while the server runs. ``delay``:
    seconds before each answer (a slow link, so that a download takes a while).
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if requests is not None:
                requests.append(self.path)
            time.sleep(delay)
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

    with serving(Handler) as server:
        yield url_of(server)


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

    with serving(Handler, host) as server:
        yield url_of(server), asked


def ngrok_agent_archive() -> bytes:
    """The stand-in agent packed as ngrok's download is: a .tgz holding one file, ``ngrok``
    (pyngrok's installer extracts it next to PYNGROK_NGROK_PATH, installer.py)."""
    data = STAND_IN_NGROK.read_bytes()
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as archive:
        entry = tarfile.TarInfo("ngrok")
        entry.size, entry.mode = len(data), 0o755
        archive.addfile(entry, io.BytesIO(data))
    return packed.getvalue()
