"""The managed block as the real OpenSSH client reads it (``ssh -G``: the configuration it would use,
without connecting): every platform's form parses, our values win over the user's ``Host *``, and
every other host's configuration is what it was before the block went in. Logging in through the
block is engineer C's end-to-end test (tests/integration/test_laptop_connect*.py)."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shlex
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path, PurePath, PureWindowsPath

import pytest

import colab_ssh
from colab_ssh.connect_code import encode
from colab_ssh.connection import Connection
from colab_ssh.laptop.ssh_config import Block, render_block, upsert_block

from ..support.cards import PLAIN
from ..support.host import copies_for_other_accounts, home_of
from ..support.laptop_configs import ACCEPTED, CLOUDFLARED_DETAILS, DETAILS


def ssh_g(config: Path, host: str) -> dict[str, list[str]]:
    """``ssh -G -F config host``: each option with its values, as the client resolved them."""
    result = subprocess.run(
        ["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stderr
    options: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value)
    return options


WINDOWS_CLOUDFLARED = "C:\\Users\\Jane Doe\\AppData\\Local\\colab-ssh\\bin\\cloudflared.exe"
FORMS = {
    "linux": Block("colab", DETAILS, "linux", "/home/jane/.ssh/known_hosts", forwards=(6006,)),
    "darwin": Block(
        "gpu",
        DETAILS,
        "darwin",
        "/Users/Jane Doe/.ssh/known_hosts",
        proxy=(
            "/Users/Jane Doe/venv/bin/python",
            *["-m", "colab_ssh", "proxy", "gpu", "--alias", "a", "%h", "%p"],
        ),
    ),
    "windows": Block(
        "colab",
        CLOUDFLARED_DETAILS,
        "windows",
        "C:\\Users\\Jane Doe\\.ssh\\known_hosts",
        proxy=(WINDOWS_CLOUDFLARED, *["access", "ssh", "--hostname", "%h"]),
    ),
}


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_each_platforms_block_parses_with_openssh(tmp_path, form):
    config = tmp_path / "config"
    config.write_bytes(render_block(form, "\r\n" if form.platform == "windows" else "\n").encode())
    options = ssh_g(config, form.name)
    assert options["hostname"] == [form.details.host]
    assert options["port"] == [str(form.details.port)]
    assert options["user"] == ["root"]
    assert options["hostkeyalias"] == ["colab-ssh-abcdef0123"]
    assert options["stricthostkeychecking"] == ["true"]
    written = PureWindowsPath(form.known_hosts) if form.platform == "windows" else PurePath(form.known_hosts)
    assert options["userknownhostsfile"] == [written.as_posix()]  # Win32-OpenSSH reads "/" too
    assert options["serveraliveinterval"] == ["15"]
    if form.platform == "windows":
        assert options["controlmaster"] == ["false"]
        assert options["proxycommand"] == [f'"{WINDOWS_CLOUDFLARED}" access ssh --hostname %h']
    else:
        assert options["controlmaster"] == ["auto"]
        assert options["controlpersist"] == ["600"]
    if form.platform == "darwin":
        assert options["proxycommand"] == [
            "'/Users/Jane Doe/venv/bin/python' -m colab_ssh proxy gpu --alias a %h %p"
        ]
    if form.platform == "linux":
        assert options["localforward"] == ["6006 [localhost]:6006"]


@pytest.mark.parametrize("old", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_our_block_wins_for_colab_and_changes_no_other_host(tmp_path, old):
    before, after = tmp_path / "before", tmp_path / "after"
    before.write_bytes((old or "").encode("utf-8", "surrogateescape"))
    after.write_bytes(upsert_block(old or "", FORMS["linux"]).encode("utf-8", "surrogateescape"))
    colab = ssh_g(after, "colab")
    assert colab["hostname"] == ["0.tcp.eu.ngrok.io"]
    assert colab["user"] == ["root"]  # over a `Host *` that says User nobody
    assert colab["stricthostkeychecking"] == ["true"]  # over a `Host *` that says no
    assert colab["controlmaster"] == ["auto"]
    for host in ("a", "github.com", "other.example", "naïve", "COLAB"):
        assert ssh_g(after, host) == ssh_g(before, host), host


def test_ssh_reads_the_pin_where_connect_wrote_it_over_a_users_known_hosts_file(tmp_path):
    # A `Host *` naming other known_hosts files (a team's shared one, say) would leave ssh without
    # our alias's key, and StrictHostKeyChecking yes would refuse every login.
    pinned = tmp_path / "home dir" / "100%" / ".ssh" / "known_hosts"
    theirs = "/srv/team/known_hosts /etc/ssh/other_hosts"  # ssh -G lists both on one line
    user = f"Host *\n    UserKnownHostsFile {theirs}\n"
    config = tmp_path / "config"
    config.write_text(user)
    assert ssh_g(config, "colab")["userknownhostsfile"] == [theirs]

    config.write_text(upsert_block(user, dataclasses.replace(FORMS["linux"], known_hosts=str(pinned))))
    assert ssh_g(config, "colab")["userknownhostsfile"] == [str(pinned)]
    assert ssh_g(config, "other.example")["userknownhostsfile"] == [theirs]


@pytest.fixture(scope="module")
def package_for_accounts() -> Iterator[Path]:
    """A folder holding a copy of the package under test, for another account's PYTHONPATH (the
    checkout may sit where that account cannot enter)."""
    with copies_for_other_accounts(Path(colab_ssh.__file__).parent) as folder:
        yield folder


def colab_ssh_as(user: str, pythonpath: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``colab-ssh ARGV`` run by ``user`` in a login shell of its own (its passwd home, its umask),
    with the system's python3 and ``pythonpath`` holding the package: no dependency installed, as on
    a laptop where only the laptop commands run."""
    command = ["env", f"PYTHONPATH={pythonpath}", "/usr/bin/python3", "-m", "colab_ssh", *argv]
    return subprocess.run(
        ["su", "-", user, "-c", shlex.join(command)], capture_output=True, text=True, timeout=60, check=False
    )


def test_connect_as_a_real_account_and_an_unwritable_ssh_folder(test_user, package_for_accounts):
    """What tests/unit cannot do as root: a folder its owner cannot write is one line, exit 1, and
    nothing in it changes; once writable, the files are the account's, a new one mode 0600, the
    config with the mode it had."""
    home = home_of(test_user)
    ssh = home / ".ssh"
    ssh.mkdir()
    (ssh / "config").write_text("Host a\n  Port 2\n")
    account = pwd.getpwnam(test_user)
    for path in (ssh, ssh / "config"):
        os.chown(path, account.pw_uid, account.pw_gid)
    ssh.chmod(0o500)
    code = encode(DETAILS)
    refused = colab_ssh_as(test_user, package_for_accounts, "connect", code)
    assert refused.returncode == 1
    assert refused.stderr == (
        f"colab-ssh: error: cannot write {ssh / 'known_hosts'}: permission denied; check who owns"
        f" {ssh} and its mode\n"
    )
    assert sorted(path.name for path in ssh.iterdir()) == ["config"]
    assert (ssh / "config").read_text() == "Host a\n  Port 2\n"
    ssh.chmod(0o700)
    done = colab_ssh_as(test_user, package_for_accounts, "connect", code)
    assert done.returncode == 0, done.stderr
    for name, mode in (("known_hosts", 0o600), ("config", 0o644)):  # new, and the mode it had
        status = (ssh / name).stat()
        assert (status.st_uid, stat.S_IMODE(status.st_mode)) == (account.pw_uid, mode)
    assert stat.S_IMODE((ssh / "config.colab-ssh.bak").stat().st_mode) == 0o600
    assert ssh_g(ssh / "config", "colab")["hostkeyalias"] == ["colab-ssh-abcdef0123"]


def test_the_by_hand_block_with_an_ipv6_zone_id_reads_as_that_address(tmp_path):
    # The tunnel side allows a zone id (tests/unit/test_tunnel_endpoints.py); written raw, ssh stops
    # at the unknown token "%e" of "%eth0" for this host.
    connection = Connection("fe80::1%eth0", 22, "root", None, 22, "none", PLAIN.host_keys)
    config = tmp_path / "config"
    config.write_text(connection.ssh_config + "\n")
    assert ssh_g(config, "colab")["hostname"] == ["fe80::1%eth0"]
