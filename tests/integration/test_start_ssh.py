"""start_ssh() end to end with tunnel="none": a real sshd, the real OpenSSH client, real sshfs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from colab_ssh import (
    ColabSSHError,
    InvalidArgumentError,
    SshdConfigError,
    start_ssh,
    stop_ssh,
)
from colab_ssh import start_steps as start_steps_module
from colab_ssh.paths import Paths
from colab_ssh.sshd_config import SshdSettings, render_sshd_config
from colab_ssh.system import read_password_hash

from ..support.host import SshClient, free_port, have, home_of, live_processes_of, our_processes
from ..support.stand_ins import ColabStub


def start_local(user: str, port: int, state_dir: Path, **options: object):
    return start_ssh(tunnel="none", port=port, user=user, state_dir=state_dir, quiet=True, **options)


def sshd_pids(state_dir: Path) -> list[int]:
    return [
        pid
        for pid in our_processes(state_dir)
        if b"sshd" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    ]


def test_password_login_with_the_real_client(test_user, port, state_dir, ssh: SshClient):
    connection = start_local(test_user, port, state_dir)

    result = ssh.run(connection, "id -un && pwd")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [test_user, str(home_of(test_user))]
    assert connection.port == port and connection.tunnel == "none"
    assert connection.ssh_command == f"ssh -p {port} {test_user}@{connection.host}"


def test_generated_password_is_long_and_not_in_any_command_line(test_user, port, state_dir):
    connection = start_local(test_user, port, state_dir)

    assert connection.password is not None
    assert len(connection.password) >= 20 and connection.password.isalnum()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert connection.password.encode() not in cmdline.read_bytes()
        except OSError:
            continue


def test_a_wrong_password_is_refused(test_user, port, state_dir, ssh: SshClient):
    connection = start_local(test_user, port, state_dir)

    result = ssh.run(connection, "true", password="not-the-password")

    assert result.returncode != 0
    assert "denied" in result.stderr.lower()


def test_prints_the_details_once_unless_quiet(test_user, port, state_dir, capsys):
    connection = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir)
    printed = capsys.readouterr().out

    assert connection.ssh_command in printed
    assert f"password: {connection.password}" in printed
    assert connection.sshfs_command in printed
    assert "Host colab" in printed and f"Port {port}" in printed
    for key in connection.host_keys:
        assert key.fingerprint in printed

    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir)
    assert capsys.readouterr().out == ""  # a healthy re-run prints nothing new


def test_printed_fingerprints_are_what_the_server_presents(test_user, port, state_dir):
    connection = start_local(test_user, port, state_dir)

    scanned = subprocess.run(
        ["ssh-keyscan", "-p", str(port), "127.0.0.1"], capture_output=True, text=True, timeout=20
    ).stdout
    fingerprints = subprocess.run(
        ["ssh-keygen", "-lf", "-"], input=scanned, capture_output=True, text=True, timeout=20
    ).stdout

    assert connection.host_keys
    for key in connection.host_keys:
        assert key.fingerprint in fingerprints


def test_ten_runs_leave_one_sshd_and_byte_identical_files(test_user, port, state_dir):
    first = start_local(test_user, port, state_dir)
    config = (state_dir / "sshd_config").read_bytes()
    paths = Paths(state_dir=state_dir)
    profile = paths.profile_script.read_bytes()
    values = paths.session_env_file.read_bytes()
    pids = sshd_pids(state_dir)

    for _ in range(9):
        assert start_local(test_user, port, state_dir) == first

    assert (state_dir / "sshd_config").read_bytes() == config
    assert paths.profile_script.read_bytes() == profile
    assert paths.session_env_file.read_bytes() == values
    assert sshd_pids(state_dir) == pids and len(pids) == 1


def test_a_new_process_rewrites_identical_config(test_user, port, state_dir):
    start_local(test_user, port, state_dir)
    config = (state_dir / "sshd_config").read_bytes()
    stop_ssh(state_dir=state_dir)

    start_local(test_user, port, state_dir)

    assert (state_dir / "sshd_config").read_bytes() == config


def test_config_is_private_and_validated_settings_are_in_it(test_user, port, state_dir):
    start_local(test_user, port, state_dir)
    config_file = state_dir / "sshd_config"

    assert config_file.stat().st_mode & 0o777 == 0o600
    text = config_file.read_text()
    for line in (f"AllowUsers {test_user}", "PermitRootLogin no", "PasswordAuthentication yes"):
        assert line in text.splitlines()
    assert sum(line.startswith("SetEnv ") for line in text.splitlines()) == 1


def test_sshd_survives_sigint_to_the_callers_process_group(test_user, port, state_dir, ssh: SshClient):
    connection = start_local(test_user, port, state_dir)
    (pid,) = sshd_pids(state_dir)

    assert os.getpgid(pid) != os.getpgid(0)
    assert os.getsid(pid) != os.getsid(0)
    assert ssh.run(connection, "true").returncode == 0


def test_a_killed_sshd_is_brought_back_with_the_same_details(test_user, port, state_dir, ssh: SshClient):
    connection = start_local(test_user, port, state_dir)
    (pid,) = sshd_pids(state_dir)
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)

    again = start_local(test_user, port, state_dir)

    assert again == connection
    assert sshd_pids(state_dir) not in ([], [pid])
    assert ssh.run(again, "true").returncode == 0


def test_stop_ssh_ends_sshd_and_open_sessions(test_user, port, state_dir, ssh: SshClient):
    connection = start_local(test_user, port, state_dir)
    session = subprocess.Popen(
        ["sshpass", "-e", "ssh", *ssh.options(), "-p", str(port), f"{test_user}@127.0.0.1", "sleep 60"],
        env={**os.environ, "SSHPASS": connection.password or ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not any("sleep 60" in line for line in live_processes_of(test_user)):
        assert time.monotonic() < deadline, "the ssh session did not start"
        time.sleep(0.05)

    stop_ssh()

    left = our_processes(state_dir)
    assert left == [], [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left]
    assert session.wait(timeout=10) != 0
    assert live_processes_of(test_user) == []
    stop_ssh()  # harmless when nothing runs


def test_stop_ssh_from_a_new_process_stops_what_an_earlier_one_left(test_user, port, state_dir):
    script = (
        "from colab_ssh import start_ssh;"
        f"start_ssh(tunnel='none', port={port}, user={test_user!r}, state_dir={str(state_dir)!r}, quiet=True)"
    )
    subprocess.run(
        [os.sys.executable, "-c", script],
        check=True,
        timeout=60,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert len(sshd_pids(state_dir)) == 1

    stop_ssh(state_dir=state_dir)

    assert sshd_pids(state_dir) == []


def test_output_read_through_a_pipe_ends_when_the_caller_ends(test_user, port, state_dir):
    """The sshd we leave running must not hold the caller's stdout/stderr open."""
    script = (
        "from colab_ssh import start_ssh;"
        f"start_ssh(tunnel='none', port={port}, user={test_user!r}, state_dir={str(state_dir)!r})"
    )
    result = subprocess.run([os.sys.executable, "-c", script], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "ssh -p" in result.stdout
    assert len(sshd_pids(state_dir)) == 1


def test_sshfs_mount_reads_and_writes(test_user, port, state_dir, tmp_path):
    assert have("sshfs"), "sshfs is installed by .ci/run"
    connection = start_local(test_user, port, state_dir)
    home = home_of(test_user)
    (home / "from-server.txt").write_text("written on the server\n")
    mount_point = tmp_path / "mnt"
    mount_point.mkdir()

    mount = subprocess.run(
        [
            "sshfs",
            "-p",
            str(port),
            "-o",
            "password_stdin,StrictHostKeyChecking=no,"
            f"UserKnownHostsFile={tmp_path / 'kh'},reconnect,ServerAliveInterval=15",
            f"{test_user}@127.0.0.1:{home}",
            str(mount_point),
        ],
        input=connection.password + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert mount.returncode == 0, mount.stderr
    try:
        assert (mount_point / "from-server.txt").read_text() == "written on the server\n"
        (mount_point / "from-client.txt").write_text("written through sshfs\n")
        assert (home / "from-client.txt").read_text() == "written through sshfs\n"
    finally:
        subprocess.run(["fusermount3", "-u", str(mount_point)], check=False)
        subprocess.run(["fusermount", "-u", str(mount_point)], check=False, capture_output=True)


def test_mount_drive_mounts_and_points_sshfs_at_my_drive(
    test_user, port, state_dir, colab: ColabStub, capsys
):
    connection = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, mount_drive=True)

    assert colab.mounts == ["/content/drive"]
    assert ":/content/drive/MyDrive" in connection.sshfs_command
    assert "reconnect" in connection.sshfs_command and "ServerAliveInterval" in connection.sshfs_command
    assert connection.sshfs_command in capsys.readouterr().out


def test_mount_drive_outside_colab_is_a_clear_error(test_user, port, state_dir, monkeypatch):
    monkeypatch.setitem(os.sys.modules, "google.colab", None)
    with pytest.raises(ColabSSHError, match="needs Google Colab"):
        start_local(test_user, port, state_dir, mount_drive=True)
    assert not (state_dir / "sshd_config").exists()


def test_a_rejected_config_is_rolled_back(test_user, port, state_dir, monkeypatch):
    start_local(test_user, port, state_dir)
    before = (state_dir / "sshd_config").read_bytes()
    stop_ssh()
    password_hash = read_password_hash(Path("/etc/shadow"), test_user)

    def broken(settings: SshdSettings) -> str:
        return render_sshd_config(settings) + "NoSuchKeyword yes\n"

    monkeypatch.setattr(start_steps_module, "render_sshd_config", broken)
    with pytest.raises(SshdConfigError, match="NoSuchKeyword") as raised:
        start_local(test_user, port, state_dir)

    assert "restored" in str(raised.value)
    assert (state_dir / "sshd_config").read_bytes() == before
    assert read_password_hash(Path("/etc/shadow"), test_user) == password_hash
    assert sshd_pids(state_dir) == []


def test_a_busy_port_is_a_clear_error_and_changes_nothing(test_user, state_dir):
    import socket

    with socket.socket() as squatter:
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        with pytest.raises(ColabSSHError, match=f"Port {busy} is already in use"):
            start_local(test_user, busy, state_dir)
    assert not (state_dir / "sshd_config").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"port": 0}, "port must be"),
        ({"port": 70000}, "port must be"),
        ({"port": "22"}, "port must be"),
        ({"password": "short"}, "too short"),
        ({"password": "line\nbreak-password"}, "line break"),
        ({"tunnel": "carrier-pigeon"}, "Unknown tunnel"),
        ({"tunnel": "ngrok", "region": "mars"}, "Unknown ngrok region"),
        ({"user": "no-such-user-here"}, "no user"),
        ({"authtoken": "two words"}, "spaces"),
    ],
)
def test_bad_arguments_are_refused_before_any_change(options, message, state_dir):
    arguments = {"tunnel": "none", "port": free_port(), "user": "root", "state_dir": state_dir, "quiet": True}
    arguments.update(options)
    with pytest.raises(InvalidArgumentError, match=message):
        start_ssh(**arguments)
    assert not state_dir.exists()


def test_refuses_non_root_for_real(tmp_path):
    """The same check in a process that really is not root (euid dropped after imports)."""
    script = (
        "import os; from colab_ssh import start_ssh; os.setegid(65534); os.seteuid(65534);"
        f"start_ssh(tunnel='none', port=2299, state_dir={str(tmp_path / 'state')!r})"
    )
    result = subprocess.run([os.sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "UnsupportedSystemError" in result.stderr and "needs root" in result.stderr
    assert not (tmp_path / "state").exists()


def test_a_failing_rerun_keeps_the_running_session(test_user, port, state_dir, ssh: SshClient, monkeypatch):
    connection = start_local(test_user, port, state_dir)
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    monkeypatch.setitem(os.sys.modules, "google.colab", None)

    with pytest.raises(ColabSSHError, match="No ngrok authtoken"):
        start_ssh(tunnel="ngrok", port=port, user=test_user, state_dir=state_dir, quiet=True)
    with pytest.raises(ColabSSHError, match="not of a supported type"):
        start_local(test_user, port, state_dir, public_key="not-a-key at-all")

    assert ssh.run(connection, "true").returncode == 0
    assert start_local(test_user, port, state_dir) == connection


def test_stop_ssh_with_another_state_dir_leaves_this_session_alone(test_user, port, state_dir, tmp_path, ssh):
    other_state = tmp_path / "other"
    other_port = free_port()
    script = (
        "from colab_ssh import start_ssh;"
        f"start_ssh(tunnel='none', port={other_port}, user={test_user!r}, state_dir={str(other_state)!r},"
        " quiet=True)"
    )
    subprocess.run([os.sys.executable, "-c", script], check=True, timeout=60, capture_output=True)
    connection = start_local(test_user, port, state_dir)

    stop_ssh(state_dir=other_state)

    assert sshd_pids(other_state) == []
    assert len(sshd_pids(state_dir)) == 1
    assert ssh.run(connection, "true").returncode == 0
