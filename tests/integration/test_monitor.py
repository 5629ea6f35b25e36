"""Staying up: real processes are killed and interrupted; a new real SSH login must succeed within
10 seconds, with the default monitor interval, and ssh_status() must count what was brought back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from colab_ssh import Connection, ssh_status, start_ssh, stop_ssh

from ..support.host import SshClient, our_processes
from ..support.stand_ins import NgrokCloud

RECOVERY_SECONDS = 10


def login_within(ssh: SshClient, connection_of, seconds: float = RECOVERY_SECONDS) -> float:
    """Seconds until a real login succeeds; fails the test after ``seconds``."""
    started = time.monotonic()
    while True:
        result = ssh.run(connection_of(), "echo up", timeout=10)
        if result.returncode == 0 and result.stdout.strip() == "up":
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, f"no login within {seconds} s: {result.stderr}"
        time.sleep(0.3)


def pids_named(state_dir: Path, word: bytes) -> list[int]:
    return [pid for pid in our_processes(state_dir) if word in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_a_killed_sshd_comes_back_by_itself(test_user, port, state_dir, ssh: SshClient):
    connection = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    (listener,) = [
        pid for pid in pids_named(state_dir, b"sshd") if b"-D" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]

    open_session = subprocess.Popen(
        ["sshpass", "-e", "ssh", *ssh.options(), "-p", str(port), f"{test_user}@127.0.0.1",
         "sleep 3; echo still-here"],
        env={**os.environ, "SSHPASS": connection.password or ""}, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1)

    os.kill(listener, signal.SIGKILL)
    waited = login_within(ssh, lambda: connection)

    assert open_session.communicate(timeout=30)[0].strip() == "still-here"  # work in progress survived
    status = ssh_status()
    assert status.sshd_restarts == 1 and status.tunnel_restarts == 0, status
    assert status.sshd_alive and status.monitoring
    assert waited < RECOVERY_SECONDS


def test_a_killed_agent_is_reopened_and_the_new_address_announced(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient, capsys
):
    token = ngrok_cloud.add_account("tok_monitor_1")
    announced: list[Connection] = []
    first = start_ssh(
        tunnel="ngrok",
        authtoken=token,
        port=port,
        user=test_user,
        state_dir=state_dir,
        on_change=announced.append,
    )
    capsys.readouterr()
    (agent,) = pids_named(state_dir, b"ngrok")

    os.kill(agent, signal.SIGKILL)
    login_within(ssh, lambda: ssh_status().connection or first)

    status = ssh_status()
    assert status.tunnel_restarts == 1 and status.sshd_restarts == 0
    assert status.connection is not None and status.connection.port != first.port
    assert announced == [status.connection]
    assert status.address_changed is not None
    assert status.connection.ssh_command in capsys.readouterr().out  # shown where the user looks
    assert pids_named(state_dir, b"ngrok") not in ([], [agent])


def test_sigint_to_the_caller_leaves_ssh_up(test_user, port, state_dir, tmp_path, ssh: SshClient):
    """A notebook interrupt (SIGINT to the kernel and its process group) must not reach sshd."""
    details, stop = tmp_path / "conn.json", tmp_path / "stop"
    script = f"""
import json, time, pathlib
from colab_ssh import start_ssh, stop_ssh, ssh_status
c = start_ssh(tunnel="none", port={port}, user={test_user!r}, state_dir={str(state_dir)!r}, quiet=True)
pathlib.Path({str(details)!r}).write_text(json.dumps({{"host": c.host, "port": c.port, "user": c.user,
    "password": c.password, "local_port": c.local_port, "tunnel": c.tunnel}}))
interrupts = 0
while not pathlib.Path({str(stop)!r}).exists():
    try:
        time.sleep(0.05)
    except KeyboardInterrupt:  # what the kernel does with a cell interrupt
        interrupts += 1
print("interrupts", interrupts, "restarts", ssh_status().restarts, flush=True)
stop_ssh()
"""
    caller = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not details.exists():
        assert caller.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    connection = Connection(**json.loads(details.read_text()))

    os.killpg(caller.pid, signal.SIGINT)
    login_within(ssh, lambda: connection)
    stop.touch()
    output, _ = caller.communicate(timeout=60)

    assert output.split() == ["interrupts", "1", "restarts", "0"]


def test_stop_ssh_ends_the_monitor_too(test_user, port, state_dir):
    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, monitor_interval=0.2)
    assert any(thread.name == "colab_ssh-monitor" for thread in threading.enumerate())

    stop_ssh()

    assert not any(thread.name == "colab_ssh-monitor" for thread in threading.enumerate())
    assert ssh_status().running is False
    assert our_processes(state_dir) == []


def test_no_monitor_when_switched_off(test_user, port, state_dir):
    start_ssh(
        tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, monitor_interval=None
    )
    assert ssh_status().monitoring is False
    assert not any(thread.name == "colab_ssh-monitor" for thread in threading.enumerate())
