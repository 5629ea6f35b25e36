"""The program a tunnel's client command runs on the laptop (cloudflared): found, or fetched.

:func:`resolve` looks on PATH, then in a per-user cache, and otherwise offers to download the
release colab_ssh pins (``cloudflared_pins``) for this system and CPU from GitHub, so that nobody
has to install cloudflared by hand, Windows users included. The download is checked like the
runtime's (``https_download.fetch``: https on every hop, one deadline, a size bound; then the
pinned SHA-256 before a byte is written), and lands through a new file with a random name,
created exclusively and renamed into place: a download that fails leaves nothing behind.

The macOS builds come as a .tgz holding one file, ``cloudflared``: only that member is read (as
bytes; no name from the archive is ever used as a path), and the verified archive stays in the
cache beside it, so the program can be checked against it again at every ``resolve``.
"""

from __future__ import annotations

import http.client
import io
import os
import platform
import secrets
import shutil
import sys
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..cloudflared_pins import RELEASES, SHA256, VERSION, release_url
from ..https_download import UrlRefusedError, fetch, reason_of, sha256_hex

__all__ = [
    "DOWNLOADABLE",
    "ClientProgramError",
    "Machine",
    "NoAnswerError",
    "asset_for",
    "cache_dir",
    "install",
    "install_hint",
    "resolve",
    "terminal_ask",
]

DOWNLOADABLE = "cloudflared"  # the one client program colab_ssh knows how to fetch
DOWNLOAD_TIMEOUT = 30.0  # seconds without a byte before the download is given up
DOWNLOAD_DEADLINE = 600.0  # seconds for the whole download, however the bytes trickle in
MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024  # the real assets are 20 to 56 MB
_ARCHIVE_MEMBER = "cloudflared"

# platform.machine() spellings, per sys.platform, of the CPUs a release asset is pinned for.
# (Windows says AMD64, x86 or ARM64; macOS x86_64 or arm64; Linux x86_64 or aarch64.)
_ASSETS = {
    ("win32", "amd64"): "cloudflared-windows-amd64.exe",
    ("win32", "x86_64"): "cloudflared-windows-amd64.exe",
    ("win32", "x86"): "cloudflared-windows-386.exe",
    ("win32", "i386"): "cloudflared-windows-386.exe",
    ("win32", "i686"): "cloudflared-windows-386.exe",
    ("darwin", "x86_64"): "cloudflared-darwin-amd64.tgz",
    ("darwin", "arm64"): "cloudflared-darwin-arm64.tgz",
    ("linux", "x86_64"): "cloudflared-linux-amd64",
    ("linux", "amd64"): "cloudflared-linux-amd64",
    ("linux", "aarch64"): "cloudflared-linux-arm64",
    ("linux", "arm64"): "cloudflared-linux-arm64",
}


class ClientProgramError(Exception):
    """The client program is missing and was not fetched; the one-line message names the fix."""


class NoAnswerError(Exception):
    """Raised by an ``ask`` that cannot ask (no terminal): :func:`resolve` names the ways out."""


@dataclass(frozen=True)
class Machine:
    """The laptop, as the download needs it: ``sys.platform`` and ``platform.machine()``."""

    system: str  # "win32", "darwin", "linux", ...
    cpu: str

    @classmethod
    def this(cls) -> Machine:
        return cls(sys.platform, platform.machine())

    @property
    def windows(self) -> bool:
        return self.system == "win32"


def asset_for(machine: Machine) -> str | None:
    """The pinned release asset for ``machine``, or None where none is pinned."""
    return _ASSETS.get((machine.system, machine.cpu.lower()))


def install_hint(system: str) -> str:
    """How to install cloudflared by hand on a ``sys.platform`` system."""
    if system == "win32":
        way = "winget install --id Cloudflare.cloudflared"
    elif system == "darwin":
        way = "brew install cloudflared"
    else:
        way = "install cloudflared from https://pkg.cloudflare.com or your distribution's packages"
    return f"{way} (or put the folder holding cloudflared on PATH), then run this again"


def cache_dir(machine: Machine, environ: Mapping[str, str], home: Path) -> Path:
    """The per-user folder the downloaded program lives in (created when needed, never shared)."""
    if machine.windows:
        local = environ.get("LOCALAPPDATA", "")
        base = Path(local) if local and Path(local).is_absolute() else home / "AppData" / "Local"
        return base / "colab-ssh" / "bin"
    if machine.system == "darwin":
        return home / "Library" / "Caches" / "colab-ssh" / "bin"
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".cache"  # relative: ignored (spec)
    return base / "colab-ssh" / "bin"


def _system_of(asset: str) -> str:
    return "win32" if "-windows-" in asset else "darwin" if "-darwin-" in asset else "linux"


def _program_name(asset: str) -> str:
    return f"{DOWNLOADABLE}-{VERSION}" + (".exe" if asset.endswith(".exe") else "")


def _archive_name(asset: str) -> str:
    return f"{DOWNLOADABLE}-{VERSION}.tgz"


def _is_archive(asset: str) -> bool:
    return asset.endswith(".tgz")


def _program_from_archive(data: bytes, asset: str) -> bytes:
    """The bytes of the archive's ``cloudflared`` member, a plain file; nothing else is read."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = [member for member in archive.getmembers() if member.name == _ARCHIVE_MEMBER]
            if len(members) != 1 or not members[0].isfile():
                raise ClientProgramError(
                    f"{asset} does not hold one plain file named {_ARCHIVE_MEMBER!r}, so nothing was"
                    " installed; report it at https://github.com/cloudflare/cloudflared/issues"
                )
            extracted = archive.extractfile(members[0])
            return b"" if extracted is None else extracted.read()  # None only for non-files
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ClientProgramError(
            f"{asset} could not be read as a .tgz archive ({error}); nothing was installed"
        ) from None


def _write_new(folder: Path, name: str, data: bytes, mode: int) -> None:
    """``folder/name`` holds ``data`` afterwards, or is as it was: written to a new file with a
    random name (created exclusively, links not followed), then renamed over ``name``."""
    temporary = folder / f".{name}.{secrets.token_hex(8)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    descriptor = os.open(temporary, flags, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        temporary.chmod(mode)  # after creating it: the umask does not decide whether it runs
        temporary.replace(folder / name)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_plain(path: Path) -> bytes | None:
    """The contents of ``path`` if it is a plain file (not a link, not a folder), else None."""
    try:
        if not path.is_file() or path.is_symlink():
            return None
        return path.read_bytes()
    except OSError:
        return None


def _cached(folder: Path, asset: str, sha256: str) -> Path | None:
    """The cached program if it is exactly what the pinned asset holds, else None."""
    program = folder / _program_name(asset)
    data = _read_plain(program)
    if data is None:
        return None
    if _is_archive(asset):
        archive = _read_plain(folder / _archive_name(asset))
        if archive is None or sha256_hex(archive) != sha256:
            return None
        try:
            expected = _program_from_archive(archive, asset)
        except ClientProgramError:
            return None
        return program if data == expected else None
    return program if sha256_hex(data) == sha256 else None


def install(asset: str, folder: Path, *, sha256: str | None = None, releases: str = RELEASES) -> Path:
    """Download ``asset`` of the pinned release, check its SHA-256, and write the program into
    ``folder``; returns its path. ``releases`` is where GitHub serves releases: tests serve them
    from this machine (plain http is accepted to 127.0.0.1 only; the real URL is https)."""
    expected = (SHA256[asset] if sha256 is None else sha256).lower()
    url = release_url(asset, releases)
    try:
        data = fetch(url, deadline=DOWNLOAD_DEADLINE, max_bytes=MAX_DOWNLOAD_BYTES, timeout=DOWNLOAD_TIMEOUT)
    except UrlRefusedError as error:
        raise ClientProgramError(f"{error}: refusing to download cloudflared from it") from None
    except (OSError, http.client.HTTPException, ValueError) as error:  # URLError is an OSError
        raise ClientProgramError(
            f"Could not download cloudflared from {url}: {reason_of(error)}. Check the internet"
            " connection to github.com and run this again, or install it yourself:"
            f" {install_hint(_system_of(asset))}"
        ) from None
    actual = sha256_hex(data)
    if actual != expected:
        raise ClientProgramError(
            f"The file downloaded from {url} is not the cloudflared colab-ssh pins (SHA-256 {actual},"
            f" expected {expected}); it was not saved. Try again later (a proxy may have altered it),"
            f" or install it yourself: {install_hint(_system_of(asset))}"
        )
    program = _program_from_archive(data, asset) if _is_archive(asset) else data
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if _is_archive(asset):
            _write_new(folder, _archive_name(asset), data, 0o644)
        _write_new(folder, _program_name(asset), program, 0o755)
    except OSError as error:
        raise ClientProgramError(
            f"Could not write cloudflared into {folder}: {error.strerror or error}. Make that folder"
            " yours and writable (or remove it), then run this again"
        ) from None
    return folder / _program_name(asset)


def resolve(
    name: str,
    *,
    ask: Callable[[str], bool],
    machine: Machine | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    releases: str = RELEASES,
) -> str:
    """The path of the client program ``name`` (e.g. "cloudflared"): on PATH, else in the per-user
    cache, else downloaded once ``ask(question)`` says yes. Raises :class:`ClientProgramError`
    with the fix: declined, no terminal to ask on, no pinned build for this machine, a failed
    download. ``machine``, ``environ``, ``home`` and ``releases`` are this laptop's by default."""
    machine = Machine.this() if machine is None else machine
    environ = os.environ if environ is None else environ
    found = shutil.which(name, path=environ.get("PATH", os.defpath))
    if found is not None:
        return str(Path(found).absolute())
    if name != DOWNLOADABLE:
        raise ClientProgramError(
            f"{name} is not on PATH: install it (or put its folder on PATH) and run this again"
        )
    asset = asset_for(machine)
    if asset is None:
        raise ClientProgramError(
            f"cloudflared is not on PATH, and colab-ssh pins no cloudflared build for this system"
            f" ({machine.system}, {machine.cpu}): {install_hint(machine.system)}"
        )
    folder = cache_dir(machine, environ, Path.home() if home is None else home)
    cached = _cached(folder, asset, SHA256[asset])
    if cached is not None:
        return str(cached)
    question = (
        f"This tunnel needs cloudflared on this computer, and it is not on PATH. Download"
        f" cloudflared {VERSION} ({asset}) from github.com, checked against its pinned SHA-256,"
        f" into {folder}?"
    )
    try:
        agreed = ask(question)
    except NoAnswerError:
        raise ClientProgramError(
            f"cloudflared is not on PATH and there is no terminal to ask whether to download it: run"
            f" again with --yes to download cloudflared {VERSION} into {folder},"
            f" or {install_hint(machine.system)}"
        ) from None
    if not agreed:
        raise ClientProgramError(
            f"cloudflared is needed for this tunnel and was not downloaded: {install_hint(machine.system)}"
        )
    return str(install(asset, folder, releases=releases))


def terminal_ask(
    assume_yes: bool, *, stdin: TextIO | None = None, stderr: TextIO | None = None
) -> Callable[[str], bool]:
    """An ``ask`` for :func:`resolve`: yes if ``assume_yes`` (``--yes``), else a y/N question on the
    terminal; with no terminal it raises :class:`NoAnswerError` (never a silent yes)."""

    def ask(question: str) -> bool:
        if assume_yes:
            return True
        source = sys.stdin if stdin is None else stdin
        out = sys.stderr if stderr is None else stderr
        if source is None or not source.isatty():
            raise NoAnswerError(question)
        out.write(f"{question} [y/N] ")
        out.flush()
        return source.readline().strip().lower() in ("y", "yes")

    return ask
