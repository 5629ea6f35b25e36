"""The laptop's managed ssh config block and known_hosts lines, as text: the exact block per platform,
and a table of existing config files in which every byte outside our block stays as it was (and the
ones we refuse stay whole)."""

# ruff: noqa: E501  (the blocks are checked as exact text, long lines included)
from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac

import pytest

from colab_ssh.connect_code import ConnectCodeError
from colab_ssh.laptop import known_hosts
from colab_ssh.laptop.ssh_config import (
    Block,
    ConfigError,
    aliases_in_use,
    known_hosts_option,
    managed_alias,
    quote_command,
    remove_block,
    render_block,
    upsert_block,
)

from ..support.laptop_configs import (
    ACCEPTED,
    CLOUDFLARED_DETAILS,
    DETAILS,
    KEY,
    KEY_2,
    REFUSED,
    begin_line,
    outside,
)

BLOCK = Block(name="colab", details=DETAILS, platform="linux", known_hosts="/home/jane/.ssh/known_hosts")


# --- the block, exactly --------------------------------------------------------------------------

LINUX_BLOCK = """\
# BEGIN colab-ssh colab (managed by `colab-ssh connect`; edits here are lost)
Host colab
    HostName 0.tcp.eu.ngrok.io
    Port 12345
    User root
    HostKeyAlias colab-ssh-abcdef0123
    StrictHostKeyChecking yes
    UserKnownHostsFile "/home/jane/.ssh/known_hosts"
    ServerAliveInterval 15
    ServerAliveCountMax 4
    ControlMaster auto
    ControlPath ~/.ssh/colab-%C
    ControlPersist 10m
Match all
# END colab-ssh colab
"""

MACOS_BLOCK = """\
# BEGIN colab-ssh gpu (managed by `colab-ssh connect`; edits here are lost)
Host gpu
    HostName 0.tcp.eu.ngrok.io
    Port 12345
    User root
    HostKeyAlias colab-ssh-abcdef0123
    StrictHostKeyChecking yes
    UserKnownHostsFile "/Users/Jane Doe/.ssh/known_hosts"
    ProxyCommand '/Users/Jane Doe/.local/pipx/venvs/colab-ssh-host/bin/python' -m colab_ssh proxy gpu --alias colab-ssh-abcdef0123 --from '/Users/Jane Doe/Library/CloudStorage/GoogleDrive-jane@example.com/My Drive/colab-ssh' %h %p
    LocalForward 6006 localhost:6006
    LocalForward 8888 localhost:8888
    ServerAliveInterval 15
    ServerAliveCountMax 4
    ControlMaster auto
    ControlPath ~/.ssh/colab-%C
    ControlPersist 10m
Match all
# END colab-ssh gpu
"""

WINDOWS_BLOCK = """\
# BEGIN colab-ssh colab (managed by `colab-ssh connect`; edits here are lost)\r
Host colab\r
    HostName humble-yellow-bright-garden.trycloudflare.com\r
    Port 22\r
    User root\r
    HostKeyAlias colab-ssh-abcdef0123\r
    StrictHostKeyChecking yes\r
    UserKnownHostsFile "C:/Users/Jane Doe/.ssh/known_hosts"\r
    ProxyCommand "C:\\Program Files\\Python312\\python.exe" -m colab_ssh proxy colab --alias colab-ssh-abcdef0123 --from "G:\\My Drive\\colab-ssh" --client "C:\\Users\\Jane Doe\\AppData\\Local\\colab-ssh\\bin\\cloudflared.exe" %h %p\r
    ServerAliveInterval 15\r
    ServerAliveCountMax 4\r
Match all\r
# END colab-ssh colab\r
"""


def test_the_linux_block():
    assert render_block(BLOCK) == LINUX_BLOCK


def test_the_macos_block_with_a_lookup_and_forwards():
    block = Block(
        name="gpu",
        details=DETAILS,
        platform="darwin",
        known_hosts="/Users/Jane Doe/.ssh/known_hosts",
        proxy=(
            "/Users/Jane Doe/.local/pipx/venvs/colab-ssh-host/bin/python",
            "-m",
            "colab_ssh",
            "proxy",
            "gpu",
            "--alias",
            "colab-ssh-abcdef0123",
            "--from",
            "/Users/Jane Doe/Library/CloudStorage/GoogleDrive-jane@example.com/My Drive/colab-ssh",
            "%h",
            "%p",
        ),
        forwards=(6006, 8888),
    )
    assert render_block(block) == MACOS_BLOCK


def test_the_windows_block_has_no_connection_sharing_and_quotes_program_paths():
    proxy = (
        "C:\\Program Files\\Python312\\python.exe",
        *("-m", "colab_ssh", "proxy", "colab", "--alias", "colab-ssh-abcdef0123"),
        *("--from", "G:\\My Drive\\colab-ssh"),
        *("--client", "C:\\Users\\Jane Doe\\AppData\\Local\\colab-ssh\\bin\\cloudflared.exe"),
        *("%h", "%p"),
    )
    block = Block(
        name="colab",
        details=CLOUDFLARED_DETAILS,
        platform="windows",
        known_hosts="C:\\Users\\Jane Doe\\.ssh\\known_hosts",
        proxy=proxy,
    )
    assert render_block(block, "\r\n") == WINDOWS_BLOCK


@pytest.mark.parametrize(
    ("path", "platform", "expected"),
    [
        ("/home/u/100%/.ssh/known_hosts", "linux", 'UserKnownHostsFile "/home/u/100%%/.ssh/known_hosts"'),
        (
            "C:\\Users\\a b\\.ssh\\known_hosts",
            "windows",
            'UserKnownHostsFile "C:/Users/a b/.ssh/known_hosts"',
        ),
    ],
)
def test_the_known_hosts_file_is_written_for_ssh_to_read_back(path, platform, expected):
    assert known_hosts_option(path, platform) == expected


@pytest.mark.parametrize(
    "path", ['/home/a"b/.ssh/known_hosts', "/home/a\\b/k", "/home/${X}/k", "/home/a\nb/k", ""]
)
def test_a_known_hosts_path_ssh_config_cannot_quote_is_refused(path):
    with pytest.raises(ConfigError, match=r"^cannot write .* into UserKnownHostsFile"):
        known_hosts_option(path, "linux")


@pytest.mark.parametrize(
    ("argv", "platform", "expected"),
    [
        (["/opt/py 3/python", "-m", "x", "%h"], "linux", "'/opt/py 3/python' -m x %h"),
        (["/usr/bin/python3", "a'b", "%p"], "darwin", "/usr/bin/python3 'a'\"'\"'b' %p"),
        (["/home/u/100%/python", "%h"], "linux", "/home/u/100%%/python %h"),
        (["C:\\py\\python.exe", "C:\\x y\\", "%h"], "windows", '"C:\\py\\python.exe" "C:\\x y\\\\" %h'),
        (["C:\\py\\python.exe", "a%b"], "windows", '"C:\\py\\python.exe" a%%b'),
        (
            ["cloudflared", "access", "ssh", "--hostname", "%h"],
            "windows",
            '"cloudflared" access ssh --hostname %h',
        ),
    ],
)
def test_proxy_commands_are_quoted_for_each_platform(argv, platform, expected):
    assert quote_command(argv, platform) == expected


@pytest.mark.parametrize(
    ("argv", "platform"),
    [(["/a\nb"], "linux"), (['C:\\a"b.exe'], "windows"), (["python", ""], "linux"), (["x\x00"], "darwin")],
)
def test_a_word_no_proxy_command_can_hold_is_refused(argv, platform):
    with pytest.raises(ConfigError, match=r"cannot write .* into a ProxyCommand line"):
        quote_command(argv, platform)


@pytest.mark.parametrize(
    "name", ["two words", "col*", "c?lab", "!colab", "-oProxyCommand", "a\nb", "", "a#b"]
)
def test_a_name_with_spaces_or_wildcards_is_refused(name):
    with pytest.raises(ConfigError, match=r"is not one word: use letters, digits, .* e\.g\. --name colab-2"):
        upsert_block("", dataclasses.replace(BLOCK, name=name))


def test_details_are_checked_again_before_rendering():
    bad = dataclasses.replace(DETAILS, host="evil\n    ProxyCommand touch /tmp/x")
    with pytest.raises(ConnectCodeError, match="is not a host name"):
        render_block(dataclasses.replace(BLOCK, details=bad))


# --- the table: existing config files ------------------------------------------------------------


@pytest.mark.parametrize("old", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_every_byte_outside_our_block_stays(old):
    text = old if old is not None else ""
    new = upsert_block(text, BLOCK)
    assert outside(new) == outside(text)
    newline = "\r\n" if "\r\n" in text else "\n"
    rendered = render_block(BLOCK, newline)
    assert new.count("# BEGIN colab-ssh colab ") == 1
    if not text.endswith("\n") and "# END colab-ssh colab" in text.rstrip()[-30:]:
        assert new.endswith(rendered.removesuffix(newline))  # the file still ends without a newline
    else:
        assert rendered in new
    if "# BEGIN colab-ssh colab " not in text:
        assert new.startswith(rendered)  # first: ssh_config is first-match
    else:
        assert begin_line(new) == begin_line(text)  # in place
    assert upsert_block(new, BLOCK) == new  # running connect again changes nothing
    removed = remove_block(new, "colab")
    assert removed == outside(text)
    if "# BEGIN colab-ssh colab " not in text:
        assert removed == text  # connect then disconnect: the file as it was


@pytest.mark.parametrize(("old", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_a_config_we_cannot_change_safely_is_refused_with_the_fix(old, message):
    with pytest.raises(ConfigError, match=message) as refused:
        upsert_block(old, BLOCK, "/home/jane/.ssh/config")
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith("/home/jane/.ssh/config")


def test_the_table_is_at_least_fifteen_files():
    assert len(ACCEPTED) + len(REFUSED) >= 15


def test_a_foreign_host_under_another_name_is_fine_with_name():
    text = "Host colab\n  HostName mine.example\n"
    new = upsert_block(text, dataclasses.replace(BLOCK, name="colab-2"))
    assert outside(new, "colab-2") == text
    assert "Host colab-2\n" in new


def test_remove_leaves_other_names_and_without_a_block_changes_nothing():
    both = upsert_block(upsert_block("Host a\n", BLOCK), dataclasses.replace(BLOCK, name="gpu"))
    assert remove_block(both, "colab") == upsert_block("Host a\n", dataclasses.replace(BLOCK, name="gpu"))
    assert remove_block("Host a\n", "colab") == "Host a\n"
    assert aliases_in_use(both) == {"gpu": "colab-ssh-abcdef0123", "colab": "colab-ssh-abcdef0123"}
    assert managed_alias(both, "gpu") == "colab-ssh-abcdef0123"
    assert managed_alias("Host a\n", "gpu") is None


# --- known_hosts -------------------------------------------------------------------------------


def hashed(name: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def test_known_hosts_replaces_only_the_alias_lines():
    alias = "colab-ssh-abcdef0123"
    others = (
        "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
        f"{alias},other.example {KEY}\n"  # names the alias among others: the user's line, kept
        f"@cert-authority {alias} {KEY}\n"
        f"{hashed('other.example')} {KEY}\n"
        "# a comment\n"
    )
    old = f"{alias} {KEY_2}\n" + others + f"{hashed(alias)} {KEY_2}\n[{alias}]:22 {KEY}\n"
    new = known_hosts.replace_alias(old, alias, (KEY, KEY_2))
    assert new == f"{alias} {KEY}\n{alias} {KEY_2}\n" + others + f"[{alias}]:22 {KEY}\n"
    assert known_hosts.remove_alias(new, alias) == others + f"[{alias}]:22 {KEY}\n"


def test_known_hosts_pins_go_first_and_come_out_exactly():
    for old in ("", "a.example ssh-ed25519 AAAA\r\nb ssh-rsa AAAA\r\n", "no final newline ssh-rsa AAAA"):
        new = known_hosts.replace_alias(old, "colab-ssh-x", (KEY,))
        newline = "\r\n" if "\r\n" in old else "\n"
        assert new == f"colab-ssh-x {KEY}{newline}" + old
        assert known_hosts.remove_alias(new, "colab-ssh-x") == old


def test_known_hosts_refuses_a_bad_alias_or_key():
    with pytest.raises(ConnectCodeError):
        known_hosts.replace_alias("", "a b", (KEY,))
    with pytest.raises(ConnectCodeError):
        known_hosts.replace_alias("", "colab-ssh-x", ("ssh-ed25519 AAAA\nevil",))
