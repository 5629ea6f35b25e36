"""Key login and a host identity that survives sessions, with the real OpenSSH client."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from colab_ssh import InvalidArgumentError, KeySourceError, start_ssh, stop_ssh
from colab_ssh.keys import parse_public_key

from ..support.host import ClientKey, SshClient, home_of, make_client_key
from ..support.stand_ins import ColabStub, GitHubStandIn, NgrokCloud


def start_local(user: str, port: int, state_dir: Path, **options: object):
    return start_ssh(tunnel="none", port=port, user=user, state_dir=state_dir, quiet=True, **options)


def authorized_keys(user: str) -> Path:
    return home_of(user) / ".ssh" / "authorized_keys"


def pinned_ssh(
    config: Path, identity: Path, known_hosts: Path, command: str
) -> subprocess.CompletedProcess[str]:
    """`ssh colab` with the printed config block and host-key checking strictly on."""
    return subprocess.run(
        ["ssh", "-F", str(config), "-i", str(identity), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "ControlMaster=no", "-o", "ControlPath=none", "colab", command],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_key_login_through_the_tunnel_and_no_password(
    test_user, port, state_dir, client_key: ClientKey, ngrok_cloud: NgrokCloud, ssh: SshClient, capsys
):
    token = ngrok_cloud.add_account("tok_keys_1")
    connection = start_ssh(
        tunnel="ngrok",
        authtoken=token,
        port=port,
        user=test_user,
        state_dir=state_dir,
        public_key=client_key.public_line,
    )
    printed = capsys.readouterr().out

    result = ssh.run_with_key(connection, "id -un", client_key.private)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == test_user
    assert connection.password is None and connection.key_login
    assert "password:" not in printed and "with your SSH key" in printed
    assert "password_stdin" not in connection.sshfs_command


def test_password_login_is_refused_when_keys_are_on(test_user, port, state_dir, client_key, ssh: SshClient):
    connection = start_local(test_user, port, state_dir, public_key=client_key.public_line)
    subprocess.run(["chpasswd"], input=f"{test_user}:a-known-password-1\n", text=True, check=True)

    result = ssh.run(connection, "true", password="a-known-password-1")

    assert result.returncode != 0
    assert "permission denied (publickey)" in result.stderr.lower()
    config = (state_dir / "sshd_config").read_text().splitlines()
    assert "PasswordAuthentication no" in config and "PermitRootLogin no" in config


def test_keys_land_with_owner_and_modes_and_merge_without_duplicates(test_user, port, state_dir, tmp_path):
    first = make_client_key(tmp_path / "a", "id_a")
    second = make_client_key(tmp_path / "b", "id_b", kind="rsa")
    home = home_of(test_user)
    (home / ".ssh").mkdir(mode=0o700)
    authorized_keys(test_user).write_text("# my own line\n" + first.public_line + "\n")
    for path in (home / ".ssh", authorized_keys(test_user)):  # the user's own, as they made them
        os.chown(path, home.stat().st_uid, home.stat().st_gid)

    start_local(test_user, port, state_dir, public_key=[first.public_line, str(second.private) + ".pub"])
    stop_ssh()
    start_local(test_user, port, state_dir, public_key=[first.public_line, str(second.private) + ".pub"])

    lines = authorized_keys(test_user).read_text().splitlines()
    assert lines == ["# my own line", first.public_line, second.public_line]
    for path, mode in ((home / ".ssh", 0o700), (authorized_keys(test_user), 0o600)):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == mode
        assert (info.st_uid, info.st_gid) == (home.stat().st_uid, home.stat().st_gid)


def test_keys_from_github(test_user, port, state_dir, client_key, github: GitHubStandIn, ssh: SshClient):
    github.keys["octo-cat"] = client_key.public_line + "\n"

    connection = start_local(test_user, port, state_dir, github_user="octo-cat")

    assert ssh.run_with_key(connection, "true", client_key.private).returncode == 0
    assert client_key.public_line in authorized_keys(test_user).read_text()


@pytest.mark.parametrize(
    ("published", "name", "message"),
    [
        ({}, "nobody-here", "no user 'nobody-here'"),
        ({"keyless": ""}, "keyless", "has no public SSH keys"),
    ],
)
def test_github_users_without_keys_are_clear_errors(
    published, name, message, state_dir, github: GitHubStandIn
):
    github.keys.update(published)
    with pytest.raises(KeySourceError, match=message):
        start_local("root", 2298, state_dir, github_user=name)
    assert not (state_dir / "sshd_config").exists()


def test_github_out_of_reach_is_a_clear_error(state_dir, monkeypatch):
    monkeypatch.setenv("COLAB_SSH_GITHUB_URL", "http://127.0.0.1:9")
    with pytest.raises(KeySourceError, match="Could not reach"):
        start_local("root", 2298, state_dir, github_user="octocat")


def test_the_colab_secret_ssh_public_key_switches_to_key_login(
    test_user, port, state_dir, client_key, colab: ColabStub, ssh: SshClient
):
    colab.secrets["SSH_PUBLIC_KEY"] = client_key.public_line

    connection = start_local(test_user, port, state_dir)

    assert connection.password is None
    assert ssh.run_with_key(connection, "true", client_key.private).returncode == 0


def test_host_keys_survive_sessions_and_a_pinned_client_never_prompts(
    test_user, tmp_path, client_key: ClientKey
):
    """Two "runtimes" (new state dirs, new ports: the tunnel address changes) share the saved keys."""
    saved = tmp_path / "drive" / "ssh-host-keys"
    known_hosts = tmp_path / "pinned_known_hosts"
    connections = []
    for runtime in ("first", "second"):
        state = tmp_path / f"runtime-{runtime}"
        from ..support.host import free_port

        connection = start_local(
            test_user, free_port(), state, public_key=client_key.public_line, host_keys_dir=saved
        )
        connections.append(connection)
        copy = state / "host_keys" / "ssh_host_ed25519_key"
        assert stat.S_IMODE(copy.stat().st_mode) == 0o600
        if runtime == "first":
            # The careful user pins the printed known_hosts line before the first connection.
            known_hosts.write_text(connection.known_hosts + "\n")
            for path in saved.iterdir():
                path.chmod(0o755)  # Drive keeps no modes
        config = tmp_path / f"ssh_config_{runtime}"
        config.write_text(connection.ssh_config + "\n")
        result = pinned_ssh(config, client_key.private, known_hosts, "echo pinned-ok")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "pinned-ok"
        stop_ssh()

    first, second = connections
    assert first.port != second.port
    assert first.host_keys == second.host_keys
    assert first.host_key_alias == second.host_key_alias != "colab-ssh"
    assert sorted(path.name for path in saved.iterdir()) == [
        "colab-ssh-address.json",  # the second runtime's address, for `colab-ssh proxy --from`
        "ssh_host_ed25519_key",
        "ssh_host_ed25519_key.pub",
    ]
    assert json.loads((saved / "colab-ssh-address.json").read_text())["port"] == second.port


def test_a_client_pinned_to_other_keys_is_refused(test_user, port, state_dir, tmp_path, client_key):
    """The check is real: the same pinned client refuses a server with different keys."""
    connection = start_local(test_user, port, state_dir, public_key=client_key.public_line)
    other = make_client_key(tmp_path / "other", "ssh_host_ed25519_key")
    known_hosts = tmp_path / "kh"
    known_hosts.write_text(f"{connection.host_key_alias} {other.public_line.rsplit(' ', 1)[0]}\n")
    config = tmp_path / "cfg"
    config.write_text(connection.ssh_config + "\n")

    result = pinned_ssh(config, client_key.private, known_hosts, "true")
    assert result.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in result.stderr


def test_parse_accepts_real_keys_of_each_common_type(tmp_path):
    for kind in ("ed25519", "rsa", "ecdsa"):
        key = make_client_key(tmp_path / kind, f"id_{kind}", kind=kind)
        parsed = parse_public_key(key.public_line, "test")
        assert parsed.line == key.public_line


def test_private_key_files_are_refused_by_path(tmp_path, state_dir):
    key = make_client_key(tmp_path / "k")
    with pytest.raises(InvalidArgumentError, match="is a private key"):
        start_local("root", 2297, state_dir, public_key=str(key.private))
