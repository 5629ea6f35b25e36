"""The laptop's cloudflared (colab_ssh/laptop/client_program.py): found on PATH or in the per-user
cache, else downloaded once the user agrees, checked against the pinned SHA-256.

GitHub is not reachable here: its release downloads are served by a real HTTP server on
127.0.0.1 (``releases=`` points there; plain http is accepted to loopback only, and the real
base URL is https). Each file is served at GitHub's path, /<version>/<asset>."""

from __future__ import annotations

import contextlib
import hashlib
import io
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from colab_ssh import cloudflared_pins
from colab_ssh.laptop import client_program
from colab_ssh.laptop.client_program import (
    ClientProgramError,
    Machine,
    NoAnswerError,
    asset_for,
    cache_dir,
    install,
    resolve,
    terminal_ask,
)

from ..support.stand_ins import http_server, serve_paths

VERSION = cloudflared_pins.VERSION
LINUX = Machine("linux", "x86_64")
MAC = Machine("darwin", "arm64")
WINDOWS = Machine("win32", "AMD64")
PROGRAM = b"#!/bin/sh\necho 'cloudflared version 2026.10.0 (stand-in)'\n"


def tgz(members: list[tuple[str, bytes | None]]) -> bytes:
    """A .tgz with these members: (name, bytes) a plain file, (name, None) a symlink to /etc/passwd."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                archive.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Asker:
    """An ``ask`` that records the questions and answers as told."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.questions: list[str] = []

    def __call__(self, question: str) -> bool:
        self.questions.append(question)
        return self.answer


@contextlib.contextmanager
def releases(monkeypatch, files: dict[str, bytes]) -> Iterator[tuple[str, list[str]]]:
    """GitHub's release downloads on 127.0.0.1, each asset pinned to the digest of what is served."""
    requests: list[str] = []
    for asset, data in files.items():
        monkeypatch.setitem(client_program.SHA256, asset, hashlib.sha256(data).hexdigest())
    with serve_paths({f"/{VERSION}/{asset}": data for asset, data in files.items()}, requests) as url:
        yield url, requests


def no_path(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    return {"PATH": str(empty)}


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.exists() else []


# --- where things are ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "asset"),
    [
        (Machine("win32", "AMD64"), "cloudflared-windows-amd64.exe"),
        (Machine("win32", "x86"), "cloudflared-windows-386.exe"),
        (Machine("win32", "ARM64"), None),
        (Machine("darwin", "arm64"), "cloudflared-darwin-arm64.tgz"),
        (Machine("darwin", "x86_64"), "cloudflared-darwin-amd64.tgz"),
        (Machine("linux", "x86_64"), "cloudflared-linux-amd64"),
        (Machine("linux", "aarch64"), "cloudflared-linux-arm64"),
        (Machine("linux", "armv7l"), None),
        (Machine("freebsd14", "amd64"), None),
    ],
)
def test_each_machine_gets_its_pinned_asset(machine, asset):
    assert asset_for(machine) == asset
    if asset is not None:
        assert asset in cloudflared_pins.SHA256


def test_every_pinned_asset_downloads_over_https_from_the_release():
    for asset in cloudflared_pins.SHA256:
        assert cloudflared_pins.release_url(asset) == (
            f"https://github.com/cloudflare/cloudflared/releases/download/{VERSION}/{asset}"
        )


def test_the_cache_is_per_user_where_each_system_keeps_caches(tmp_path):
    home = tmp_path / "home"
    local = tmp_path / "AppData-Local"

    assert cache_dir(WINDOWS, {"LOCALAPPDATA": str(local)}, home) == local / "colab-ssh" / "bin"
    assert cache_dir(WINDOWS, {}, home) == home / "AppData" / "Local" / "colab-ssh" / "bin"
    assert cache_dir(MAC, {"XDG_CACHE_HOME": str(local)}, home) == (
        home / "Library" / "Caches" / "colab-ssh" / "bin"
    )
    assert cache_dir(LINUX, {"XDG_CACHE_HOME": str(local)}, home) == local / "colab-ssh" / "bin"
    assert (
        cache_dir(LINUX, {"XDG_CACHE_HOME": "relative/cache"}, home) == home / ".cache" / "colab-ssh" / "bin"
    )
    assert cache_dir(LINUX, {}, home) == home / ".cache" / "colab-ssh" / "bin"


# --- found, or asked for ------------------------------------------------------------------------


def test_a_cloudflared_on_path_is_used_as_it_is(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    installed = bin_dir / "cloudflared"
    installed.write_bytes(PROGRAM)
    installed.chmod(0o755)
    asker = Asker(True)

    found = resolve("cloudflared", ask=asker, machine=LINUX, environ={"PATH": str(bin_dir)}, home=tmp_path)

    assert found == str(installed)
    assert asker.questions == [] and not (tmp_path / ".cache").exists()


def test_declined_nothing_is_fetched_and_the_fix_is_named(tmp_path, monkeypatch):
    asker = Asker(False)
    with (
        releases(monkeypatch, {"cloudflared-darwin-arm64.tgz": tgz([("cloudflared", PROGRAM)])}) as (
            url,
            requests,
        ),
        pytest.raises(ClientProgramError, match=r"brew install cloudflared") as raised,
    ):
        resolve("cloudflared", ask=asker, machine=MAC, environ=no_path(tmp_path), home=tmp_path, releases=url)

    assert len(asker.questions) == 1 and VERSION in asker.questions[0]
    assert "\n" not in str(raised.value)
    assert requests == [] and not (tmp_path / "Library").exists()


def test_with_no_terminal_the_error_names_yes_and_the_manual_install(tmp_path):
    ask = terminal_ask(False, stdin=io.StringIO("y\n"), stderr=io.StringIO())

    with pytest.raises(ClientProgramError) as raised:
        resolve("cloudflared", ask=ask, machine=WINDOWS, environ=no_path(tmp_path), home=tmp_path)

    assert "--yes" in str(raised.value)
    assert "winget install --id Cloudflare.cloudflared" in str(raised.value)
    assert files_under(tmp_path) == ["empty-path"]


def test_no_pinned_build_for_this_machine_names_the_manual_install(tmp_path):
    asker = Asker(True)
    with pytest.raises(ClientProgramError, match=r"pins no cloudflared build .*winget install"):
        resolve(
            "cloudflared",
            ask=asker,
            machine=Machine("win32", "ARM64"),
            environ=no_path(tmp_path),
            home=tmp_path,
        )
    assert asker.questions == []


def test_another_client_program_is_never_downloaded(tmp_path):
    with pytest.raises(ClientProgramError, match=r"websocat is not on PATH: install it"):
        resolve("websocat", ask=Asker(True), machine=LINUX, environ=no_path(tmp_path), home=tmp_path)


def test_terminal_ask():
    err = io.StringIO()

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert terminal_ask(True, stdin=io.StringIO(""), stderr=err)("Download?") is True
    assert err.getvalue() == ""  # --yes: nothing asked
    assert terminal_ask(False, stdin=Terminal("y\n"), stderr=err)("Download?") is True
    assert err.getvalue() == "Download? [y/N] "
    assert terminal_ask(False, stdin=Terminal("\n"), stderr=err)("Download?") is False
    with pytest.raises(NoAnswerError):
        terminal_ask(False, stdin=io.StringIO("y\n"), stderr=err)("Download?")


# --- the download -------------------------------------------------------------------------------


def test_agreed_the_pinned_build_is_downloaded_once_then_served_from_the_cache(tmp_path, monkeypatch):
    asker = Asker(True)
    with releases(monkeypatch, {"cloudflared-linux-amd64": PROGRAM}) as (url, requests):
        found = resolve(
            "cloudflared", ask=asker, machine=LINUX, environ=no_path(tmp_path), home=tmp_path, releases=url
        )
        again = resolve(
            "cloudflared", ask=asker, machine=LINUX, environ=no_path(tmp_path), home=tmp_path, releases=url
        )

    folder = tmp_path / ".cache" / "colab-ssh" / "bin"
    assert found == again == str(folder / f"cloudflared-{VERSION}")
    assert Path(found).read_bytes() == PROGRAM
    assert stat.S_IMODE(Path(found).stat().st_mode) == 0o755
    assert requests == [f"/{VERSION}/cloudflared-linux-amd64"]
    assert len(asker.questions) == 1 and str(folder) in asker.questions[0]
    assert files_under(folder) == [f"cloudflared-{VERSION}"]  # no temporary file left


def test_on_windows_the_program_is_an_exe_under_localappdata(tmp_path, monkeypatch):
    local = tmp_path / "Local"
    with releases(monkeypatch, {"cloudflared-windows-amd64.exe": PROGRAM}) as (url, _requests):
        found = resolve(
            "cloudflared",
            ask=Asker(True),
            machine=WINDOWS,
            environ={**no_path(tmp_path), "LOCALAPPDATA": str(local)},
            home=tmp_path,
            releases=url,
        )

    assert found == str(local / "colab-ssh" / "bin" / f"cloudflared-{VERSION}.exe")
    assert Path(found).read_bytes() == PROGRAM


def test_a_cached_program_that_changed_is_not_used(tmp_path, monkeypatch):
    with releases(monkeypatch, {"cloudflared-linux-amd64": PROGRAM}) as (url, requests):
        found = resolve(
            "cloudflared",
            ask=Asker(True),
            machine=LINUX,
            environ=no_path(tmp_path),
            home=tmp_path,
            releases=url,
        )
        Path(found).write_bytes(b"#!/bin/sh\necho changed\n")
        asker = Asker(True)
        again = resolve(
            "cloudflared", ask=asker, machine=LINUX, environ=no_path(tmp_path), home=tmp_path, releases=url
        )

    assert again == found and Path(found).read_bytes() == PROGRAM
    assert len(asker.questions) == 1 and len(requests) == 2


def test_a_wrong_digest_saves_nothing(tmp_path):
    folder = tmp_path / "bin"
    with (
        serve_paths({f"/{VERSION}/cloudflared-linux-amd64": PROGRAM}) as url,
        pytest.raises(ClientProgramError) as raised,
    ):
        install("cloudflared-linux-amd64", folder, sha256="0" * 64, releases=url)

    assert f"SHA-256 {hashlib.sha256(PROGRAM).hexdigest()}, expected {'0' * 64}" in str(raised.value)
    assert "it was not saved" in str(raised.value)
    assert not folder.exists()


def test_a_download_cut_short_saves_nothing(tmp_path):
    """The server promises more bytes than it sends, then closes the connection."""
    folder = tmp_path / "bin"

    def cut_short(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(PROGRAM) + 1000))
        handler.end_headers()
        handler.wfile.write(PROGRAM)
        handler.close_connection = True

    with (
        http_server(cut_short) as (url, _asked),
        pytest.raises(ClientProgramError, match=r"closed 1000 bytes before the end"),
    ):
        install("cloudflared-linux-amd64", folder, sha256=hashlib.sha256(PROGRAM).hexdigest(), releases=url)

    assert not folder.exists()


def test_a_redirect_off_https_is_refused(tmp_path):
    target = f"http://192.0.2.1/{VERSION}/cloudflared-linux-amd64"  # TEST-NET-1: never contacted

    def redirect(handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with http_server(redirect) as (url, asked), pytest.raises(ClientProgramError) as raised:
        install("cloudflared-linux-amd64", tmp_path / "bin", releases=url)

    assert f"redirected to {target!r}, which is not https://; refused" in str(raised.value)
    assert asked == [f"/{VERSION}/cloudflared-linux-amd64"]
    assert not (tmp_path / "bin").exists()


def test_plain_http_is_refused_anywhere_but_this_machine(tmp_path):
    with pytest.raises(ClientProgramError, match=r"must be an https:// URL, not 'http://github\.com/"):
        install("cloudflared-linux-amd64", tmp_path / "bin", releases="http://github.com/cloudflare")
    assert not (tmp_path / "bin").exists()


def test_a_trickling_server_cannot_outrun_the_deadline(tmp_path, monkeypatch):
    monkeypatch.setattr(client_program, "DOWNLOAD_DEADLINE", 1.0)

    def trickle(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(PROGRAM)))
        handler.end_headers()
        with contextlib.suppress(OSError):
            for index in range(len(PROGRAM)):
                handler.wfile.write(PROGRAM[index : index + 1])
                handler.wfile.flush()
                time.sleep(0.1)

    with (
        http_server(trickle) as (url, _asked),
        pytest.raises(ClientProgramError, match=r"did not finish within 1 s"),
    ):
        install(
            "cloudflared-linux-amd64",
            tmp_path / "bin",
            sha256=hashlib.sha256(PROGRAM).hexdigest(),
            releases=url,
        )

    assert not (tmp_path / "bin").exists()


# --- the macOS archive --------------------------------------------------------------------------


def test_from_the_macos_archive_only_the_cloudflared_member_is_taken(tmp_path, monkeypatch):
    """Members named to escape the folder are never extracted: the program's bytes are read from
    the one member named cloudflared, and written under our own name."""
    archive = tgz(
        [("../escaped", b"x"), ("/tmp/absolute-escape", b"x"), ("cloudflared", PROGRAM), ("README", b"r")]
    )
    home = tmp_path / "home"
    with releases(monkeypatch, {"cloudflared-darwin-arm64.tgz": archive}) as (url, requests):
        found = resolve(
            "cloudflared", ask=Asker(True), machine=MAC, environ=no_path(tmp_path), home=home, releases=url
        )
        again = resolve(
            "cloudflared", ask=Asker(False), machine=MAC, environ=no_path(tmp_path), home=home, releases=url
        )

    folder = home / "Library" / "Caches" / "colab-ssh" / "bin"
    assert found == again == str(folder / f"cloudflared-{VERSION}")
    assert Path(found).read_bytes() == PROGRAM
    assert files_under(folder) == [f"cloudflared-{VERSION}", f"cloudflared-{VERSION}.tgz"]
    assert not (home / "Library" / "Caches" / "colab-ssh" / "escaped").exists()
    assert not Path("/tmp/absolute-escape").exists()
    assert len(requests) == 1


def test_the_macos_program_is_checked_against_the_cached_archive(tmp_path, monkeypatch):
    archive = tgz([("cloudflared", PROGRAM)])
    with releases(monkeypatch, {"cloudflared-darwin-amd64.tgz": archive}) as (url, requests):
        machine = Machine("darwin", "x86_64")
        found = resolve(
            "cloudflared",
            ask=Asker(True),
            machine=machine,
            environ=no_path(tmp_path),
            home=tmp_path,
            releases=url,
        )
        Path(found).write_bytes(b"#!/bin/sh\necho changed\n")
        asker = Asker(True)
        resolve(
            "cloudflared", ask=asker, machine=machine, environ=no_path(tmp_path), home=tmp_path, releases=url
        )

    assert Path(found).read_bytes() == PROGRAM
    assert len(asker.questions) == 1 and len(requests) == 2


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([("cloudflared", None)], "a link named cloudflared"),
        ([("bin/cloudflared", PROGRAM)], "no member named cloudflared"),
        ([("cloudflared", PROGRAM), ("cloudflared", b"second")], "two members named cloudflared"),
    ],
)
def test_an_archive_without_one_plain_cloudflared_installs_nothing(members, why, tmp_path):
    archive = tgz(members)
    folder = tmp_path / "bin"
    with (
        serve_paths({f"/{VERSION}/cloudflared-darwin-arm64.tgz": archive}) as url,
        pytest.raises(ClientProgramError, match=r"does not hold one plain file named 'cloudflared'"),
    ):
        install(
            "cloudflared-darwin-arm64.tgz",
            folder,
            sha256=hashlib.sha256(archive).hexdigest(),
            releases=url,
        )

    assert not folder.exists(), why
