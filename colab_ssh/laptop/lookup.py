"""Where is the runtime now? The two lookup sources ``colab-ssh proxy`` reads (standard library only).

- :func:`from_folder`: the address file the runtime writes next to its host keys
  (:mod:`colab_ssh.published`), read where Google Drive for desktop syncs that folder;
- :func:`from_ngrok_api`: ngrok's API lists the account's endpoints (``GET /endpoints``,
  https://ngrok.com/docs/api-reference/endpoints/list), and the runtime tagged its own with
  metadata naming the host key alias. The API key comes from ``NGROK_API_KEY`` in the
  environment, never from argv or a file, and is sent only to the API's own host.

Each returns a :class:`Found` or raises :class:`LookupFailed` with one line saying why. Every
value is checked (:mod:`colab_ssh.connect_code`) and the alias must be the one the laptop pinned.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..connect_code import ConnectCodeError, check_host, check_port
from ..published import ADDRESS_FILE, MAX_ADDRESS_BYTES, alias_in_metadata, parse_address

__all__ = [
    "API_KEY_VARIABLE",
    "API_URL_VARIABLE",
    "DEFAULT_API_URL",
    "Found",
    "LookupFailed",
    "api_error",
    "endpoints_page",
    "from_folder",
    "from_ngrok_api",
]

API_KEY_VARIABLE = "NGROK_API_KEY"
API_URL_VARIABLE = "COLAB_SSH_NGROK_API_URL"  # tests point it at a stand-in
DEFAULT_API_URL = "https://api.ngrok.com"
API_KEYS_PAGE = "https://dashboard.ngrok.com/api-keys"
API_TIMEOUT = 10.0  # seconds per request
PAGE_SIZE = 100  # the API's largest page
MAX_PAGES = 50  # 5000 endpoints; a next_page_uri that never ends is not followed for ever
ATTEMPTS = 2  # per request, when the connection drops before an answer


class LookupFailed(Exception):
    """The source gave no usable address; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class Found:
    """Where the runtime is now, as a source reported it (checked)."""

    host: str
    port: int
    client_command: str | None = None
    source: str = ""  # for notes: "the address file ... (updated ...)", "ngrok's API"


# --- the address file ------------------------------------------------------------------------------


def from_folder(path: Path, alias: str) -> Found:
    """The address in ``path`` (the synced host_keys_dir, or the address file itself)."""
    path = path.expanduser()
    file = path / ADDRESS_FILE if path.is_dir() else path
    try:
        with file.open("rb") as handle:
            text = handle.read(MAX_ADDRESS_BYTES + 1)
    except FileNotFoundError:
        raise LookupFailed(
            f"there is no {file} (has the runtime started with host_keys_dir= there, and has Drive"
            " synced it?)"
        ) from None
    except OSError as error:
        raise LookupFailed(f"could not read {file}: {error.strerror or error}") from None
    try:
        details, updated = parse_address(text)
    except ConnectCodeError as error:
        raise LookupFailed(f"refused {file}: {error}") from None
    if details.host_key_alias != alias:
        raise LookupFailed(
            f"{file} is for host {details.host_key_alias}, not {alias} (the runtime has other host"
            " keys now): run `colab-ssh connect` with its new code"
        )
    return Found(details.host, details.port, details.client_command, f"{file} (updated {updated})")


# --- ngrok's API -----------------------------------------------------------------------------------


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "<NGROK_API_KEY>") if secret else text


def api_error(status: int, body: bytes, api_key: str) -> str:
    """One line for an API error answer: ngrok's code and message, never the key.

    ngrok answers errors with ``{"error_code": "ERR_NGROK_...", "status_code": ..., "msg": ...,
    "details": {...}}`` (https://ngrok.com/docs/api/#errors; the ngrok-api clients read these
    fields), and an authentication message quotes the key it was given (ERR_NGROK_202, 203).
    """
    try:
        record = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        record = None
    code = message = ""
    if isinstance(record, dict):
        code, message = str(record.get("error_code") or ""), str(record.get("msg") or "")
    message = " ".join(_redact(message, api_key).split())[:300]
    said = f" ({code}: {message})" if code and message else f" ({code or message})" if code or message else ""
    if status in (401, 403):
        return (
            f"ngrok's API refused NGROK_API_KEY{said}: create an API key at {API_KEYS_PAGE} (an API key,"
            " not the agent's authtoken) and set NGROK_API_KEY to it"
        )
    return f"ngrok's API answered HTTP {status}{said}"


def endpoints_page(data: object, alias: str) -> tuple[list[tuple[str, Found]], str | None]:
    """The endpoints of one ``GET /endpoints`` page tagged with ``alias``, and the next page's URI.

    Each match comes with its creation time (for choosing the newest). An endpoint whose values
    fail the checks is left out, as is every endpoint not tagged with our alias.
    """
    if not isinstance(data, dict) or not isinstance(data.get("endpoints"), list):
        raise LookupFailed("ngrok's API answered with something that is not a list of endpoints")
    found = []
    for endpoint in data["endpoints"]:
        if not isinstance(endpoint, dict) or alias_in_metadata(endpoint.get("metadata")) != alias:
            continue
        address = _tcp_address(endpoint)
        if address is not None:
            created = endpoint.get("created_at")
            found.append((created if isinstance(created, str) else "", Found(*address, None, "ngrok's API")))
    following = data.get("next_page_uri")
    return found, following if isinstance(following, str) and following else None


def _tcp_address(endpoint: Mapping[str, object]) -> tuple[str, int] | None:
    """host and port of a TCP endpoint (``public_url`` tcp://host:port), if both pass the checks."""
    url = endpoint.get("public_url") or endpoint.get("url")
    if not isinstance(url, str):
        return None
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme != "tcp" or host is None or port is None:
        return None
    try:
        return check_host(host), check_port(port)
    except ConnectCodeError:
        return None


def _no_redirects() -> urllib.request.OpenerDirector:
    """An opener that never follows a redirect: urllib would resend the Authorization header."""

    class Refuse(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: object, **_kwargs: object) -> None:
            return None

    return urllib.request.build_opener(Refuse)


def _api_base(environ: Mapping[str, str]) -> urllib.parse.SplitResult:
    text = environ.get(API_URL_VARIABLE) or DEFAULT_API_URL
    base = urllib.parse.urlsplit(text.rstrip("/"))
    if base.scheme not in ("https", "http") or not base.netloc:
        raise LookupFailed(
            f"{API_URL_VARIABLE}={text!r} is not an http(s) URL; unset it to use {DEFAULT_API_URL}"
        )
    return base


def _get_json(opener: urllib.request.OpenerDirector, url: str, api_key: str) -> object:
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked to be http(s)
        url,
        headers={"Authorization": f"Bearer {api_key}", "Ngrok-Version": "2", "Accept": "application/json"},
    )
    for attempt in range(ATTEMPTS):
        try:
            with opener.open(request, timeout=API_TIMEOUT) as answer:
                body = answer.read()
            break
        except urllib.error.HTTPError as error:
            raise LookupFailed(api_error(error.code, error.read(), api_key)) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", None) or error
            # A connection dropped before any answer (reset, closed) is worth one more try;
            # a refused or unresolvable address is not.
            dropped = isinstance(reason, ConnectionResetError | ConnectionAbortedError)
            if not dropped or attempt + 1 == ATTEMPTS:
                shown = _redact(str(reason), api_key)
                raise LookupFailed(f"could not reach ngrok's API at {url}: {shown}") from None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise LookupFailed(f"ngrok's API at {url} answered with something that is not JSON") from None


def from_ngrok_api(alias: str, environ: Mapping[str, str] = os.environ) -> Found:
    """The newest TCP endpoint of the account whose metadata names ``alias``."""
    api_key = environ.get(API_KEY_VARIABLE, "").strip()
    if not api_key:
        raise LookupFailed(
            f"{API_KEY_VARIABLE} is not set: create an API key at {API_KEYS_PAGE} and set it in the"
            " environment ssh runs in"
        )
    base = _api_base(environ)
    client = _no_redirects()
    url: str | None = urllib.parse.urlunsplit(
        (base.scheme, base.netloc, base.path + "/endpoints", f"limit={PAGE_SIZE}", "")
    )
    matches: list[tuple[str, Found]] = []
    for _ in range(MAX_PAGES):
        if url is None:
            break
        page, url = endpoints_page(_get_json(client, url, api_key), alias)
        matches += page
        if url is not None and urllib.parse.urlsplit(url)[:2] != base[:2]:
            # The key goes to the API's own host only, whatever a page says.
            raise LookupFailed(f"ngrok's API pointed the next page to another host ({url}); not followed")
    if not matches:
        raise LookupFailed(
            f"ngrok's API lists no endpoint for host {alias}: is the runtime up, with this account's"
            " authtoken?"
        )
    return max(matches, key=lambda match: match[0])[1]
