"""The laptop side end to end: the real OpenSSH client, run as a temporary local account.

The "laptop" is an account of its own (useradd, so OpenSSH reads ~/.ssh/config from its passwd
home, not from $HOME) with this distribution installed the way a user installs it: a venv made
by the system's /usr/bin/python3 in that home, and the wheel built from this checkout installed
with pip, offline and without dependencies (the laptop commands need none: no pyngrok, no
IPython). The runtime is ``start_ssh()`` in this process, with key login (the laptop account's
key), ``host_keys_dir=`` (so the alias and the pinned key stay across tunnels) and the ngrok
stand-in (tests/stand_ins/ngrok) as its tunnel.

Each test: ``colab-ssh connect CODE`` as the laptop account, then ``ssh colab true`` with the
managed block's ``StrictHostKeyChecking yes`` logs in (the host key was pinned by connect, so the
first connection is verified too). The tunnel then dies and the runtime's monitor reopens it at
a new port: through a lookup source, ``ssh colab`` works again with no new paste; without one,
``connect`` with the new code updates the block.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

from colab_ssh import Connection, ssh_status, start_ssh, stop_ssh
from colab_ssh.published import ADDRESS_FILE, render_address

from ..support.host import copies_for_other_accounts, have, our_processes, start_published_ngrok
from ..support.stand_ins import (
    STAND_IN_CLOUDFLARED,
    STAND_IN_NGROK,
    TESTS,
    NgrokCloud,
    use_cloudflare_edge,
)

SYSTEM_PYTHON = "/usr/bin/python3"  # what a laptop has; ours lives under /root, closed to others
CHECKOUT = TESTS.parent
RECOVERY_SECONDS = 20


@dataclass(frozen=True)
class Laptop:
    """A local account standing in for the user's laptop, with colab-ssh installed in its venv."""

    user: str
    home: Path
    venv: Path
    public_key: str  # its ~/.ssh/id_ed25519.pub line: the runtime lets it in

    @property
    def config(self) -> Path:
        return self.home / ".ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        return self.home / ".ssh" / "known_hosts"

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "USER": self.user,
            "LOGNAME": self.user,
            "PATH": f"{self.venv / 'bin'}:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **(extra or {}),
        }

    def run(
        self, *argv: str, extra_env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as the laptop account, in its home, with only its own environment."""
        entry = pwd.getpwnam(self.user)
        return subprocess.run(
            list(argv),
            user=entry.pw_uid,
            group=entry.pw_gid,
            extra_groups=[],
            env=self.environment(extra_env),
            cwd=self.home,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def colab_ssh(
        self, *arguments: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(str(self.venv / "bin" / "colab-ssh"), *arguments, extra_env=extra_env)

    def ssh(
        self, *arguments: str, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The real ssh, reading the account's ~/.ssh/config; never a prompt (BatchMode)."""
        return self.run(
            "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", *arguments, extra_env=extra_env
        )

    def end_processes(self) -> None:
        """Its ssh connection masters (ControlPersist) and anything else it left running."""
        subprocess.run(["pkill", "-KILL", "-u", self.user], check=False)
        deadline = time.monotonic() + 10
        while subprocess.run(["pgrep", "-u", self.user], capture_output=True).returncode == 0:
            assert time.monotonic() < deadline, "the laptop account's processes did not end"
            time.sleep(0.1)


def build_wheel(folder: Path) -> Path:
    """This checkout as a wheel, built offline (setuptools and wheel are in the test venv)."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(CHECKOUT / name, source / name)
    shutil.copytree(
        CHECKOUT / "colab_ssh", source / "colab_ssh", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(folder / "dist"), str(source)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = (folder / "dist").glob("colab_ssh_host-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed_laptop(tmp_path_factory) -> Iterator[Laptop]:
    """One laptop account for the module (the venv takes seconds); each test resets its ~/.ssh."""
    wheel = build_wheel(tmp_path_factory.mktemp("wheel"))
    user = f"lap{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", user], check=True)
    try:
        home = Path(pwd.getpwnam(user).pw_dir)
        laptop = Laptop(user, home, home / "venv", "")
        shutil.copy2(wheel, home / wheel.name)
        os.chown(home / wheel.name, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
        for argv in (
            [SYSTEM_PYTHON, "-m", "venv", str(laptop.venv)],
            [
                str(laptop.venv / "bin" / "pip"),
                "install",
                "-q",
                "--no-deps",
                "--no-index",
                str(home / wheel.name),
            ],
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")],
        ):
            done = laptop.run(*argv, timeout=120)
            assert done.returncode == 0, (argv, done.stderr)
        public_key = (home / ".ssh" / "id_ed25519.pub").read_text().strip()
        yield Laptop(user, home, laptop.venv, public_key)
    finally:
        subprocess.run(["pkill", "-KILL", "-u", user], check=False)
        subprocess.run(["userdel", "-f", "-r", user], check=False, capture_output=True)


@pytest.fixture
def laptop(installed_laptop: Laptop) -> Iterator[Laptop]:
    """The laptop account with its key and no ssh config or known_hosts yet."""
    ssh_folder = installed_laptop.home / ".ssh"
    for path in ssh_folder.iterdir():
        if not path.name.startswith("id_ed25519"):
            path.unlink()
    try:
        yield installed_laptop
    finally:
        installed_laptop.end_processes()


@pytest.fixture
def host_keys_dir(tmp_path) -> Path:
    folder = tmp_path / "drive" / "colab-ssh-keys"  # where a notebook keeps them on Drive
    folder.mkdir(parents=True, mode=0o700)
    return folder


def agent_pid(state_dir: Path) -> int:
    """The ngrok agent's pid: the process running the stand-in (its config is in the state folder)."""
    (pid,) = [
        pid for pid in our_processes(state_dir)
        if str(STAND_IN_NGROK).encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    ]  # fmt: skip
    return pid


def reopen_tunnel(state_dir: Path, before: Connection) -> Connection:
    """Kill the ngrok agent; the runtime's monitor opens the tunnel again, at a new port."""
    os.kill(agent_pid(state_dir), signal.SIGKILL)
    deadline = time.monotonic() + RECOVERY_SECONDS
    while True:
        status = ssh_status()
        if status.tunnel_alive and status.connection is not None and status.connection.port != before.port:
            return status.connection
        assert time.monotonic() < deadline, f"the tunnel did not come back: {status}"
        time.sleep(0.2)


def wait_until(condition: Callable[[], bool], seconds: float = RECOVERY_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def eventually(check: Callable[[], subprocess.CompletedProcess[str]], seconds: float = RECOVERY_SECONDS):
    """``check()`` until it exits 0 (a connection master of the dead tunnel may linger a moment)."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def connect(laptop: Laptop, connection: Connection, *arguments: str, extra_env: dict[str, str] | None = None):
    assert connection.connect_code is not None
    done = laptop.colab_ssh("connect", connection.connect_code, *arguments, extra_env=extra_env)
    assert done.returncode == 0, done.stderr
    return done


def block_of(laptop: Laptop, name: str = "colab") -> str:
    text = laptop.config.read_text()
    start = text.index(f"# BEGIN colab-ssh {name}")
    end = text.index(f"# END colab-ssh {name}")
    return text[start:end]


# --- the tests ----------------------------------------------------------------------------------


def test_connect_then_ssh_colab_logs_in_with_the_key_pinned(
    test_user, port, state_dir, host_keys_dir, laptop, ngrok_cloud: NgrokCloud
):
    connection = start_published_ngrok(
        test_user, port, state_dir, host_keys_dir, ngrok_cloud.add_account("tok_lap_1"), laptop.public_key
    )

    connect(laptop, connection)
    login = laptop.ssh("colab", "id -un")

    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == test_user
    block = block_of(laptop)
    assert "StrictHostKeyChecking yes" in block and f"HostKeyAlias {connection.host_key_alias}" in block
    pinned = [line for line in laptop.known_hosts.read_text().splitlines() if line]
    assert pinned == [f"{connection.host_key_alias} {key.public_key}" for key in connection.host_keys]


def test_without_a_source_connect_again_updates_the_address(
    test_user, port, state_dir, host_keys_dir, laptop, ngrok_cloud: NgrokCloud
):
    first = start_published_ngrok(
        test_user, port, state_dir, host_keys_dir, ngrok_cloud.add_account("tok_lap_3"), laptop.public_key
    )
    connect(laptop, first)
    assert laptop.ssh("colab", "true").returncode == 0
    pinned = laptop.known_hosts.read_bytes()

    moved = reopen_tunnel(state_dir, first)
    assert f"Port {first.port}\n" in block_of(laptop)
    stale = laptop.ssh("-o", "ControlPath=none", "colab", "true")  # not through a lingering master
    assert stale.returncode != 0 and "Connection refused" in stale.stderr, stale.stderr
    connect(laptop, moved)

    assert eventually(lambda: laptop.ssh("colab", "true")).returncode == 0
    block = block_of(laptop)
    assert f"Port {moved.port}\n" in block and f"Port {first.port}\n" not in block
    assert "ProxyCommand" not in block  # a plain HostName and Port
    assert moved.connect_code != first.connect_code and moved.host_key_alias == first.host_key_alias
    assert laptop.known_hosts.read_bytes() == pinned  # same keys (host_keys_dir): same lines


def test_sshfs_mounts_through_the_block(
    test_user, port, state_dir, host_keys_dir, laptop, ngrok_cloud, tmp_path
):
    """``sshfs colab:`` with the managed block. sshfs itself runs as root, because here /dev/fuse
    is root's alone (mode 0600 in this container, where a laptop has 0666); its ssh runs as the
    laptop account (sshfs's ssh_command), so that account's config, block and pinned key are what
    connect, exactly as when the user runs sshfs."""
    assert have("sshfs"), "sshfs is installed by .ci/run"
    connection = start_published_ngrok(
        test_user, port, state_dir, host_keys_dir, ngrok_cloud.add_account("tok_lap_4"), laptop.public_key
    )
    server_home = Path(pwd.getpwnam(test_user).pw_dir)
    (server_home / "from-the-runtime.txt").write_text("written on the runtime\n")
    connect(laptop, connection)
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()

    mounted = subprocess.run(
        ["sshfs", "-o", f"ssh_command=runuser -u {laptop.user} -- ssh,BatchMode=yes",
         "colab:", str(mount_point)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    try:
        assert mounted.returncode == 0, mounted.stderr
        assert (mount_point / "from-the-runtime.txt").read_text() == "written on the runtime\n"
        (mount_point / "from-the-laptop.txt").write_text("written on the laptop\n")
        assert (server_home / "from-the-laptop.txt").read_text() == "written on the laptop\n"
    finally:
        unmounted = subprocess.run(["fusermount3", "-u", str(mount_point)], capture_output=True, text=True)
    assert unmounted.returncode == 0, unmounted.stderr
    assert not os.path.ismount(mount_point)


def test_disconnect_removes_exactly_the_block_and_the_pinned_lines(
    test_user, port, state_dir, host_keys_dir, laptop, ngrok_cloud
):
    """The account's own config and known_hosts, byte for byte, once disconnect has run."""
    entry = pwd.getpwnam(laptop.user)
    own_config = b"# mine\r\nHost work\r\n    HostName work.example\r\nInclude ~/.ssh/extra/*\r\n"
    own_known = b"work.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdvcmstZXhhbXBsZS1rZXktYnl0ZXMtMDEyMzQ1\n"
    for path, data in ((laptop.config, own_config), (laptop.known_hosts, own_known)):
        path.write_bytes(data)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        path.chmod(0o600)
    connection = start_published_ngrok(
        test_user, port, state_dir, host_keys_dir, ngrok_cloud.add_account("tok_lap_5"), laptop.public_key
    )
    connect(laptop, connection)
    assert laptop.ssh("colab", "true").returncode == 0
    assert laptop.config.read_bytes() != own_config

    done = laptop.colab_ssh("disconnect")

    assert done.returncode == 0, done.stderr
    assert laptop.config.read_bytes() == own_config
    assert laptop.known_hosts.read_bytes() == own_known
    gone = laptop.ssh("-o", "ControlPath=none", "colab", "true")
    assert gone.returncode != 0 and "colab" in gone.stderr


# --- a new address with no new paste: the lookup sources --------------------------------------


def sync(source: Path, laptop: Laptop) -> Path:
    """What Google Drive for desktop does: a copy of the runtime's host_keys_dir, in the laptop's home."""
    synced = laptop.home / "Google Drive" / "My Drive" / source.name
    shutil.rmtree(synced, ignore_errors=True)
    shutil.copytree(source, synced)
    entry = pwd.getpwnam(laptop.user)
    for path in [laptop.home / "Google Drive", *(laptop.home / "Google Drive").rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return synced


def address_port(folder: Path) -> int:
    return int(json.loads((folder / ADDRESS_FILE).read_text())["port"])


def test_from_a_synced_folder_a_new_address_needs_no_paste(
    test_user, port, state_dir, host_keys_dir, laptop, ngrok_cloud
):
    first = start_published_ngrok(
        test_user, port, state_dir, host_keys_dir, ngrok_cloud.add_account("tok_lap_6"), laptop.public_key
    )
    synced = sync(host_keys_dir, laptop)
    connect(laptop, first, "--from", str(synced))
    assert laptop.ssh("colab", "true").returncode == 0
    config = laptop.config.read_bytes()
    assert f"proxy colab --alias {first.host_key_alias} --from " in block_of(laptop)

    moved = reopen_tunnel(state_dir, first)
    wait_until(lambda: address_port(host_keys_dir) == moved.port)
    sync(host_keys_dir, laptop)
    login = eventually(lambda: laptop.ssh("colab", "id -un"))

    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == test_user
    assert laptop.config.read_bytes() == config  # no new connect, no change
    assert f"Port {first.port}\n" in block_of(laptop)  # the block still names the first address


def test_through_ngroks_api_a_new_address_needs_no_paste(
    test_user, port, state_dir, host_keys_dir, laptop, ngrok_cloud, ngrok_api
):
    """NGROK_API_KEY set where connect runs makes the ngrok API the source; ssh's ProxyCommand
    reads the key from the environment ssh runs in, and it is written nowhere."""
    token = ngrok_cloud.add_account("tok_lap_7")
    first = start_published_ngrok(test_user, port, state_dir, host_keys_dir, token, laptop.public_key)
    api = {"NGROK_API_KEY": ngrok_api.add_key(token), "COLAB_SSH_NGROK_API_URL": ngrok_api.url}
    connect(laptop, first, extra_env=api)
    assert laptop.ssh("colab", "true", extra_env=api).returncode == 0
    config = laptop.config.read_bytes()
    assert f"proxy colab --alias {first.host_key_alias} --ngrok-api %h %p" in block_of(laptop)

    moved = reopen_tunnel(state_dir, first)
    login = eventually(lambda: laptop.ssh("colab", "id -un", extra_env=api))

    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == test_user
    assert laptop.config.read_bytes() == config and moved.port != first.port
    for path in (laptop.home / ".ssh").iterdir():  # files; ssh's connection-sharing sockets aside
        assert not path.is_file() or api["NGROK_API_KEY"].encode() not in path.read_bytes(), path
    assert ngrok_api.failures == []


def test_a_hostile_address_fails_the_host_key_check(
    test_user, port, state_dir, host_keys_dir, laptop, ngrok_cloud, tmp_path
):
    """A source that names our alias but leads to another server (here: a runtime with other host
    keys) gets no login: ssh finds a key that is not the one pinned under the alias."""
    token = ngrok_cloud.add_account("tok_lap_8")
    ours = start_published_ngrok(test_user, port, state_dir, host_keys_dir, token, laptop.public_key)
    synced = sync(host_keys_dir, laptop)
    connect(laptop, ours, "--from", str(synced))
    assert laptop.ssh("colab", "true").returncode == 0
    laptop.end_processes()  # its connection master
    stop_ssh()
    other_keys = tmp_path / "other-keys"
    other_keys.mkdir(mode=0o700)
    other = start_published_ngrok(test_user, port, state_dir, other_keys, token, laptop.public_key)
    assert other.host_key_alias != ours.host_key_alias
    hostile = dataclasses.replace(ours.connect_details, host=other.host, port=other.port)
    (synced / ADDRESS_FILE).write_text(render_address(hostile, datetime.now(timezone.utc)))

    login = laptop.ssh("colab", "true")

    assert login.returncode == 255
    assert "Host key verification failed" in login.stderr, login.stderr


# --- a tunnel whose client needs a program: cloudflared ---------------------------------------


@pytest.fixture
def edge(monkeypatch) -> Iterator[Path]:
    """The cloudflared stand-in plays Cloudflare's edge for both sides: the runtime's agent
    (COLAB_SSH_CLOUDFLARED) and the laptop's ``cloudflared access`` share its state folder, which
    the laptop account must be able to read (pytest's tmp_path is root's alone)."""
    state = use_cloudflare_edge(monkeypatch, Path(tempfile.mkdtemp(prefix="cloudflare-edge-")))
    state.chmod(0o755)
    try:
        yield state
    finally:
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def laptops_cloudflared() -> Iterator[Path]:
    """The cloudflared stand-in where the laptop account can run it (a copy: the checkout's may be
    closed to it)."""
    with copies_for_other_accounts(STAND_IN_CLOUDFLARED) as folder:
        yield folder / STAND_IN_CLOUDFLARED.name


def test_cloudflared_on_the_laptops_path_is_what_the_block_runs(
    test_user, port, state_dir, host_keys_dir, laptop, edge, laptops_cloudflared
):
    connection = start_ssh(
        tunnel="cloudflared", port=port, user=test_user, state_dir=state_dir, public_key=laptop.public_key,
        host_keys_dir=host_keys_dir, quiet=True,
    )  # fmt: skip
    with_cloudflared = {
        "PATH": f"{laptop.venv / 'bin'}:{laptops_cloudflared.parent}:/usr/bin:/bin",
        "CLOUDFLARED_STAND_IN_STATE": str(edge),
    }

    connect(laptop, connection, extra_env=with_cloudflared)
    login = laptop.ssh("colab", "id -un", extra_env=with_cloudflared)

    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == test_user
    block = block_of(laptop)
    assert f"HostName {connection.host}\n" in block
    assert f"ProxyCommand {laptops_cloudflared} access ssh --hostname %h\n" in block


def test_cloudflared_missing_and_no_terminal_to_ask_changes_nothing(
    test_user, port, state_dir, host_keys_dir, laptop, edge
):
    """Not on PATH, not in the cache, and stdin is not a terminal: connect neither downloads nor
    writes anything, and says how to go on (--yes, or the system's own package)."""
    connection = start_ssh(
        tunnel="cloudflared", port=port, user=test_user, state_dir=state_dir, public_key=laptop.public_key,
        host_keys_dir=host_keys_dir, quiet=True,
    )  # fmt: skip

    done = laptop.colab_ssh("connect", connection.connect_code or "")

    assert done.returncode == 1
    assert "--yes" in done.stderr and "cloudflared" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not laptop.config.exists() and not laptop.known_hosts.exists()
    assert not (laptop.home / ".cache").exists()
