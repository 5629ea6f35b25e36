"""The connection card in headless Chromium (Debian's), and the default workdir of a real account.
The card's markup, progress lines and platform detection are in tests/unit/test_display.py."""

from __future__ import annotations

import functools
import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from colab_ssh import platform as platform_module
from colab_ssh.connection import Connection
from colab_ssh.display import (
    render_html,
)
from colab_ssh.platform import Platform, default_workdir

from ..support.cards import HOSTILE, PLAIN, commands
from ..support.http_server import serving, url_of

CHROMIUM = Path("/usr/bin/chromium")


def test_the_default_workdir_is_where_the_notebook_keeps_its_files(test_user, monkeypatch, tmp_path):
    monkeypatch.setattr(platform_module, "KAGGLE_WORKDIR", tmp_path)
    home = platform_module.pwd.getpwnam(test_user).pw_dir

    assert default_workdir(Platform.KAGGLE, test_user) == str(tmp_path)
    assert default_workdir(Platform.LINUX, test_user) == home
    assert default_workdir(Platform.LINUX, "no-such-user-here") == "/"


# --- in a real browser ---


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A folder served on 127.0.0.1 (a secure context, so the clipboard API is there)."""
    folder = tmp_path_factory.mktemp("pages")
    with serving(functools.partial(_QuietHandler, directory=str(folder))) as server:
        yield folder, url_of(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    assert CHROMIUM.exists(), "Debian's chromium is installed by .ci/run"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def open_card(browser, pages, connection: Connection, name: str, *, javascript: bool = True):
    folder, base = pages
    (folder / f"{name}.html").write_text(
        f'<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:16px">'
        f"{render_html(connection)}</body></html>"
    )
    context = browser.new_context(
        viewport={"width": 900, "height": 800},
        java_script_enabled=javascript,
        permissions=["clipboard-read", "clipboard-write"] if javascript else [],
    )
    page = context.new_page()
    page.goto(f"{base}/{name}.html")
    return context, page


def test_in_chromium_commands_show_and_copy_and_the_password_waits_for_a_click(browser, pages, tmp_path):
    context, page = open_card(browser, pages, PLAIN, "plain")
    try:
        assert page.inner_text(".cs-connect") == PLAIN.connect_command
        assert page.inner_text(".cs-ssh") == PLAIN.ssh_command
        assert page.inner_text(".cs-sshfs") == PLAIN.sshfs_command
        text = page.inner_text(".colab-ssh-card")
        assert PLAIN.ssh_command in text and "0.tcp.ngrok.io:12345" in text
        for key in PLAIN.host_keys:
            assert key.fingerprint in text

        password = page.locator(".cs-password")
        assert not password.is_visible()
        assert PLAIN.password not in text
        page.click("details.cs-secret summary")
        assert password.is_visible() and password.inner_text() == PLAIN.password
        assert "Hide password" in page.inner_text("details.cs-secret summary")

        # The connect line, the commands and the password show; what connect writes is folded.
        buttons = page.locator("button.cs-copy")
        copies = commands(PLAIN)
        assert buttons.count() == len(copies) and copies[-2:] == [PLAIN.ssh_config, PLAIN.known_hosts]
        assert [buttons.nth(i).is_visible() for i in range(buttons.count())] == [True] * 4 + [False] * 2
        assert not page.locator("pre").first.is_visible()
        page.click("details.cs-manual summary")
        blocks = page.locator("pre")
        assert [blocks.nth(i).inner_text() for i in range(blocks.count())] == [
            PLAIN.ssh_config,
            PLAIN.known_hosts,
        ]
        assert all(buttons.nth(i).is_visible() for i in range(buttons.count()))

        for index, expected in [(0, PLAIN.connect_command), (1, PLAIN.ssh_command), (4, PLAIN.ssh_config)]:
            buttons.nth(index).click()
            page.wait_for_function(
                "i => document.querySelectorAll('button.cs-copy')[i].textContent === 'Copied'", arg=index
            )
            assert page.evaluate("navigator.clipboard.readText()") == expected

        page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
        assert (tmp_path / "card.png").stat().st_size > 10_000
    finally:
        context.close()


def test_in_chromium_hostile_strings_stay_text(browser, pages):
    context, page = open_card(browser, pages, HOSTILE, "hostile")
    try:
        assert page.evaluate("window.__pwned") is None
        assert page.locator("script").count() == 1
        assert page.locator("img").count() == 0
        assert page.inner_text(".cs-address") == f"{HOSTILE.host}:{HOSTILE.port}"
        assert page.inner_text(".cs-ssh") == HOSTILE.ssh_command
        assert page.inner_text(".cs-sshfs") == HOSTILE.sshfs_command
        page.click("details.cs-secret summary")
        assert page.inner_text(".cs-password") == HOSTILE.password
        page.locator("button.cs-copy").nth(1).click()
        page.wait_for_function("document.querySelectorAll('button.cs-copy')[1].textContent === 'Copied'")
        assert page.evaluate("navigator.clipboard.readText()") == HOSTILE.password
        assert page.evaluate("window.__pwned") is None
    finally:
        context.close()


def test_without_javascript_the_password_stays_folded_and_copy_buttons_hide(browser, pages):
    context, page = open_card(browser, pages, PLAIN, "nojs", javascript=False)
    try:
        assert page.inner_text(".cs-ssh") == PLAIN.ssh_command
        assert not page.locator(".cs-password").is_visible()
        assert not page.locator("button.cs-copy").first.is_visible()
        page.click("details.cs-secret summary")
        assert page.locator(".cs-password").is_visible()
        assert not page.locator("pre").first.is_visible()
        page.click("details.cs-manual summary")  # folding needs no script
        assert page.locator("pre").first.inner_text() == PLAIN.ssh_config
    finally:
        context.close()
