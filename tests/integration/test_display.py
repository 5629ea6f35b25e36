"""The connection card (markup, escaping, headless Chromium), progress lines, platform detection."""

from __future__ import annotations

import functools
import html
import http.server
import os
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from colab_ssh import display as display_module
from colab_ssh import platform as platform_module
from colab_ssh import progress as progress_module
from colab_ssh.connection import Connection, HostKey, render_details
from colab_ssh.display import (
    connection_display_suppressed,
    render_html,
    render_text,
    show_connection,
    vscode_url,
)
from colab_ssh.platform import Platform, default_workdir, detect_platform, in_notebook
from colab_ssh.progress import Progress

CHROMIUM = Path("/usr/bin/chromium")

PLAIN = Connection(
    host="0.tcp.ngrok.io",
    port=12345,
    user="root",
    password="Xy7Qk2mP9aBcDeFgHiJkLmNo",
    local_port=22,
    tunnel="ngrok",
    host_keys=(
        HostKey("ssh-ed25519", "SHA256:abcDEFghiJKLmnoPQRstuVWXyz0123456789ABCDEFG", "ssh-ed25519 AAAAC3Nza"),
        HostKey("ssh-rsa", "SHA256:zyxWVUtsrQPOnmlKJIhgfEDCba9876543210zyxwvut", ""),
    ),
    sshfs_path="/content",
)

INJECTED = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
HOSTILE = Connection(
    host=f'evil"&host{INJECTED}',
    port=2222,
    user=f"u'&<b>{INJECTED}",
    password=f"pa'ss\"&<>{INJECTED}",
    local_port=22,
    tunnel=f"tun<i>{INJECTED}",
    host_keys=(HostKey(f"kind{INJECTED}", f"SHA256:fp{INJECTED}", f"ssh-ed25519 AAAA{INJECTED}"),),
    sshfs_path=f"/content/x y{INJECTED}",
    proxy_command=f"cloudflared access tcp --hostname %h </pre>{INJECTED}",
    client_hints=(f"brew install thing && echo '{INJECTED}'",),
)


class _Markup(HTMLParser):
    """Every tag and attribute of a fragment, and the text of <script> elements."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False if tag == "script" else self._in_script

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data

    def named(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def copies(self) -> list[str | None]:
        return [attrs.get("data-copy") for attrs in self.named("button")]


def commands(connection: Connection) -> list[str]:
    """What gets a copy button: each command, the password, the config block, the known_hosts lines."""
    found = [connection.ssh_command]
    if connection.password is not None:
        found.append(connection.password)
    found += [connection.sshfs_command, connection.ssh_config]
    return found + ([connection.known_hosts] if connection.known_hosts else [])


# --- the markup ---


def test_the_card_is_one_self_contained_div_with_each_command():
    card = render_html(PLAIN)
    markup = _Markup(card)

    assert card.startswith('<div class="colab-ssh-card">') and card.endswith("</div>")
    assert card == render_html(PLAIN)  # pure: the same markup every time
    assert '<code class="cs-ssh">ssh -p 12345 root@0.tcp.ngrok.io</code>' in card
    assert '<code class="cs-address">0.tcp.ngrok.io:12345</code>' in card
    assert f"<pre>{html.escape(PLAIN.ssh_config)}</pre>" in card
    assert f"<pre>{html.escape(PLAIN.known_hosts)}</pre>" in card
    assert markup.copies() == commands(PLAIN)
    assert [attrs.get("href") for attrs in markup.named("a")] == [
        "vscode://vscode-remote/ssh-remote+colab/content"
    ]
    assert len(markup.named("script")) == 1 and len(markup.named("style")) == 1
    assert markup.named("link") == [] and all("src" not in attrs for _tag, attrs in markup.tags)
    for key in PLAIN.host_keys:
        assert f"<td>{key.kind}</td><td><code>{key.fingerprint}</code></td>" in card


def test_the_password_is_folded_in_a_details_element():
    card = render_html(PLAIN)

    assert (
        '<details class="cs-secret"><summary><span class="cs-show">Show password</span>'
        '<span class="cs-hide">Hide password</span></summary>'
        f'<code class="cs-password">{PLAIN.password}</code></details>'
    ) in card
    assert card.count(PLAIN.password or "") == 2  # the folded text and its copy button's data


def test_key_login_shows_no_password():
    keys_only = Connection("h.example", 22, "root", None, 22, "none")
    card = render_html(keys_only)

    assert "password login is off" in card
    assert "cs-password" not in card and "<details" not in card
    assert _Markup(card).copies() == [keys_only.ssh_command, keys_only.sshfs_command, keys_only.ssh_config]


def test_hostile_strings_are_text_never_markup():
    card = render_html(HOSTILE)
    markup = _Markup(card)

    assert {tag for tag, _attrs in markup.tags} <= {
        "div", "style", "span", "code", "button", "details", "summary", "h4", "pre", "ol", "li", "b",
        "i", "a", "table", "tr", "td", "ul", "script", "wbr",
    }  # fmt: skip
    assert len(markup.named("script")) == 1
    assert markup.scripts[0] == display_module._SCRIPT.removeprefix("<script>").removesuffix("</script>")
    assert all(not name.startswith("on") for _tag, attrs in markup.tags for name in attrs)
    assert markup.copies() == commands(HOSTILE)  # the data attributes give back the exact strings
    assert "<script>window" not in card and "<img" not in card
    (link,) = markup.named("a")
    assert (link["href"] or "").startswith(
        "vscode://vscode-remote/ssh-remote+colab/content/x%20y%3Cscript%3E"
    )


def test_vscode_url_opens_the_sshfs_folder():
    drive = Connection("h", 22, "root", None, 22, "none", sshfs_path="/content/drive/MyDrive")

    assert vscode_url(drive) == "vscode://vscode-remote/ssh-remote+colab/content/drive/MyDrive"


# --- showing it ---


def test_in_a_terminal_the_text_is_printed(capsys):
    assert not in_notebook()

    show_connection(PLAIN)

    assert capsys.readouterr().out == render_details(PLAIN) + "\n"
    assert render_text is render_details


def test_in_a_notebook_both_forms_are_displayed(monkeypatch, capsys):
    shown: list[dict[str, str]] = []
    monkeypatch.setattr(display_module, "in_notebook", lambda: True)
    monkeypatch.setattr(display_module, "notebook_display", lambda bundle, **_options: shown.append(bundle))

    show_connection(PLAIN)

    assert shown == [{"text/html": render_html(PLAIN), "text/plain": render_details(PLAIN)}]
    assert capsys.readouterr().out == ""


def test_suppressed_display_shows_nothing(capsys):
    with connection_display_suppressed():
        show_connection(PLAIN)
    assert capsys.readouterr().out == ""
    show_connection(PLAIN)
    assert capsys.readouterr().out != ""


# --- progress ---


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cold_run_prints_each_step_and_its_time(capsys):
    clock = FakeClock()
    progress = Progress(clock=clock, notebook=False)
    with progress.step("Installing openssh-server (first run only)"):
        clock.now += 12.34
    with progress.step("Downloading the ngrok agent (first run only)"):
        clock.now += 2.0
    clock.now += 0.5
    progress.finish()

    assert capsys.readouterr().out.splitlines() == [
        "Installing openssh-server (first run only) ...",
        "Installing openssh-server (first run only): done in 12.3 s",
        "Downloading the ngrok agent (first run only) ...",
        "Downloading the ngrok agent (first run only): done in 2.0 s",
        "SSH server up in 14.8 s",
    ]
    assert progress.steps == [
        ("Installing openssh-server (first run only)", pytest.approx(12.34)),
        ("Downloading the ngrok agent (first run only)", pytest.approx(2.0)),
    ]


def test_a_warm_run_is_one_line_and_quiet_is_none(capsys):
    clock = FakeClock()
    progress = Progress(clock=clock, notebook=False)
    clock.now += 0.25
    progress.finish()
    assert capsys.readouterr().out == "SSH server up in 0.2 s\n"

    silent = Progress(quiet=True, clock=clock)
    with silent.step("Mounting Google Drive"):
        pass
    silent.finish()
    assert capsys.readouterr().out == ""


def test_a_failed_step_says_so_and_the_error_goes_on(capsys):
    clock = FakeClock()
    progress = Progress(clock=clock, notebook=False)
    with pytest.raises(RuntimeError), progress.step("Mounting Google Drive"):
        clock.now += 3.0
        raise RuntimeError("no consent")

    assert capsys.readouterr().out.splitlines()[-1] == "Mounting Google Drive: failed after 3.0 s"


def test_in_a_notebook_one_output_is_updated_in_place(monkeypatch):
    class Handle:
        def __init__(self) -> None:
            self.bundles: list[dict[str, str]] = []

        def update(self, bundle: dict[str, str], raw: bool) -> None:
            self.bundles.append(bundle)

    handle = Handle()
    created: list[dict[str, str]] = []

    def fake_display(bundle: dict[str, str], *, display_id: bool = False) -> Handle:
        assert display_id
        created.append(bundle)
        return handle

    monkeypatch.setattr(progress_module, "notebook_display", fake_display)
    clock = FakeClock()
    progress = Progress(clock=clock, notebook=True)
    with progress.step("Installing <openssh-server>"):
        clock.now += 1.0
    progress.finish()

    assert len(created) == 1 and len(handle.bundles) == 2
    assert created[0]["text/plain"] == "Installing <openssh-server> ..."
    assert handle.bundles[-1]["text/plain"].splitlines() == [
        "Installing <openssh-server>: done in 1.0 s",
        "SSH server up in 1.0 s",
    ]
    assert "Installing &lt;openssh-server&gt;" in handle.bundles[-1]["text/html"]
    assert "<openssh-server>" not in handle.bundles[-1]["text/html"]


# --- platform ---


def test_platform_detection(tmp_path):
    def no() -> bool:
        return False

    missing = tmp_path / "no-kaggle"

    assert detect_platform({}, colab_importable=no, kaggle_workdir=missing) is Platform.LINUX
    assert (
        detect_platform({"COLAB_RELEASE_TAG": "release-colab_20250101"}, colab_importable=no)
        is Platform.COLAB
    )
    assert detect_platform({}, colab_importable=lambda: True, kaggle_workdir=missing) is Platform.COLAB
    assert (
        detect_platform(
            {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, colab_importable=no, kaggle_workdir=missing
        )
        is Platform.KAGGLE
    )
    assert detect_platform({}, colab_importable=no, kaggle_workdir=tmp_path) is Platform.KAGGLE


def test_the_default_workdir_is_where_the_notebook_keeps_its_files(test_user, monkeypatch, tmp_path):
    monkeypatch.setattr(platform_module, "KAGGLE_WORKDIR", tmp_path)
    home = platform_module.pwd.getpwnam(test_user).pw_dir

    assert default_workdir(Platform.KAGGLE, test_user) == str(tmp_path)
    assert default_workdir(Platform.LINUX, test_user) == home
    assert default_workdir(Platform.LINUX, "no-such-user-here") == "/"


def test_colab_detection_follows_google_colab(colab, monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert detect_platform({}) is Platform.COLAB
    monkeypatch.setitem(os.sys.modules, "google.colab", None)
    assert platform_module._colab_importable() is False


# --- in a real browser ---


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """A folder served on 127.0.0.1 (a secure context, so the clipboard API is there)."""
    folder = tmp_path_factory.mktemp("pages")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


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
        assert page.inner_text(".cs-ssh") == PLAIN.ssh_command
        assert page.inner_text(".cs-sshfs") == PLAIN.sshfs_command
        blocks = page.locator("pre")
        assert [blocks.nth(i).inner_text() for i in range(blocks.count())] == [
            PLAIN.ssh_config,
            PLAIN.known_hosts,
        ]
        text = page.inner_text(".colab-ssh-card")
        assert PLAIN.ssh_command in text and "0.tcp.ngrok.io:12345" in text
        for key in PLAIN.host_keys:
            assert key.fingerprint in text

        password = page.locator(".cs-password")
        assert not password.is_visible()
        assert PLAIN.password not in text
        page.click("summary")
        assert password.is_visible() and password.inner_text() == PLAIN.password
        assert "Hide password" in page.inner_text("summary")

        buttons = page.locator("button.cs-copy")
        assert buttons.count() == len(commands(PLAIN))
        assert all(buttons.nth(i).is_visible() for i in range(buttons.count()))
        for index, expected in [(0, PLAIN.ssh_command), (3, PLAIN.ssh_config)]:
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
        page.click("summary")
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
        page.click("summary")
        assert page.locator(".cs-password").is_visible()
    finally:
        context.close()
