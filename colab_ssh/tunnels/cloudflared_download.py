"""Fetching the pinned cloudflared into root's cache, and checking it before every run.

Root runs this file, so everything about it is treated as hostile until checked:
- the cache folder must be root's and closed to other accounts (``safe_files.trusted_dir``: a
  folder another account can write to, or a link it planted, is refused, never used);
- the cached file is read without following links and its SHA-256 compared with the pin before
  *every* run (about 0.1 s for 40 MB), not only after the download: a file changed since is
  fetched again, a folder or a non-executable file in its place is an error that says what to do;
- the download (``https_download.fetch``, which the laptop's cloudflared download shares) is
  https:// on every hop (a redirect to http:// or ftp:// is refused, not followed), bounded in
  size, and bounded by one deadline for the whole transfer, enforced by shutting the socket down
  when it passes (a server sending a byte a second resets any per-read time-out, and could
  otherwise hold us for days);
- the bytes are kept in memory (the asset is about 40 MB) and written only once their digest is
  right, through ``TrustedDir.replace``: a new file with a random name, created with
  O_EXCL|O_NOFOLLOW, mode set on the open file, renamed over the old name. A download that ends
  early leaves no file at all.
"""

from __future__ import annotations

import http.client
import os
import stat

from ..errors import CloudflaredDownloadError, CloudflaredIntegrityError, InvalidArgumentError
from ..https_download import UrlRefusedError, check_url, fetch, reason_of, sha256_hex
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
# An executable to use instead of the download (tests' stand-in, or a cloudflared you installed).
BINARY_ENV = "COLAB_SSH_CLOUDFLARED"


def check_download_url(url: str, what: str = "download_url") -> None:
    """HTTPS only, except plain HTTP to this machine (what tests serve the file from)."""
    try:
        check_url(url, what)
    except UrlRefusedError as error:
        raise InvalidArgumentError(f"{error} (the file runs as root).") from None


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
        data = fetch(url, deadline=DOWNLOAD_DEADLINE, max_bytes=MAX_DOWNLOAD_BYTES, timeout=DOWNLOAD_TIMEOUT)
    except (OSError, http.client.HTTPException, ValueError) as error:  # URLError is an OSError
        raise _download_error(url, reason_of(error)) from None
    actual = sha256_hex(data)
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
    if data is None or sha256_hex(data) != sha256.lower():
        cache.remove(name)
        return False
    if st.st_mode & 0o100 == 0:
        raise CloudflaredDownloadError(
            f"The cached cloudflared {where} is not executable (mode {stat.S_IMODE(st.st_mode):o})."
            f" Run `chmod 755 {where}`, or remove it and colab_ssh downloads cloudflared again."
        )
    return True
