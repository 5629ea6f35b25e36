"""The colab-ssh command run as a user runs it: a subprocess, its exit code and its output."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from colab_ssh.processes import read_record
from colab_ssh.supervisor_state import connection_from_json, stop_supervisor

from ..support.host import SshClient, our_processes
from ..support.stand_ins import NgrokCloud


def cli(
    *arguments: object, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "colab_ssh", *map(str, arguments)],
        **({"stdin": subprocess.DEVNULL} if input is None else {"input": input}),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(autouse=True)
def stop_the_supervisor(state_dir: Path):
    """Runs before conftest's stop_ssh() check: a supervisor left behind would revive sshd."""
    yield
    cli("stop", "--state-dir", state_dir)


def local(test_user: str, port: int, state_dir: Path) -> list[object]:
    return ["--tunnel", "none", "--port", port, "--user", test_user, "--state-dir", state_dir]


def saved_connection(state_dir: Path):
    return connection_from_json(json.loads((state_dir / "connection.json").read_text())["connection"])


def recorded_pid(pid_file: Path) -> int:
    record = read_record(pid_file)
    assert record is not None, pid_file
    return record.pid


def supervisor_pid(state_dir: Path) -> int:
    record = read_record(state_dir / "supervisor.pid")
    assert record is not None
    return record.pid


def command_lines() -> list[bytes]:
    lines = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(path.read_bytes())
        except OSError:
            continue
    return lines


def test_start_login_status_stop(test_user, port, state_dir, ssh: SshClient):
    started = cli("start", *local(test_user, port, state_dir))

    assert started.returncode == 0, started.stderr
    connection = saved_connection(state_dir)
    assert f"ssh -p {port} {test_user}@{connection.host}" in started.stdout
    assert f"password: {connection.password}" in started.stdout
    assert "colab-ssh stop" in started.stdout
    login = ssh.run(connection, "id -un", host="127.0.0.1")
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == test_user

    status = cli("status", "--state-dir", state_dir)
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.startswith("colab-ssh is up (since ")
    assert f"address:  {connection.host}:{port} (tunnel: none)" in status.stdout
    assert connection.password not in status.stdout  # only with --details

    stopped = cli("stop", "--state-dir", state_dir)
    assert (stopped.returncode, stopped.stdout) == (0, "Stopped.\n")
    assert our_processes(state_dir) == []
    assert not (state_dir / "connection.json").exists()

    after = cli("status", "--state-dir", state_dir)
    assert (after.returncode, after.stdout) == (1, "colab-ssh is not running.\n")
    again = cli("stop", "--state-dir", state_dir)
    assert (again.returncode, again.stdout) == (0, "Nothing was running.\n")


def test_the_password_stays_in_private_files_only(test_user, port, state_dir):
    started = cli("start", *local(test_user, port, state_dir))
    assert started.returncode == 0, started.stderr
    password = saved_connection(state_dir).password
    assert password

    assert (state_dir / "connection.json").stat().st_mode & 0o777 == 0o600
    assert password not in (state_dir / "supervisor.log").read_text()
    assert all(password.encode() not in line for line in command_lines())
    details = cli("status", "--details", "--state-dir", state_dir)
    assert f"password: {password}" in details.stdout


def test_the_console_script_through_a_pipe_returns_promptly(test_user, port, state_dir):
    """The supervisor must not hold the caller's stdout: `colab-ssh start | cat` ends with start."""
    script = shutil.which("colab-ssh")
    assert script, "pip install -e . installs the colab-ssh script (.ci/run does)"
    arguments = " ".join(map(str, local(test_user, port, state_dir)))
    began = time.monotonic()

    piped = subprocess.run(
        ["bash", "-c", f"{script} start {arguments} | cat"], capture_output=True, text=True, timeout=60
    )

    assert piped.returncode == 0, piped.stderr
    assert time.monotonic() - began < 20
    assert f"ssh -p {port} {test_user}@" in piped.stdout
    assert os.getsid(supervisor_pid(state_dir)) == supervisor_pid(state_dir)  # its own session
    assert subprocess.run([script, "status", "--state-dir", str(state_dir)], timeout=30).returncode == 0


def test_a_second_start_reuses_the_first_and_other_options_are_refused(test_user, port, state_dir):
    first = cli("start", *local(test_user, port, state_dir))
    assert first.returncode == 0, first.stderr
    pid = supervisor_pid(state_dir)

    again = cli("start", *local(test_user, port, state_dir))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("Already running (since ")
    assert saved_connection(state_dir).ssh_command in again.stdout
    assert supervisor_pid(state_dir) == pid

    other = cli("start", *local(test_user, port + 1 if port < 65535 else port - 1, state_dir))
    assert other.returncode == 1
    assert "already runs with other options" in other.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["start", "--bogus"], "unrecognized arguments: --bogus"),
        (["start", "--port", "0"], "port must be from 1 to 65535"),
        (["start", "--tunnel", "carrier-pigeon"], "invalid choice"),
        (["start", "--tunnel", "none", "--authtoken-stdin"], "--authtoken-stdin goes with --tunnel ngrok"),
        ([], "name a command"),
        (["launch"], "invalid choice"),
    ],
)
def test_a_bad_command_line_exits_2_with_usage(arguments, message, state_dir):
    result = cli(*arguments, "--state-dir", state_dir) if arguments[:1] == ["start"] else cli(*arguments)

    assert result.returncode == 2
    assert "usage: colab-ssh" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not state_dir.exists()


def test_a_failing_start_is_one_line_and_leaves_nothing(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, monkeypatch
):
    monkeypatch.setenv("NGROK_AUTHTOKEN", "tok_nobody_has_this")

    failed = cli("start", "--tunnel", "ngrok", "--port", port, "--user", test_user, "--state-dir", state_dir)

    assert failed.returncode == 1
    # stdout holds only progress: the agent's start is a step of its own, shown failing; the error
    # itself is stderr's one line.
    progress = failed.stdout.splitlines()
    assert progress and progress[-1].startswith("Starting the ngrok agent: failed after"), failed.stdout
    assert "error" not in failed.stdout and "tok_nobody_has_this" not in failed.stdout
    lines = failed.stderr.splitlines()
    assert len(lines) == 1, failed.stderr
    assert lines[0].startswith("colab-ssh: error: ngrok rejected the authtoken (ERR_NGROK_105)")
    assert "tok_nobody_has_this" not in failed.stderr
    assert our_processes(state_dir) == []
    assert not (state_dir / "supervisor.pid").exists()
    assert cli("status", "--state-dir", state_dir).returncode == 1

    debug = cli(
        "--debug", "start", "--tunnel", "ngrok", "--port", port, "--user", test_user, "--state-dir", state_dir
    )
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "NgrokAuthtokenError" in debug.stderr
    assert "tok_nobody_has_this" not in debug.stderr + debug.stdout


def test_no_token_anywhere_is_a_clear_error(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    failed = cli("start", "--port", port, "--user", test_user, "--state-dir", state_dir, input="")

    assert failed.returncode == 1
    assert failed.stderr.startswith("colab-ssh: error: No ngrok authtoken: set NGROK_AUTHTOKEN")
    assert len(failed.stderr.splitlines()) == 1


def test_ngrok_secrets_travel_on_stdin_not_argv(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient
):
    token = ngrok_cloud.add_account("tok_cli_secret_42")
    password = "correct-horse-battery"

    started = cli(
        "start",
        "--authtoken-stdin",
        "--password-stdin",
        "--port",
        port,
        "--user",
        test_user,
        "--state-dir",
        state_dir,
        input=f"{token}\n{password}\n",
    )

    assert started.returncode == 0, started.stderr
    connection = saved_connection(state_dir)
    assert connection.tunnel == "ngrok" and connection.port != port
    assert ssh.run(connection, "id -un", password=password).stdout.strip() == test_user
    for line in command_lines():
        assert token.encode() not in line and password.encode() not in line
    assert token not in (state_dir / "supervisor.log").read_text()
    assert password not in (state_dir / "supervisor.log").read_text()


def test_the_supervisor_brings_back_a_killed_sshd(test_user, port, state_dir, ssh: SshClient):
    started = cli("start", *local(test_user, port, state_dir), "--check-interval", "0.5")
    assert started.returncode == 0, started.stderr
    sshd = recorded_pid(state_dir / "sshd.pid")

    os.kill(sshd, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while "restarts: 1;" not in (status := cli("status", "--state-dir", state_dir)).stdout:
        assert time.monotonic() < deadline, status.stdout
        time.sleep(0.2)

    assert status.returncode == 0
    assert ssh.run(saved_connection(state_dir), "true", host="127.0.0.1").returncode == 0


def test_key_login_with_a_public_key_file(test_user, port, state_dir, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)

    started = cli("start", *local(test_user, port, state_dir), "--public-key", f"{key}.pub")

    assert started.returncode == 0, started.stderr
    assert "password login is off" in started.stdout
    assert saved_connection(state_dir).password is None
    login = subprocess.run(
        [
            "ssh",
            "-i",
            key,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={tmp_path / 'known_hosts'}",
            "-p",
            str(port),
            f"{test_user}@127.0.0.1",
            "id -un",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == test_user


def test_colab_only_options_are_refused_elsewhere(test_user, port, state_dir):
    refused = cli("start", *local(test_user, port, state_dir), "--mount-drive")

    assert refused.returncode == 1
    assert re.fullmatch(
        r"colab-ssh: error: --mount-drive needs Google Colab; this is \w+\. .*\n", refused.stderr
    )
    assert not (state_dir / "supervisor.pid").exists()


def test_stop_supervisor_ends_it_for_stop_ssh(test_user, port, state_dir):
    """What stop_ssh() can call so that a notebook's stop_ssh() also ends a `colab-ssh start`."""
    assert cli("start", *local(test_user, port, state_dir)).returncode == 0
    pid = supervisor_pid(state_dir)

    assert stop_supervisor(state_dir) is True

    assert (
        not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    )
    assert our_processes(state_dir) == []  # the supervisor's own stop_ssh() ran on SIGTERM
    assert stop_supervisor(state_dir) is False
    assert cli("status", "--state-dir", state_dir).returncode == 1


def test_a_tunnel_back_at_a_new_address_is_recorded_and_the_password_stays_out_of_the_log(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient, monkeypatch
):
    monkeypatch.setenv("NGROK_AUTHTOKEN", ngrok_cloud.add_account("tok_cli_revive_7"))
    started = cli(
        "start", "--port", port, "--user", test_user, "--state-dir", state_dir, "--check-interval", "0.5"
    )
    assert started.returncode == 0, started.stderr
    first = saved_connection(state_dir)

    os.kill(recorded_pid(state_dir / "ngrok.pid"), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (again := saved_connection(state_dir)).port == first.port:
        assert time.monotonic() < deadline, (state_dir / "supervisor.log").read_text()
        time.sleep(0.2)

    status = cli("status", "--state-dir", state_dir)
    assert f"address:  {again.host}:{again.port} (tunnel: ngrok)" in status.stdout
    assert ssh.run(again, "id -un").stdout.strip() == test_user
    assert again.password == first.password
    assert (first.password or "") not in (state_dir / "supervisor.log").read_text()


@pytest.mark.parametrize("callers", [None, "/opt/callers/lib"])
def test_sessions_get_the_callers_pythonpath_not_the_supervisors(callers, test_user, port, state_dir, ssh):
    """`start` puts our package on the supervisor's PYTHONPATH: that is for it alone."""
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    if callers is not None:
        environment["PYTHONPATH"] = callers
    started = subprocess.run(
        [sys.executable, "-m", "colab_ssh", "start", *map(str, local(test_user, port, state_dir))],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    connection = saved_connection(state_dir)

    command = ssh.run(connection, "env -0", host="127.0.0.1")
    shell = ssh.run(
        connection, "", tty=True, stdin='echo "@@""${PYTHONPATH-unset}@@"\nexit\n', host="127.0.0.1"
    )

    assert command.returncode == 0, command.stderr
    got = dict(item.split("=", 1) for item in command.stdout.split("\0") if "=" in item)
    assert got.get("PYTHONPATH") == callers
    assert not any(name.startswith("COLAB_SSH_") for name in got)
    assert f"@@{callers or 'unset'}@@" in shell.stdout, shell.stdout[-1000:]
