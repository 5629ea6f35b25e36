"""Fetching the pinned cloudflared into root's cache, and checking it before every run.

Root runs this file, so everything about it is treated as hostile until checked:
- the cache folder must be root's and closed to other accounts (``safe_files.trusted_dir``: a
  folder another account can write to, or a link it planted, is refused, never used);
- the cached file is read without following links and its SHA-256 compared with the pin before
  *every* run (about 0.1 s for 40 MB), not only after the download: a file changed since is
  fetched again, a folder or a non-executable file in its place is an error that says what to do;
- the download is https:// on every hop (a redirect to http:// or ftp:// is refused, not
  followed), bounded in size, and bounded by one deadline for the whole transfer, enforced by
  shutting the socket down when it passes (a server sending a byte a second resets any per-read
  time-out, and could otherwise hold us for days);
- the bytes are kept in memory (the asset is about 40 MB) and written only once their digest is
  right, through ``TrustedDir.replace``: a new file with a random name, created with
  O_EXCL|O_NOFOLLOW, mode set on the open file, renamed over the old name. A download that ends
  early leaves no file at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import stat
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from ..errors import CloudflaredDownloadError, CloudflaredIntegrityError, InvalidArgumentError
from ..safe_files import TrustedDir

__all__ = [
    "DOWNLOAD_DEADLINE",
    "DOWNLOAD_TIMEOUT",
    "MAX_DOWNLOAD_BYTES",
    "CloudflaredDownloadError",
    "CloudflaredIntegrityError",
    "cached_is_verified",
    "check_download_url",
    "download_verified",
]

DOWNLOAD_TIMEOUT = 30.0  # seconds without a byte before the download is given up
DOWNLOAD_DEADLINE = 600.0  # seconds for the whole download, however the bytes trickle in
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024  # the real asset is about 40 MB: more is not cloudflared
_CHUNK = 256 * 1024
# An executable to use instead of the download (tests' stand-in, or a cloudflared you installed).
BINARY_ENV = "COLAB_SSH_CLOUDFLARED"


class _Refused(OSError):
    """A download step we refuse (a redirect off https, too many bytes, the deadline)."""


def check_download_url(url: str, what: str = "download_url") -> None:
    """HTTPS only, except plain HTTP to this machine (what tests serve the file from)."""
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise InvalidArgumentError(f"{what} must be an https:// URL, not {url!r} (the file runs as root).")


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
            check_download_url(newurl)
        except InvalidArgumentError:
            raise _Refused(f"it redirected to {newurl!r}, which is not https://; refused") from None
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


def _fetch(url: str) -> bytes:
    """The body at ``url``, within DOWNLOAD_DEADLINE overall and MAX_DOWNLOAD_BYTES."""
    parts: list[bytes] = []
    size = 0
    with _Deadline(DOWNLOAD_DEADLINE) as deadline:
        try:
            with _opener(deadline).open(url, timeout=DOWNLOAD_TIMEOUT) as response:
                while chunk := response.read1(_CHUNK):
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        raise _Refused(f"the file is larger than {MAX_DOWNLOAD_BYTES // (1024 * 1024)} MiB")
                    parts.append(chunk)
                    if deadline.expired:
                        break
        except (OSError, http.client.HTTPException, ValueError):
            if not deadline.expired:
                raise
        if deadline.expired:  # the shut-down socket may read as an early end of the file
            raise _Refused(f"the download did not finish within {DOWNLOAD_DEADLINE:g} s")
    return b"".join(parts)


def _download_error(url: str, reason: object) -> CloudflaredDownloadError:
    return CloudflaredDownloadError(
        f"Could not download cloudflared from {url}: {reason}. The runtime needs internet access to"
        f" github.com (Cloudflare publishes cloudflared there); or install cloudflared yourself and"
        f" set {BINARY_ENV} to its path."
    )


def download_verified(url: str, sha256: str, cache: TrustedDir, name: str) -> None:
    """Fetch ``url`` into ``cache/name`` (mode 0755) if and only if its SHA-256 is ``sha256``."""
    check_download_url(url)
    try:
        data = _fetch(url)
    except (OSError, http.client.HTTPException, ValueError) as error:  # URLError is an OSError
        reason: object = error
        if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
            reason = error.reason  # "[Errno 111] Connection refused" rather than "<urlopen error ...>"
        raise _download_error(url, reason) from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256.lower():
        raise CloudflaredIntegrityError(
            f"The file downloaded from {url} is not the cloudflared colab_ssh pins: its SHA-256 is"
            f" {actual}, expected {sha256}. It was not saved and not run. Try again later (a proxy"
            f" may have altered it), or install cloudflared yourself and set {BINARY_ENV}.",
            expected=sha256,
            actual=actual,
        )
    cache.replace(name, data, mode=0o755)


def cached_is_verified(cache: TrustedDir, name: str, sha256: str) -> bool:
    """Whether ``cache/name`` is the pinned file, ready to run; False if it is missing or differs
    (a differing file is removed, to be fetched again). Run before every start of cloudflared."""
    where = cache.path / name
    try:
        st = os.stat(name, dir_fd=cache.fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a plain file"
        raise CloudflaredDownloadError(
            f"The cached cloudflared {where} is {kind}, so it cannot be run. Remove it"
            f" (rm -r {where}) and colab_ssh downloads cloudflared again."
        )
    data = cache.read(name)  # no links followed; a file of another account is refused
    if data is None or hashlib.sha256(data).hexdigest() != sha256.lower():
        cache.remove(name)
        return False
    if st.st_mode & 0o100 == 0:
        raise CloudflaredDownloadError(
            f"The cached cloudflared {where} is not executable (mode {stat.S_IMODE(st.st_mode):o})."
            f" Run `chmod 755 {where}`, or remove it and colab_ssh downloads cloudflared again."
        )
    return True
