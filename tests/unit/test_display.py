"""The connection card (markup, escaping), progress lines, platform detection: pure rendering.
The card in a real browser is in tests/integration/test_display.py."""

from __future__ import annotations

import html
import io
import os
import re
import threading
from html.parser import HTMLParser

import pytest

from colab_ssh import card as card_module
from colab_ssh import display as display_module
from colab_ssh import platform as platform_module
from colab_ssh import progress as progress_module
from colab_ssh.connect_code import decode
from colab_ssh.connection import Connection, HostKey, render_details
from colab_ssh.display import (
    connection_display_suppressed,
    render_html,
    render_text,
    show_connection,
    vscode_url,
)
from colab_ssh.laptop.ssh_config import Block, render_block
from colab_ssh.platform import Platform, detect_platform, in_notebook
from colab_ssh.progress import Progress

from ..support.cards import HOSTILE, PLAIN, commands


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


def test_the_connect_line_comes_first_and_copies_exactly():
    card = render_html(PLAIN)
    markup = _Markup(card)
    command = PLAIN.connect_command or ""

    assert command == f"colab-ssh connect {PLAIN.connect_code}"
    assert markup.copies()[0] == command
    assert '<div class="cs-label">on your laptop</div>' in card
    assert card.index('class="cs-connect"') < card.index('class="cs-ssh"')
    assert f'<code class="cs-connect">{command}</code>' in card


def test_the_code_carries_the_connection_and_never_the_password():
    code = PLAIN.connect_code or ""
    details = decode(code)

    assert details == PLAIN.connect_details
    assert (details.host, details.port) == ("0.tcp.ngrok.io", 12345)
    assert (details.user, details.tunnel) == ("root", "ngrok")
    assert details.host_key_alias == PLAIN.host_key_alias
    assert details.host_keys == (PLAIN.host_keys[0].public_key,)  # the RSA one has no public key here
    assert (PLAIN.password or "") not in code and len(code) < 400


def test_the_manual_setup_is_folded_below_the_connect_line():
    card = render_html(PLAIN)
    manual = card[card.index('<details class="cs-manual">') :]

    assert f"<pre>{html.escape(PLAIN.ssh_config)}</pre>" in manual
    assert f"<pre>{html.escape(PLAIN.known_hosts)}</pre>" in manual
    assert "Run the line <i>on your laptop</i> above" in card
    assert card.index('<details class="cs-manual">') > card.index('class="cs-connect"')


def test_the_by_hand_block_is_the_managed_blocks_options_for_pasting():
    """The same options `colab-ssh connect` writes (one renderer of each line), without markers or
    the pin's StrictHostKeyChecking and UserKnownHostsFile, and with the Windows note instead of a
    per-platform form."""
    assert PLAIN.ssh_config == (
        "Host colab\n"
        "    HostName 0.tcp.ngrok.io\n"
        "    Port 12345\n"
        "    User root\n"
        "    HostKeyAlias colab-ssh-szvynbzzge\n"
        "    ServerAliveInterval 15\n"
        "    ServerAliveCountMax 4\n"
        "    # Windows' OpenSSH has no connection sharing: drop the next three lines there.\n"
        "    ControlMaster auto\n"
        "    ControlPath ~/.ssh/colab-%C\n"
        "    ControlPersist 10m"
    )
    managed = render_block(Block("colab", PLAIN.connect_details, "linux", "/k")).splitlines()
    by_hand = [line for line in PLAIN.ssh_config.splitlines() if not line.lstrip().startswith("#")]
    own = ("StrictHostKeyChecking", "UserKnownHostsFile")  # the managed block's own: it pinned the key
    assert by_hand == [line for line in managed[1:-2] if not line.lstrip().startswith(own)]


def test_a_connection_a_code_cannot_carry_shows_the_manual_setup_open():
    """A tunnel of the caller's own with a client command colab-ssh does not run: no code, and the
    config block is there unfolded, as before connection codes."""
    own = Connection(
        "relay.example", 2200, "root", None, 22, "mine", host_keys=PLAIN.host_keys, proxy_command="nc %h %p"
    )
    card = render_html(own)

    assert own.connect_code is None and own.connect_command is None
    assert 'class="cs-connect"' not in card and '<details class="cs-manual">' not in card
    assert "colab-ssh connect" not in card
    assert f"<pre>{html.escape(own.ssh_config)}</pre>" in card
    assert "Add the block below to <code>~/.ssh/config</code>." in card
    assert _Markup(card).copies() == commands(own)
    assert "colab-ssh connect" not in render_details(own)


def test_the_text_starts_with_the_connect_line():
    text = render_details(PLAIN)
    lines = text.splitlines()

    assert lines[:5] == [
        "SSH server is up.",
        "",
        "On your laptop (with this package installed there too: pip or pipx, as in the notebook), run:",
        "",
        f"  {PLAIN.connect_command}",
    ]
    assert text.index(PLAIN.connect_command or "") < text.index(PLAIN.ssh_command)
    assert "By hand instead, the ~/.ssh/config block:" in text
    assert text.count("colab-ssh connect") == 1


def test_the_code_follows_the_host_keys_and_the_address():
    moved = Connection("5.tcp.eu.ngrok.io", 23456, "root", "pw", 22, "ngrok", host_keys=PLAIN.host_keys[:1])
    rekeyed_blob = "AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    rekeyed = Connection(
        "0.tcp.ngrok.io", 12345, "root", "pw", 22, "ngrok",
        host_keys=(HostKey("ssh-ed25519", "SHA256:other", f"ssh-ed25519 {rekeyed_blob}"),),
    )  # fmt: skip

    assert decode(moved.connect_code or "").port == 23456
    assert decode(moved.connect_code or "").host_key_alias == PLAIN.host_key_alias
    assert decode(rekeyed.connect_code or "").host_keys == (f"ssh-ed25519 {rekeyed_blob}",)
    assert decode(rekeyed.connect_code or "").host_key_alias != PLAIN.host_key_alias


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
    assert markup.scripts[0] == card_module._SCRIPT.removeprefix("<script>").removesuffix("</script>")
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
        "Installing openssh-server (first run only) ... (at +0.0 s)",
        "Installing openssh-server (first run only): done in 12.3 s (started at +0.0 s)",
        "Downloading the ngrok agent (first run only) ... (at +12.3 s)",
        "Downloading the ngrok agent (first run only): done in 2.0 s (started at +12.3 s)",
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

    assert capsys.readouterr().out.splitlines()[-1] == (
        "Mounting Google Drive: failed after 3.0 s (started at +0.0 s)"
    )


def test_overlapping_steps_say_when_each_started_and_end_in_the_order_they_end(capsys):
    """Side by side, durations do not add up: each line says when its step started."""
    clock = FakeClock()
    progress = Progress(clock=clock, notebook=False)
    install = progress.step("Installing openssh-server (first run only)")
    download = progress.step("Downloading the ngrok agent (first run only)")
    install.__enter__()
    clock.now += 0.5
    download.__enter__()
    clock.now += 2.0
    download.__exit__(None, None, None)
    clock.now += 9.8
    install.__exit__(None, None, None)
    clock.now += 0.4
    progress.finish()

    assert capsys.readouterr().out.splitlines() == [
        "Installing openssh-server (first run only) ... (at +0.0 s)",
        "Downloading the ngrok agent (first run only) ... (at +0.5 s)",
        "Downloading the ngrok agent (first run only): done in 2.0 s (started at +0.5 s)",
        "Installing openssh-server (first run only): done in 12.3 s (started at +0.0 s)",
        "SSH server up in 12.7 s",  # not 14.3: the download ran during the install
    ]
    (first, second) = progress.records
    assert (first.start, first.end) == (0.0, pytest.approx(12.3))
    assert (second.start, second.end) == (pytest.approx(0.5), pytest.approx(2.5))


def test_steps_reported_from_many_threads_come_out_whole_and_each_start_before_its_end():
    """Start steps report from their own threads; the lock keeps lines whole and records right."""
    stream = io.StringIO()
    progress = Progress(stream=stream)
    titles = [f"Step {number}" for number in range(16)]
    barrier = threading.Barrier(len(titles))

    def run(title: str) -> None:
        barrier.wait()  # all at once
        for _ in range(20):
            with progress.step(title):
                pass

    threads = [threading.Thread(target=run, args=(title,)) for title in titles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 * 16 * 20 and len(progress.records) == 16 * 20
    assert all(record.elapsed is not None and not record.failed for record in progress.records)
    running = dict.fromkeys(titles, 0)
    for line in lines:  # whole lines only, and never a step's end before its start
        found = re.fullmatch(
            r"(Step \d+)(?: \.\.\. \(at \+\d+\.\d s\)|(: done in \d+\.\d s \(started at \+\d+\.\d s\)))", line
        )
        assert found is not None, line
        title, end = found.groups()
        running[title] += 1 if end is None else -1
        assert running[title] >= 0, line
    assert set(running.values()) == {0}


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
    assert created[0]["text/plain"] == "Installing <openssh-server> ... (at +0.0 s)"
    assert handle.bundles[-1]["text/plain"].splitlines() == [
        "Installing <openssh-server>: done in 1.0 s (started at +0.0 s)",
        "SSH server up in 1.0 s",
    ]
    assert "Installing &lt;openssh-server&gt;" in handle.bundles[-1]["text/html"]
    assert "<openssh-server>" not in handle.bundles[-1]["text/html"]


def test_in_a_notebook_each_step_has_a_bar_on_one_time_line(monkeypatch):
    """The bars share one scale, from the start to now: overlapping steps show it at a glance."""
    shown: list[dict[str, str]] = []

    class Handle:
        def update(self, bundle: dict[str, str], raw: bool) -> None:
            shown.append(bundle)

    def fake_display(bundle: dict[str, str], *, display_id: bool = False) -> Handle:
        shown.append(bundle)
        return Handle()

    monkeypatch.setattr(progress_module, "notebook_display", fake_display)
    clock = FakeClock()
    progress = Progress(clock=clock, notebook=True)
    drive = progress.step("Mounting Google Drive")
    drive.__enter__()
    clock.now += 2.0
    with progress.step("Installing openssh-server (first run only)"):
        clock.now += 6.0
    clock.now += 2.0  # 10 s in: Drive still waits for the consent
    progress.finish()

    markup = shown[-1]["text/html"]
    styles = [attributes.get("style") or "" for name, attributes in _Markup(markup).tags if name == "span"]
    bars = [style for style in styles if "left:" in style]
    assert len(bars) == 2
    assert "left:0.0%;width:100.0%" in bars[0]  # Drive: from 0 s, still running at 10 s
    assert "left:20.0%;width:60.0%" in bars[1]  # the install: from 2 s to 8 s of 10
    assert "from +2.0 s" in markup and "6.0 s" in markup
    assert "Mounting Google Drive ... (at +0.0 s)" in shown[-1]["text/plain"]


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


def test_colab_detection_follows_google_colab(colab, monkeypatch):
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert detect_platform({}) is Platform.COLAB
    monkeypatch.setitem(os.sys.modules, "google.colab", None)
    assert platform_module._colab_importable() is False
