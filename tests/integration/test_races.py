"""Two starts on one state folder at once (two notebooks, the CLI and a notebook): one wins, the other
fails naming it, the winner's password works, and nothing restarts in a loop. A monitor that
cannot get its port back says so and stops."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from colab_ssh import SessionLostError, ssh_status, start_ssh

from ..support.host import SshClient, our_processes
from .test_cli import cli, local, saved_connection

ROUNDS = 10

# A "notebook": starts when told, reports, then answers status/stop requests on stdin.
KERNEL = r"""
import dataclasses, json, sys
from colab_ssh import ColabSSHError, ssh_status, start_ssh, stop_ssh
port, user, state_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def say(**fields):
    print(json.dumps(fields, default=str), flush=True)
sys.stdin.readline()  # "go": both start at the same moment
try:
    connection = start_ssh(tunnel="none", port=port, user=user, state_dir=state_dir, quiet=True,
                           monitor_interval=0.1)
    say(ok=True, password=connection.password)
except ColabSSHError as error:
    say(ok=False, type=type(error).__name__, message=str(error), owner_pid=getattr(error, "owner_pid", None))
for line in sys.stdin:
    if line.strip() == "status":
        status = ssh_status()
        say(running=status.running, sshd_alive=status.sshd_alive, sshd_restarts=status.sshd_restarts,
            password=status.connection.password if status.connection else None,
            monitoring=status.monitoring, monitor_error=status.monitor_error)
    elif line.strip() == "stop":
        stop_ssh(state_dir=state_dir)
        say(stopped=True)
"""


class Kernel:
    def __init__(self, port: int, user: str, state_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", KERNEL, str(port), user, str(state_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def answer(self) -> dict[str, object]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, f"the kernel exited with {self.process.wait()}"
        return json.loads(line)

    def ask(self, line: str) -> dict[str, object]:
        self.send(line)
        return self.answer()

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        self.process.wait(timeout=60)


def password_login(ssh: SshClient, port: int, user: str, password: str) -> subprocess.CompletedProcess[str]:
    """A real password login on the local port (the fields ssh.run() reads of a Connection)."""
    where = types.SimpleNamespace(host="127.0.0.1", port=port, user=user, password=password)
    return ssh.run(where, "id -un")  # type: ignore[arg-type]


def wait_gone(pid: int) -> None:
    """Until the process has exited (a zombie counts: its sockets are closed)."""
    while True:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
                return
        except FileNotFoundError:
            return
        time.sleep(0.01)


def sshd_listeners(state_dir: Path) -> list[int]:
    return [
        pid
        for pid in our_processes(state_dir)
        if b"[listener]" in Path(f"/proc/{pid}/cmdline").read_bytes()
        or Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:2] == [b"-D"]
    ]


def test_two_kernels_starting_at_once_leave_one_working_server(
    test_user, port, state_dir: Path, ssh: SshClient
):
    for round_number in range(ROUNDS):
        log = state_dir / "sshd.log"
        log_start = len(log.read_text()) if log.exists() else 0
        kernels = [Kernel(port, test_user, state_dir) for _ in range(2)]
        try:
            for kernel in kernels:
                kernel.send("go")
            results = [kernel.answer() for kernel in kernels]

            winners = [index for index, result in enumerate(results) if result["ok"]]
            assert len(winners) == 1, (round_number, results)
            winner, loser = kernels[winners[0]], kernels[1 - winners[0]]
            refusal = results[1 - winners[0]]
            assert refusal["type"] == "StateDirBusyError", refusal
            assert refusal["owner_pid"] == winner.process.pid, refusal
            assert f"pid {winner.process.pid}" in str(refusal["message"])
            assert len(sshd_listeners(state_dir)) == 1

            status = winner.ask("status")
            assert status["password"] == results[winners[0]]["password"]
            login = password_login(ssh, port, test_user, str(status["password"]))
            assert login.returncode == 0 and login.stdout.strip() == test_user, login.stderr
            assert loser.ask("status")["running"] is False

            # No restart loop: many monitor rounds later, nothing was restarted. Every sshd start
            # logs "Server listening on 0.0.0.0" (a failed one "Bind to ... failed").
            time.sleep(1.0)  # ten rounds of the 0.1 s monitors of both processes
            again = winner.ask("status")
            assert again["sshd_restarts"] == 0 and again["sshd_alive"] and again["monitoring"], again
            this_round = (state_dir / "sshd.log").read_text()[log_start:]
            assert this_round.count("Server listening on 0.0.0.0") == 1, this_round
            assert "Bind to" not in this_round, this_round
            assert len(sshd_listeners(state_dir)) == 1
            assert winner.ask("stop") == {"stopped": True}
        finally:
            for kernel in kernels:
                kernel.close()
        assert our_processes(state_dir) == []


def test_the_cli_and_a_kernel_starting_at_once(test_user, port, state_dir: Path, ssh: SshClient):
    """Whoever wins, the other is refused naming it, and `colab-ssh status` shows a password that works."""
    for _ in range(3):
        kernel = Kernel(port, test_user, state_dir)
        try:
            command = subprocess.Popen(
                [sys.executable, "-m", "colab_ssh", "start", *map(str, local(test_user, port, state_dir))],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            kernel.send("go")
            result = kernel.answer()
            _out, err = command.communicate(timeout=120)
            if result["ok"]:
                assert command.returncode == 1
                assert f"started by pid {kernel.process.pid} (a process running" in err, err
                login = password_login(ssh, port, test_user, str(result["password"]))
            else:
                assert command.returncode == 0, err
                supervisor = json.loads((state_dir / "supervisor.pid").read_text())["pid"]
                assert result["owner_pid"] == supervisor
                assert "(the colab-ssh supervisor)" in str(result["message"])
                status = cli("status", "--state-dir", state_dir)
                assert "colab-ssh is up" in status.stdout, status.stdout
                login = ssh.run(saved_connection(state_dir), "id -un")
            assert login.returncode == 0 and login.stdout.strip() == test_user, login.stderr
            assert len(sshd_listeners(state_dir)) == 1
        finally:
            cli("stop", "--state-dir", state_dir)
            kernel.close()
        assert our_processes(state_dir) == []


def hand_the_port_over(state_dir: Path, listener: int, squatter: socket.socket, port: int) -> None:
    """Kill sshd and let ``squatter`` take its port, holding the folder's lock (as a start
    elsewhere would) so that no monitor or supervisor repair runs until the port is taken."""
    with open(state_dir / "state.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        os.kill(listener, signal.SIGKILL)
        wait_gone(listener)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", port))
        squatter.listen()


def test_a_monitor_that_cannot_get_its_port_back_says_so_and_stops(test_user, port, state_dir: Path):
    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, monitor_interval=0.1)
    (listener,) = sshd_listeners(state_dir)
    squatter = socket.socket()
    try:
        hand_the_port_over(state_dir, listener, squatter, port)
        deadline = time.monotonic() + 30
        while (status := ssh_status()).monitoring:
            assert time.monotonic() < deadline, f"the monitor kept retrying: {status}"
            time.sleep(0.05)

        assert status.monitor_error is not None and f"port {port}" in status.monitor_error, status
        assert "another program" in status.monitor_error
        assert status.running and not status.sshd_alive and status.sshd_restarts == 0
        log_size = (state_dir / "sshd.log").stat().st_size
        time.sleep(0.5)  # five monitor intervals
        assert ssh_status().sshd_restarts == 0 and (state_dir / "sshd.log").stat().st_size == log_size
        assert "Bind to" not in (state_dir / "sshd.log").read_text()
        assert sshd_listeners(state_dir) == []
        with pytest.raises(SessionLostError, match=f"port {port}"):
            start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    finally:
        squatter.close()


def test_stop_from_another_process_ends_the_owners_session_for_good(test_user, port, state_dir: Path):
    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True, monitor_interval=0.1)

    stopped = subprocess.run(
        [sys.executable, "-c", "import sys; from colab_ssh import stop_ssh; stop_ssh(state_dir=sys.argv[1])",
         str(state_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert stopped.returncode == 0, stopped.stderr

    deadline = time.monotonic() + 30
    while (status := ssh_status()).running:
        assert time.monotonic() < deadline, f"the owner did not notice: {status}"
        time.sleep(0.05)
    assert status.monitor_error is not None and "another process" in status.monitor_error
    time.sleep(0.5)  # five monitor intervals: it must not have brought sshd back
    assert sshd_listeners(state_dir) == []


def test_colab_ssh_status_says_why_sshd_cannot_come_back(test_user, port, state_dir: Path):
    started = cli("start", *local(test_user, port, state_dir), "--check-interval", "0.2")
    assert started.returncode == 0, started.stderr
    (listener,) = sshd_listeners(state_dir)
    squatter = socket.socket()
    try:
        hand_the_port_over(state_dir, listener, squatter, port)
        deadline = time.monotonic() + 30
        while "last error" not in (status := cli("status", "--state-dir", state_dir)).stdout:
            assert time.monotonic() < deadline, status.stdout
            time.sleep(0.1)

        assert status.returncode == 1
        assert f"down: sshd does not answer on port {port}" in status.stdout
        assert f"port {port} is now used by another program" in status.stdout, status.stdout
        log_size = (state_dir / "sshd.log").stat().st_size
        time.sleep(1.0)  # five health checks
        assert (state_dir / "sshd.log").stat().st_size == log_size
        assert "Bind to" not in (state_dir / "sshd.log").read_text()
        assert "restarts: 0;" in cli("status", "--state-dir", state_dir).stdout
        assert (state_dir / "supervisor.log").read_text().count("not trying again") == 1
    finally:
        squatter.close()


def test_a_start_after_the_owner_died_takes_over_cleanly(test_user, port, state_dir: Path, ssh: SshClient):
    """A restarted kernel: the old one's sshd still runs, its owner is gone; the new start replaces it."""
    kernel = Kernel(port, test_user, state_dir)
    kernel.send("go")
    first = kernel.answer()
    assert first["ok"], first
    (old_listener,) = sshd_listeners(state_dir)
    kernel.process.kill()  # the kernel dies; its sshd lives on in its own session
    kernel.process.communicate()

    connection = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert sshd_listeners(state_dir) not in ([], [old_listener]) and len(sshd_listeners(state_dir)) == 1
    assert json.loads((state_dir / "owner.pid").read_text())["pid"] == os.getpid()
    login = password_login(ssh, port, test_user, connection.password or "")
    assert login.returncode == 0 and login.stdout.strip() == test_user, login.stderr
    assert password_login(ssh, port, test_user, str(first["password"])).returncode != 0


def test_a_healthy_rerun_does_not_wait_for_the_folders_lock(test_user, port, state_dir: Path, ssh: SshClient):
    """Running the cell again while everything runs takes no lock: a start or stop elsewhere that
    holds the folder's lock does not make it wait (before, it waited up to 30 s, then failed)."""
    first = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    held = os.open(state_dir / "state.lock", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process's start would hold it

        again = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    finally:
        os.close(held)

    assert again == first
    login = password_login(ssh, port, test_user, again.password or "")
    assert login.returncode == 0 and login.stdout.strip() == test_user, login.stderr


def test_a_rerun_trusts_its_session_only_while_owner_pid_is_the_file_it_wrote(
    test_user, port, state_dir: Path, ssh: SshClient
):
    """The lock-free re-run checks one thing on disk: owner.pid is still the file this session's
    claim wrote. Gone (as stop_ssh() elsewhere leaves it), the re-run takes the locked path, which
    finds the folder no longer recorded as ours and starts anew (claiming it again)."""
    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    (old_listener,) = sshd_listeners(state_dir)
    (state_dir / "owner.pid").unlink()  # what release() does; sshd still runs

    again = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert json.loads((state_dir / "owner.pid").read_text())["pid"] == os.getpid()
    assert sshd_listeners(state_dir) not in ([], [old_listener])
    login = password_login(ssh, port, test_user, again.password or "")
    assert login.returncode == 0 and login.stdout.strip() == test_user, login.stderr
