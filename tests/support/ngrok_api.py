"""A stand-in for ngrok's cloud API (https://api.ngrok.com): ``GET /endpoints``, for ``colab-ssh proxy``.

It answers on 127.0.0.1 (its URL goes in COLAB_SSH_NGROK_API_URL) the way ngrok's documentation
describes the real one:

- authentication: ``Authorization: Bearer <API key>`` and ``Ngrok-Version: 2`` on every request
  (https://ngrok.com/docs/api/, "Base URL and Authentication", "Versioning"). Without the header:
  401 ERR_NGROK_200; not Basic or Bearer: 401 ERR_NGROK_201; a key it does not know: 401
  ERR_NGROK_203, whose message quotes the key back ("Your authentication: TOKEN",
  https://ngrok.com/docs/errors/err_ngrok_203/). A missing version: ERR_NGROK_218 (the page gives
  no status; 400 is our assumption);
- errors: ``{"error_code": "ERR_NGROK_...", "status_code": ..., "msg": ..., "details": {...}}``,
  the fields ngrok's own API clients read (github.com/ngrok/ngrok-api-python, ngrok/http_client.py);
- the list: ``{"endpoints": [...], "uri": ..., "next_page_uri": ...}``, each endpoint with id,
  region, created_at, public_url, proto, hostport, type, metadata, tunnel, uri
  (https://ngrok.com/docs/api-reference/endpoints/list); pages of ``limit`` entries (100 at most),
  older ones through ``before_id``, ``next_page_uri`` null on the last page.

The endpoints are the live ones of the stand-in agents (tests/stand_ins/ngrok) of the account the
key belongs to, read from their session files under STAND_IN_NGROK_STATE (an agent killed with
SIGKILL leaves its file behind; its endpoints went with it), plus any a test adds to ``extra``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import os
import secrets
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .http_server import serving, url_of

API_KEYS = "https://dashboard.ngrok.com/api-keys"
MESSAGES = {  # https://ngrok.com/docs/errors/err_ngrok_200/, .../err_ngrok_201/, .../203/, .../218/
    "ERR_NGROK_200": "The ngrok API requires that you set the Authorization header for authentication."
    f" Your API keys and instructions are available on your dashboard: {API_KEYS}",
    "ERR_NGROK_201": "The ngrok API requires that you use Basic or Bearer authentication via the"
    " Authorization header. It could not parse the header in this request. Authorization Header: {value}."
    f" API keys and instructions are available on your dashboard: {API_KEYS}",
    "ERR_NGROK_203": "The API authentication you specified is properly formed, but it is invalid. Your"
    f" authentication: {{value}}. API keys and instructions are available on your dashboard: {API_KEYS}",
    "ERR_NGROK_218": "Your request has not specified an API version. Include the version you wish to use"
    " in the Ngrok-Version header. Supported versions: 2.",
}
MAX_LIMIT = 100


def _alive(pid: int, started: str | None) -> bool:
    """The agent that wrote a session file still runs (the same process, not a reused pid)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[0] != "Z" and (started is None or fields[19] == started)


@dataclass
class NgrokApi:
    """The API's view of the stand-in cloud: API keys (each for an authtoken's account) and endpoints."""

    state: Path  # STAND_IN_NGROK_STATE
    url: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # API key -> the account's authtoken
    extra: list[dict[str, Any]] = field(default_factory=list)  # endpoints a test adds, as listed
    page_size: int = MAX_LIMIT  # a test makes pages smaller to see next_page_uri followed
    requests: list[dict[str, str]] = field(default_factory=list)  # path and headers of each request
    failures: list[str] = field(default_factory=list)  # the stand-in's own errors (a test asserts none)

    def add_key(self, authtoken: str) -> str:
        key = f"2{secrets.token_hex(12)}_{secrets.token_hex(16)}"
        self.keys[key] = authtoken
        return key

    def agent_endpoints(self, authtoken: str) -> list[dict[str, Any]]:
        digest = hashlib.sha256(authtoken.encode()).hexdigest()[:32]
        listed = []
        for path in sorted(self.state.glob(f"{digest}-*.session")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if _alive(int(record.get("pid", 0)), record.get("started")):
                listed += [self._as_listed(endpoint) for endpoint in record.get("endpoints", [])]
        return listed

    def _as_listed(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        hostport = endpoint["url"].removeprefix("tcp://")
        tunnel = "tn_" + endpoint["id"].removeprefix("ep_")
        return {
            "id": endpoint["id"],
            "region": "us",
            "created_at": endpoint["created_at"],
            "updated_at": endpoint["created_at"],
            "public_url": endpoint["url"],
            "proto": "tcp",
            "hostport": hostport,
            "type": "ephemeral",
            "metadata": endpoint["metadata"] or "",
            "tunnel": {"id": tunnel, "uri": f"{self.url}/tunnels/{tunnel}"},
            "uri": f"{self.url}/endpoints/{endpoint['id']}",
        }

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append({"path": path, **headers})
        if headers.get("ngrok-version") != "2":
            return _error(400, "ERR_NGROK_218")
        authorization = headers.get("authorization")
        if authorization is None:
            return _error(401, "ERR_NGROK_200")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key:
            return _error(401, "ERR_NGROK_201", authorization)
        if key not in self.keys:
            return _error(401, "ERR_NGROK_203", key)
        parts = urlsplit(path)
        if parts.path.rstrip("/") != "/endpoints":
            return 404, {"status_code": 404, "msg": "Not found", "details": {"operation_id": _operation()}}
        query = parse_qs(parts.query)
        limit = min(int((query.get("limit") or [str(MAX_LIMIT)])[0]), MAX_LIMIT, self.page_size)
        listed = self.agent_endpoints(self.keys[key]) + self.extra
        listed.sort(key=lambda endpoint: endpoint["id"], reverse=True)
        before = (query.get("before_id") or [None])[0]
        if before is not None:
            listed = [endpoint for endpoint in listed if endpoint["id"] < before]
        page, rest = listed[:limit], listed[limit:]
        following = f"{self.url}/endpoints?before_id={page[-1]['id']}&limit={limit}" if rest else None
        return 200, {"endpoints": page, "uri": f"{self.url}/endpoints", "next_page_uri": following}


def _operation() -> str:
    return "op_" + secrets.token_hex(12)


def _error(status: int, code: str, value: str = "") -> tuple[int, dict[str, Any]]:
    message = MESSAGES[code].replace("{value}", value)
    return status, {
        "error_code": code,
        "status_code": status,
        "msg": message,
        "details": {"operation_id": _operation()},
    }


@contextlib.contextmanager
def serve_ngrok_api(api: NgrokApi) -> Iterator[NgrokApi]:
    """Serve ``api`` on 127.0.0.1 (a real HTTP server on a thread) until the block ends."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                status, body = api.answer(self.path, {k.lower(): v for k, v in self.headers.items()})
            except Exception:  # a broken stand-in is a broken test: the fixture fails it, saying why
                api.failures.append(traceback.format_exc())
                raise
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    with serving(Handler) as server:
        api.url = url_of(server)
        yield api
