"""Only the chosen account logs in, on loopback only behind a tunnel; the password is put back at stop;
no secret shows in a repr or a traceback with its locals. A real sshd and the real OpenSSH client."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from colab_ssh import (
    Connection,
    InvalidArgumentError,
    SshStatus,
    TunnelError,
    start_ssh,
    start_steps,
    stop_ssh,
)
from colab_ssh import request as request_module
from colab_ssh.options import StartOptions, check_request
from colab_ssh.paths import Paths
from colab_ssh.supervisor_state import Secrets
from colab_ssh.system import local_address, read_password_hash
from colab_ssh.tunnels import Endpoint
from colab_ssh.tunnels.direct import DirectTunnel

from ..support.host import ClientKey, SshClient, home_of

SHADOW = Path("/etc/shadow")
OTHER_PASSWORD = "other-account-pw-1"  # a throw-away account's
ROOT_PASSWORD = "root-for-one-test-1"  # put back right after


def start_local(user: str, port: int, state_dir: Path, **options: object) -> Connection:
    return start_ssh(tunnel="none", port=port, user=user, state_dir=state_dir, quiet=True, **options)


@contextlib.contextmanager
def account(*useradd_options: str, password: str | None = None) -> Iterator[str]:
    """A throw-away local account made with useradd (and chpasswd), removed afterwards."""
    name = f"cso{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", *useradd_options, name], check=True, capture_output=True)
    try:
        if password is not None:
            subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "-f", "-r", name], check=False, capture_output=True)


@pytest.fixture
def other_user() -> Iterator[str]:
    """A second account with a password of its own and a shell: the hostile neighbour."""
    with account("-m", "-s", "/bin/bash", password=OTHER_PASSWORD) as name:
        yield name


@pytest.fixture
def root_with_password_and_key(client_key: ClientKey) -> Iterator[None]:
    """Root gets a known password and our client key for one test; both are put back afterwards."""
    old_hash = read_password_hash(SHADOW, "root")
    keys_file = Path("/root/.ssh/authorized_keys")
    old_keys = keys_file.read_bytes() if keys_file.exists() else None
    keys_file.parent.mkdir(mode=0o700, exist_ok=True)
    subprocess.run(["chpasswd"], input=f"root:{ROOT_PASSWORD}\n", text=True, check=True)
    keys_file.write_bytes((old_keys or b"") + client_key.public_line.encode() + b"\n")
    try:
        yield
    finally:
        subprocess.run(["chpasswd", "-e"], input=f"root:{old_hash}\n", text=True, check=True)
        if old_keys is None:
            keys_file.unlink()
        else:
            keys_file.write_bytes(old_keys)


def give_key(user: str, key: ClientKey) -> None:
    ssh_dir = home_of(user) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(key.public_line + "\n")
    subprocess.run(["chown", "-R", f"{user}:", str(ssh_dir)], check=True)


def as_user(connection: Connection, user: str) -> Connection:
    return Connection(
        host=connection.host,
        port=connection.port,
        user=user,
        password=None,
        local_port=connection.port,
        tunnel="none",
    )


# --- only the requested user logs in -------------------------------------------------------------


@pytest.mark.usefixtures("root_with_password_and_key")
def test_password_mode_lets_in_the_chosen_user_only(
    test_user, other_user, port, state_dir, ssh: SshClient, client_key
):
    connection = start_local(test_user, port, state_dir)

    chosen = ssh.run(connection, "id -un")
    other = ssh.run(as_user(connection, other_user), "id -un", password=OTHER_PASSWORD)
    root = ssh.run(as_user(connection, "root"), "id -un", password=ROOT_PASSWORD)
    root_by_key = ssh.run_with_key(as_user(connection, "root"), "id -un", client_key.private)

    assert (chosen.returncode, chosen.stdout.strip()) == (0, test_user), chosen.stderr
    for refused in (other, root, root_by_key):
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
        assert refused.stdout == ""


@pytest.mark.usefixtures("root_with_password_and_key")
def test_key_mode_lets_in_the_chosen_user_only(
    test_user, other_user, port, state_dir, ssh: SshClient, client_key: ClientKey
):
    connection = start_local(test_user, port, state_dir, public_key=client_key.public_line)
    give_key(other_user, client_key)  # the same key would open every account that lists it

    chosen = ssh.run_with_key(connection, "id -un", client_key.private)
    other = ssh.run_with_key(as_user(connection, other_user), "id -un", client_key.private)
    other_by_password = ssh.run(as_user(connection, other_user), "id -un", password=OTHER_PASSWORD)
    root = ssh.run_with_key(as_user(connection, "root"), "id -un", client_key.private)

    assert (chosen.returncode, chosen.stdout.strip()) == (0, test_user), chosen.stderr
    for refused in (other, other_by_password, root):
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
        assert refused.stdout == ""


# --- accounts that cannot or must not log in -------------------------------------------------------


@pytest.mark.parametrize(
    ("useradd_options", "message"),
    [
        (("-r", "-m", "-s", "/bin/bash"), "is a system account"),
        (("-m", "-s", "/usr/sbin/nologin"), "cannot log in: its shell is /usr/sbin/nologin"),
        (("-m", "-s", "/bin/false"), "cannot log in: its shell is /bin/false"),
        (("-M", "-s", "/bin/bash"), "has no home folder"),
    ],
    ids=["system account", "nologin shell", "false shell", "no home folder"],
)
def test_accounts_that_cannot_log_in_are_refused_and_left_unchanged(
    useradd_options, message, port, state_dir
):
    with account(*useradd_options) as name:
        before = read_password_hash(SHADOW, name)

        with pytest.raises(InvalidArgumentError, match=message):
            start_local(name, port, state_dir)

        assert read_password_hash(SHADOW, name) == before
        assert not (state_dir / "sshd_config").exists()


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("nobody", "placeholder account"),
        ("sshd", "sshd' cannot log in|is a system account"),
        ("ro\0ot", "not an account name"),
        ("root\n", "not an account name"),
        ("*", "not an account name"),
        ("root@evil", "not an account name"),
        ("a b", "not an account name"),
    ],
)
def test_account_names_are_checked(user, message):
    with pytest.raises(InvalidArgumentError, match=message):
        request_module.check_login_user(user)


def test_the_uid_rule_follows_login_defs(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# people's accounts start here\nUID_MIN\t\t 60001\n")
    with account("-m", "-s", "/bin/bash") as person:
        assert request_module.check_login_user(person).pw_name == person  # UID_MIN 1000 in the real file

        with pytest.raises(InvalidArgumentError, match="system account"):
            request_module.check_login_user(person, login_defs=defs)
    assert request_module.check_login_user("root", login_defs=defs).pw_uid == 0


# --- where sshd listens ----------------------------------------------------------------------------


@dataclass
class LocalTunnel:
    """A tunnel object as a plugin would write one: the traffic reaches sshd through loopback."""

    name: str = "plugin"
    is_open: bool = False
    fail_with: Exception | None = None

    def open(self, local_port: int) -> Endpoint:
        if self.fail_with is not None:
            raise self.fail_with
        self.is_open = True
        return Endpoint("127.0.0.1", local_port)

    def alive(self) -> bool:
        return self.is_open

    def close(self) -> None:
        self.is_open = False


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5) as connection:
            return connection.recv(4).startswith(b"SSH-")
    except OSError:
        return False


@pytest.fixture
def machine_address() -> str:
    address = local_address()
    if address.startswith("127."):
        pytest.skip("this machine has no address but loopback")
    return address


def test_behind_a_tunnel_sshd_listens_on_loopback_only(test_user, port, state_dir, machine_address):
    start_ssh(tunnel=LocalTunnel(), port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert answers("127.0.0.1", port)
    assert not answers(machine_address, port)
    assert "ListenAddress 127.0.0.1" in (state_dir / "sshd_config").read_text().splitlines()


def test_without_a_tunnel_sshd_listens_on_every_interface(test_user, port, state_dir, machine_address):
    start_local(test_user, port, state_dir)

    assert answers("127.0.0.1", port) and answers(machine_address, port)
    assert "ListenAddress" not in (state_dir / "sshd_config").read_text()


# --- the password is put back at stop --------------------------------------------------------------


def start_in_another_process(user: str, port: int, state_dir: Path, **options: object) -> None:
    """start_ssh() in a process that then exits (a notebook restart): its sshd keeps running."""
    script = (
        "from colab_ssh import start_ssh;"
        f"start_ssh(tunnel='none', port={port}, user={user!r}, state_dir={str(state_dir)!r}, quiet=True,"
        f" monitor_interval=None, **{options!r})"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


@pytest.mark.parametrize("earlier", ["locked", "a password of its own"])
def test_stop_puts_the_previous_password_back_even_from_another_process(earlier, test_user, port, state_dir):
    if earlier != "locked":
        subprocess.run(["chpasswd"], input=f"{test_user}:its-own-password-1\n", text=True, check=True)
    before = read_password_hash(SHADOW, test_user)
    start_in_another_process(test_user, port, state_dir)
    assert read_password_hash(SHADOW, test_user) != before
    record = Paths(state_dir=state_dir).password_record
    assert record.stat().st_mode & 0o777 == 0o600 and record.stat().st_uid == 0

    stop_ssh(state_dir=state_dir)

    assert read_password_hash(SHADOW, test_user) == before
    assert not record.exists()


def test_stop_undoes_the_unlock_for_key_login(test_user, port, state_dir, client_key: ClientKey):
    before = read_password_hash(SHADOW, test_user)
    assert before is not None and before.startswith("!")  # useradd leaves new accounts locked
    start_local(test_user, port, state_dir, public_key=client_key.public_line)
    assert read_password_hash(SHADOW, test_user) == "*"

    stop_ssh(state_dir=state_dir)

    assert read_password_hash(SHADOW, test_user) == before


def test_a_rerun_records_the_accounts_own_hash_not_ours(test_user, port, state_dir):
    before = read_password_hash(SHADOW, test_user)
    start_in_another_process(test_user, port, state_dir, password="a-first-password-1")
    start_in_another_process(test_user, port, state_dir, password="a-second-password-1")
    start_local(test_user, port, state_dir)
    start_local(test_user, port, state_dir, password="a-third-password-1")  # replaces the session

    stop_ssh(state_dir=state_dir)

    assert read_password_hash(SHADOW, test_user) == before


def test_a_password_changed_since_start_is_left_alone(test_user, port, state_dir):
    start_local(test_user, port, state_dir)
    subprocess.run(["chpasswd"], input=f"{test_user}:changed-by-its-owner-1\n", text=True, check=True)
    changed = read_password_hash(SHADOW, test_user)

    stop_ssh(state_dir=state_dir)

    assert read_password_hash(SHADOW, test_user) == changed


@pytest.mark.parametrize("password", ["        ", " leading-space-1", "trailing-space-1 ", "\tinside-tab-1"])
def test_blank_or_padded_passwords_are_refused(password, test_user, state_dir):
    with pytest.raises(InvalidArgumentError, match=r"space|control character"):
        start_local(test_user, 2222, state_dir, password=password)
    assert not (state_dir / "sshd_config").exists()


# --- no secret in a repr or a traceback --------------------------------------------------------------

PASSWORD = "never-in-a-repr-1"  # a test value
TOKEN = "2abcdefghijklmnopqrstuvwxyz_0123456789ABCDEFGHIJ"  # shaped like an ngrok token


def test_objects_holding_secrets_hide_them_in_repr(test_user, state_dir):
    request = check_request(
        authtoken=TOKEN,
        password=PASSWORD,
        tunnel="ngrok",
        port=22,
        region=None,
        mount_drive=False,
        user=test_user,
        state_dir=state_dir,
    )
    connection = Connection(host="h", port=1, user=test_user, password=PASSWORD, local_port=22, tunnel="none")
    holders = (
        request,
        Secrets(authtoken=TOKEN, password=PASSWORD),
        connection,
        SshStatus(running=True, connection=connection),
        StartOptions(),
    )
    for holder in holders:
        text = repr(holder) + str(holder)
        assert PASSWORD not in text and TOKEN not in text, text
    assert request.password == PASSWORD and request.authtoken == TOKEN  # still the values, for use


def test_a_traceback_with_locals_shows_no_password(test_user, port, state_dir):
    tunnel = LocalTunnel(fail_with=TunnelError("the plugin's tunnel could not open"))

    with pytest.raises(TunnelError) as raised:
        start_ssh(
            tunnel=tunnel, port=port, user=test_user, state_dir=state_dir, quiet=True, password=PASSWORD
        )

    report = "".join(traceback.TracebackException.from_exception(raised.value, capture_locals=True).format())
    assert "password = " in report  # the locals are there...
    assert PASSWORD not in report  # ...but not the secret


UNKNOWN_TOKEN = "2unknownTokenNotAnAccount_0123456789abcdefghijk"  # well-formed, no account has it


def test_a_traceback_with_locals_shows_no_ngrok_token(test_user, port, state_dir, ngrok_cloud):
    with pytest.raises(TunnelError) as raised:
        start_ssh(UNKNOWN_TOKEN, tunnel="ngrok", port=port, user=test_user, state_dir=state_dir, quiet=True)

    report = "".join(traceback.TracebackException.from_exception(raised.value, capture_locals=True).format())
    assert "authtoken = " in report
    assert UNKNOWN_TOKEN not in report


@pytest.mark.parametrize(
    ("tunnel", "loopback_only"),
    [("ngrok", True), ("cloudflared", True), (LocalTunnel(), True), ("none", False), (DirectTunnel(), False)],
    ids=["ngrok", "cloudflared", "tunnel object", "none", "DirectTunnel object"],
)
def test_loopback_only_whenever_a_tunnel_carries_the_traffic(tunnel, loopback_only, test_user, state_dir):
    request = check_request(
        authtoken=None,
        password=None,
        tunnel=tunnel,
        port=22,
        region=None,
        mount_drive=False,
        user=test_user,
        state_dir=state_dir,
    )
    addresses = start_steps.listen_addresses(request)
    assert ("127.0.0.1" in addresses) == loopback_only
    assert all(address in ("127.0.0.1", "::1") for address in addresses)


def test_through_ngrok_sshd_is_not_on_the_machines_address(
    test_user, port, state_dir, ngrok_cloud, machine_address, ssh: SshClient
):
    token = ngrok_cloud.add_account("2ngrokAccountWithCard_0123456789abcdefghijklmn")

    connection = start_ssh(token, tunnel="ngrok", port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert ssh.run(connection, "id -un").stdout.strip() == test_user  # through the (stand-in) agent
    assert answers("127.0.0.1", port) and not answers(machine_address, port)
