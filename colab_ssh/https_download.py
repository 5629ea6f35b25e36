"""Fetching a file over https into memory: one deadline, a size bound, https on every hop.

Standard library only, and no assumption about who runs it: the runtime (as root, for the
cloudflared it runs) and the laptop (as the user, for the cloudflared ssh runs) both fetch
through :func:`fetch`, then compare the bytes with a pinned SHA-256 before writing anything.

- every hop is https:// (a redirect to http:// or ftp:// is refused, not followed); plain
  http:// is accepted only to this machine's loopback address, where tests serve files from;
- one deadline for the whole transfer, enforced by shutting the socket down when it passes (a
  server sending a byte a second resets any per-read time-out, and could otherwise hold us for
  days); and a bound on the size;
- the bytes stay in memory, so a transfer that ends early leaves no file anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import socket
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DeadlineExpiredError",
    "DownloadRefusedError",
    "TooLargeError",
    "UrlRefusedError",
    "check_url",
    "fetch",
    "reason_of",
    "sha256_hex",
]

_CHUNK = 256 * 1024
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UrlRefusedError(ValueError):
    """A URL that is neither https:// nor plain http:// to this machine."""


class DownloadRefusedError(OSError):
    """A download step we refuse: a redirect off https, too many bytes, the deadline."""


class TooLargeError(DownloadRefusedError):
    """The body is larger than the caller's bound."""


class DeadlineExpiredError(DownloadRefusedError):
    """The transfer did not finish within its overall deadline."""


def check_url(url: str, what: str = "the download URL") -> None:
    """HTTPS only, except plain HTTP to this machine (what tests serve files from)."""
    parts = urlsplit(url)
    loopback = parts.hostname in _LOOPBACK
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise UrlRefusedError(f"{what} must be an https:// URL, not {url!r}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Deadline:
    """One deadline for a whole transfer: when it passes, every socket of the transfer is shut
    down, which ends a read blocked in the kernel at once (a per-read time-out restarts with each
    byte a trickling server sends)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._timer.cancel()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Every hop obeys the rule the first URL does (urllib alone would follow a 302 to http or ftp)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        try:
            check_url(newurl)
        except UrlRefusedError:
            refused = f"it redirected to {newurl!r}, which is not https://; refused"
            raise DownloadRefusedError(refused) from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib, with each connection's socket handed to ``deadline`` as soon as it exists."""

    class Https(http.client.HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class Http(http.client.HTTPConnection):
        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)

    class HttpsHandler(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Https, req, context=self._context)  # type: ignore[attr-defined]

    class HttpHandler(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(Http, req)

    return urllib.request.build_opener(HttpsHandler(), HttpHandler(), _HttpsOnlyRedirects())


def fetch(url: str, *, deadline: float, max_bytes: int, timeout: float) -> bytes:
    """The body at ``url``, within ``deadline`` seconds overall and ``max_bytes``.

    Raises :class:`UrlRefusedError` for a URL :func:`check_url` refuses, and an ``OSError``
    (:class:`DownloadRefusedError`, among them :class:`TooLargeError` and
    :class:`DeadlineExpiredError`; ``urllib.error.URLError``/``HTTPError``, ...),
    ``http.client.HTTPException`` or ``ValueError`` when the transfer fails; a transfer that
    ends before its Content-Length is such a failure.
    """
    check_url(url)
    parts: list[bytes] = []
    size = 0
    with _Deadline(deadline) as watch:
        try:
            with _opener(watch).open(url, timeout=timeout) as response:
                while chunk := response.read1(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLargeError(f"the file is larger than {_size(max_bytes)}")
                    parts.append(chunk)
                    if watch.expired:
                        break
                missing = response.length  # what Content-Length promised and never came
                if missing and not watch.expired:
                    raise DownloadRefusedError(f"the connection closed {missing} bytes before the end")
        except (OSError, http.client.HTTPException, ValueError):
            if not watch.expired:
                raise
        if watch.expired:  # the shut-down socket may read as an early end of the file
            raise DeadlineExpiredError(f"the download did not finish within {deadline:g} s")
    return b"".join(parts)


def _size(count: int) -> str:
    mib = 1024 * 1024
    return f"{count // mib} MiB" if count >= mib else f"{count // 1024} KiB"


def reason_of(error: BaseException) -> object:
    """What to print for a failed fetch: "[Errno 111] Connection refused" rather than
    "<urlopen error ...>"."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return error.reason
    return error
