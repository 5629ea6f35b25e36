"""tunnel="cloudflared": a Cloudflare quick tunnel, driven through the stand-in cloudflared
(tests/stand_ins/cloudflared), which plays both cloudflared and Cloudflare's edge on loopback.

The real OpenSSH client logs in exactly as a user would: with the printed ~/.ssh/config block
(ProxyCommand cloudflared access ssh --hostname %h) and with the printed ssh command; PATH finds the
stand-in for the client side, COLAB_SSH_CLOUDFLARED for the server side. Downloads come from a
local HTTP server on 127.0.0.1, never from the internet.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from colab_ssh import ColabSSHError, Connection, ssh_status, start_ssh, stop_ssh
from colab_ssh.paths import Paths
from colab_ssh.processes import read_record, record_process
from colab_ssh.safe_files import TrustedDir
from colab_ssh.tunnels import Tunnel
from colab_ssh.tunnels import cloudflared as cf
from colab_ssh.tunnels.cloudflared import (
    CloudflaredDownloadError,
    CloudflaredIntegrityError,
    CloudflaredStartError,
    CloudflaredTunnel,
)
from colab_ssh.tunnels.registry import tunnel_names

from ..support.host import SshClient, free_port, interrupt_when, our_processes
from ..support.stand_ins import STAND_IN_CLOUDFLARED as STAND_IN
from ..support.stand_ins import STAND_INS, http_server, serve_paths, use_cloudflare_edge

HOSTNAME = re.compile(r"[a-z]+(?:-[a-z]+){3}\.trycloudflare\.com")


def gone(pid: int) -> bool:
    """Exited, and reapable: a zombie whose other threads are still being torn down is not yet
    (the kernel holds back a thread-group leader's exit status until its last thread is gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return True
    return state == "Z" and threads <= 1


@dataclass
class CloudflareEdge:
    """The stand-in's shared state (which trycloudflare hostname leads where)."""

    state: Path

    def live_hostnames(self) -> list[str]:
        """Hostnames whose agent still runs (a SIGKILLed one cannot remove its record)."""
        live = []
        for path in self.state.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                if not gone(json.loads(path.read_text())["pid"]):
                    live.append(path.name.removesuffix(".json"))
        return sorted(live)


@pytest.fixture
def edge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CloudflareEdge:
    """Server side: COLAB_SSH_CLOUDFLARED; client side (ssh's ProxyCommand): the stand-in on PATH."""
    state = use_cloudflare_edge(monkeypatch, tmp_path / "cloudflare-edge")
    monkeypatch.setenv("PATH", f"{STAND_INS}{os.pathsep}{os.environ['PATH']}")
    return CloudflareEdge(state)


@pytest.fixture
def origin() -> Iterator[int]:
    """A local port that greets like sshd (its banner line), for tests of the tunnel alone: the
    tunnel counts as open only once the banner comes back through it."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, contextlib.suppress(OSError):
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 stand-in origin\r\n")
                conn.recv(1024)

    threading.Thread(target=serve, daemon=True).start()
    yield int(server.getsockname()[1])
    server.close()


def banner_through(hostname: str) -> str:
    """What the client side (ssh's ProxyCommand) receives first from ``hostname``, or its error."""
    result = subprocess.run(
        [str(STAND_IN), "access", "ssh", "--hostname", hostname],
        input=b"", capture_output=True, timeout=20, check=False,
    )  # fmt: skip
    return result.stdout.decode(errors="replace").split("\r\n")[0] or result.stderr.decode().strip()


def agent_log(state_dir: Path) -> str:
    return (state_dir / "cloudflared.log").read_text()


def paths_for(state_dir: Path) -> Paths:
    return Paths(state_dir=state_dir.absolute(), cache_dir=state_dir.parent / "cache")


def start_cloudflared(user: str, port: int, state_dir: Path, tunnel: Tunnel | None = None) -> Connection:
    tunnel = tunnel or CloudflaredTunnel(paths_for(state_dir))
    return start_ssh(tunnel=tunnel, port=port, user=user, state_dir=state_dir, quiet=True)


def agent_pids(state_dir: Path) -> list[int]:
    return [
        pid
        for pid in our_processes(state_dir)
        if b"tunnel" in Path(f"/proc/{pid}/cmdline").read_bytes()
        and b"cloudflared" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def ssh_env(connection: Connection) -> dict[str, str]:
    return {**os.environ, "SSHPASS": connection.password or ""}


def client_options(tmp_path: Path) -> list[str]:
    return SshClient(known_hosts=tmp_path / "known_hosts").options()


def login_with_config(
    connection: Connection, tmp_path: Path, command: str
) -> subprocess.CompletedProcess[str]:
    """`ssh -F <the printed block> colab COMMAND`, connection sharing off (no master outlives us)."""
    config = tmp_path / "ssh_config"
    config.write_text(connection.ssh_config + "\n")
    argv = [
        "sshpass",
        "-e",
        "ssh",
        "-F",
        str(config),
        *client_options(tmp_path),
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "colab",
        command,
    ]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=ssh_env(connection), check=False
    )


def login_with_command(
    connection: Connection, tmp_path: Path, command: str
) -> subprocess.CompletedProcess[str]:
    """The printed ssh command, as a user pastes it (plus the test's host-key options)."""
    printed = shlex.split(connection.ssh_command)
    assert printed[0] == "ssh"
    argv = ["sshpass", "-e", "ssh", *client_options(tmp_path), *printed[1:], command]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=ssh_env(connection), check=False
    )


# --- logging in through the tunnel ------------------------------------------------------------


def test_login_with_the_printed_ssh_config_block(test_user, port, state_dir, edge, tmp_path):
    connection = start_cloudflared(test_user, port, state_dir)

    assert connection.tunnel == "cloudflared" and connection.local_port == port
    assert HOSTNAME.fullmatch(connection.host), connection.host
    assert connection.port == 22
    assert "    ProxyCommand cloudflared access ssh --hostname %h" in connection.ssh_config.splitlines()
    assert edge.live_hostnames() == [connection.host]
    result = login_with_config(connection, tmp_path, "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == test_user


def test_login_with_the_printed_config_and_pinned_host_keys(test_user, port, state_dir, edge, tmp_path):
    """The printed known_hosts lines (under HostKeyAlias) let the first login check the host key."""
    connection = start_cloudflared(test_user, port, state_dir)
    (tmp_path / "known_hosts").write_text(connection.known_hosts + "\n")
    config = tmp_path / "ssh_config"
    config.write_text(connection.ssh_config + "\n")

    result = subprocess.run(
        ["sshpass", "-e", "ssh", "-F", str(config), "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-o", "PubkeyAuthentication=no",
         "-o", "ControlMaster=no", "-o", "ControlPath=none", "colab", "true"],
        capture_output=True, text=True, timeout=60, env=ssh_env(connection), check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr


def test_login_with_the_printed_ssh_command(test_user, port, state_dir, edge, tmp_path):
    connection = start_cloudflared(test_user, port, state_dir)

    assert connection.ssh_command == (
        f"ssh -o 'ProxyCommand=cloudflared access ssh --hostname %h' {test_user}@{connection.host}"
    )
    result = login_with_command(connection, tmp_path, "echo $((6 * 7))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_the_details_say_what_the_client_needs(test_user, port, state_dir, edge):
    connection = start_cloudflared(test_user, port, state_dir)

    hints = "\n".join(connection.client_hints)
    assert [hint.split(":")[0] for hint in connection.client_hints] == ["Linux", "macOS", "Windows"]
    assert "brew install cloudflared" in hints
    assert "winget install --id Cloudflare.cloudflared" in hints
    assert "releases/latest/download/cloudflared-linux-amd64" in hints and "chmod +x" in hints
    assert connection.proxy_command == "cloudflared access ssh --hostname %h"
    assert "-p" not in shlex.split(connection.ssh_command)


def test_the_agent_runs_detached_with_its_log_and_pid_file(test_user, port, state_dir, edge):
    start_cloudflared(test_user, port, state_dir)
    (agent,) = agent_pids(state_dir)

    assert os.getsid(agent) != os.getsid(0)
    assert os.readlink(f"/proc/{agent}/fd/0") == "/dev/null"
    for fd in (1, 2):
        assert os.readlink(f"/proc/{agent}/fd/{fd}") == str(state_dir / "cloudflared.log")
    record = read_record(state_dir / "cloudflared.pid")
    assert record is not None and record.pid == agent
    argv = Path(f"/proc/{agent}/cmdline").read_bytes().decode().split("\0")
    command = argv[argv.index("tunnel") :]
    assert command[:2] == ["tunnel", "--no-autoupdate"]
    assert command[command.index("--config") + 1] == str(state_dir / "cloudflared.yml")
    assert command[command.index("--loglevel") + 1] == "info"
    assert "--protocol" not in command  # QUIC first, as cloudflared itself chooses for quick tunnels
    assert command[command.index("--url") + 1] == f"ssh://localhost:{port}"
    # cloudflared's own bare-pid file goes elsewhere: it would overwrite our record once connected.
    assert command[command.index("--pidfile") + 1] == str(state_dir / "cloudflared-agent.pid")
    assert record.argv[record.argv.index("tunnel") :] == tuple(command[:-1])  # this very command
    assert "Your quick Tunnel has been created!" in (state_dir / "cloudflared.log").read_text()


def test_rerun_reuses_the_tunnel(test_user, port, state_dir, edge):
    tunnel = CloudflaredTunnel(paths_for(state_dir))
    first = start_cloudflared(test_user, port, state_dir, tunnel)
    agents = agent_pids(state_dir)

    for _ in range(3):
        assert start_cloudflared(test_user, port, state_dir, tunnel) == first

    assert agent_pids(state_dir) == agents and len(agents) == 1


def test_stop_ssh_leaves_no_process_and_the_address_dead(test_user, port, state_dir, edge, tmp_path):
    connection = start_cloudflared(test_user, port, state_dir)

    stop_ssh()

    assert our_processes(state_dir) == []
    assert not (state_dir / "cloudflared.pid").exists()
    assert edge.live_hostnames() == []
    result = login_with_config(connection, tmp_path, "true")
    assert result.returncode != 0
    assert "websocket: bad handshake" in result.stderr


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_alive_follows_the_agent_and_the_edge(state_dir, edge, origin):
    """Killed: not alive. Forgotten by the edge (SIGUSR1 to the stand-in: "Unauthorized" on every
    retry): not alive either once it stayed unregistered past reconnect_timeout, though the agent
    still runs and retries, because only a new quick tunnel can work again."""
    first, second = (
        CloudflaredTunnel(paths_for(state_dir)),
        CloudflaredTunnel(paths_for(state_dir.parent / "b"), reconnect_timeout=1),
    )
    try:
        first.open(origin)
        second.open(origin)
        assert first.alive() and second.alive()
        (killed,) = agent_pids(state_dir)
        (forgotten,) = agent_pids(state_dir.parent / "b")

        os.kill(killed, signal.SIGKILL)
        os.kill(forgotten, signal.SIGUSR1)

        wait_for(lambda: not first.alive())
        wait_for(lambda: not second.alive(), timeout=15)
        assert not gone(forgotten)  # it did not exit: it retries, forever, like the real one
        assert edge.live_hostnames() == []
    finally:
        first.close()
        second.close()
    assert our_processes(state_dir.parent / "b") == []


def test_a_killed_agent_is_brought_back_with_a_new_address(test_user, port, state_dir, edge, tmp_path):
    tunnel = CloudflaredTunnel(paths_for(state_dir))
    first = start_cloudflared(test_user, port, state_dir, tunnel)
    (agent,) = agent_pids(state_dir)
    os.kill(agent, signal.SIGKILL)
    wait_for(lambda: gone(agent))

    again = start_cloudflared(test_user, port, state_dir, tunnel)

    assert again.host != first.host  # a quick tunnel's address dies with its agent
    assert ssh_status().tunnel_restarts == 1
    assert login_with_config(again, tmp_path, "true").returncode == 0


def test_a_tunnel_the_edge_forgot_is_replaced(test_user, port, state_dir, edge, tmp_path):
    tunnel = CloudflaredTunnel(paths_for(state_dir), reconnect_timeout=1)
    first = start_cloudflared(test_user, port, state_dir, tunnel)
    (agent,) = agent_pids(state_dir)
    os.kill(agent, signal.SIGUSR1)
    wait_for(lambda: not tunnel.alive(), timeout=15)

    again = start_cloudflared(test_user, port, state_dir, tunnel)

    assert again.host != first.host
    assert gone(agent)
    assert ssh_status().tunnel_restarts == 1
    assert login_with_config(again, tmp_path, "true").returncode == 0


def test_a_session_open_during_close_does_not_hold_it_up(test_user, port, state_dir, edge, tmp_path):
    """cloudflared waits up to 30 s for open connections on SIGTERM; close() ends it sooner."""
    connection = start_cloudflared(test_user, port, state_dir)
    config = tmp_path / "ssh_config"
    config.write_text(connection.ssh_config + "\n")
    session = subprocess.Popen(
        ["sshpass", "-e", "ssh", "-F", str(config), *client_options(tmp_path), "-o", "ControlMaster=no",
         "-o", "ControlPath=none", "colab", "echo up; sleep 60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ssh_env(connection),
    )  # fmt: skip
    try:
        assert session.stdout is not None and session.stdout.readline().strip() == "up"
        started = time.monotonic()
        stop_ssh()
        assert time.monotonic() - started < 5
        assert session.wait(timeout=20) != 0
    finally:
        session.kill()
        session.wait()
    assert our_processes(state_dir) == []


def start_orphan_agent(pid_file: Path) -> subprocess.Popen[bytes]:
    """A cloudflared as an earlier kernel would have left it: in its own session, our pid file."""
    argv = [
        str(STAND_IN),
        "tunnel",
        "--no-autoupdate",
        "--pidfile",
        str(pid_file.with_name("cloudflared-agent.pid")),
        "--url",
        "ssh://localhost:9",
    ]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def test_an_agent_left_by_an_earlier_kernel_is_stopped(test_user, port, state_dir, edge, tmp_path):
    """A notebook restart forgets our processes but not the pid file: the next start stops it."""
    pid_file = state_dir / "cloudflared.pid"
    state_dir.mkdir(parents=True)
    orphan = start_orphan_agent(pid_file)
    try:
        record_process(pid_file, orphan.pid, orphan.args)  # as the earlier kernel did
        deadline = time.monotonic() + 5
        while not edge.live_hostnames() and time.monotonic() < deadline:
            time.sleep(0.02)
        (stale,) = edge.live_hostnames()

        connection = start_cloudflared(test_user, port, state_dir)

        assert orphan.wait(timeout=5) == 0
        assert edge.live_hostnames() == [connection.host] and connection.host != stale
    finally:
        orphan.kill()
        orphan.wait()


def test_stop_stale_cloudflared_stops_an_agent_this_kernel_forgot(state_dir, edge, origin):
    """What stop_ssh(state_dir=...) in a fresh kernel needs: the pid file is enough."""
    paths = paths_for(state_dir)
    forgotten = CloudflaredTunnel(paths)
    forgotten.open(origin)
    (agent,) = agent_pids(state_dir)
    try:
        cf.stop_stale_cloudflared(paths)

        wait_for(lambda: gone(agent))
        assert not (state_dir / "cloudflared.pid").exists()
        assert not forgotten.alive()
    finally:
        forgotten.close()


def test_the_cli_sees_and_stops_an_agent_this_kernel_forgot(state_dir, edge, origin):
    """`colab-ssh status` and `stop` know a recorded cloudflared like the other tunnel agents (they
    read every kind's recorded processes from the tunnel registry; cloudflared.pid was missed)."""
    paths = paths_for(state_dir)
    forgotten = CloudflaredTunnel(paths)
    forgotten.open(origin)
    (agent,) = agent_pids(state_dir)

    def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "colab_ssh", *arguments, "--state-dir", str(state_dir)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)

    try:
        status = cli("status")
        assert status.returncode == 1, status.stderr
        assert f"An sshd or tunnel agent of start_ssh() runs in {state_dir}" in status.stdout

        stopped = cli("stop")
        assert (stopped.returncode, stopped.stdout) == (0, "Stopped.\n"), stopped.stderr
        wait_for(lambda: gone(agent))
        assert not (state_dir / "cloudflared.pid").exists()
    finally:
        forgotten.close()


# --- the real agent's habits: the user's own set-up, reconnects, a new name's delay ----------

USER_SETUPS = {
    # ~/.cloudflared/config.yml with ingress rules: they win over --url, so the quick tunnel would
    # lead to the catch-all rule (here: an HTTP 404), never to sshd.
    "config.yml ingress": (
        {".cloudflared/config.yml": "ingress:\n  - hostname: app.example.com\n    service: http://localhost:3000\n"
         "  - service: http_status:404\n"},
        {},
    ),
    # A config file's log level, and the environment's: both hide the lines we wait for.
    "config.yml loglevel": ({".cloudflared/config.yml": "loglevel: warn\n"}, {}),
    "TUNNEL_LOGLEVEL": ({}, {"TUNNEL_LOGLEVEL": "warn"}),
    # The origin from the environment: ignored while --url is given, but it must not even be seen.
    "TUNNEL_URL and friends": ({}, {"TUNNEL_URL": "http://localhost:1", "TUNNEL_TRANSPORT_PROTOCOL": "quic",
                                    "TUNNEL_PIDFILE": "/tmp/elsewhere.pid", "NO_AUTOUPDATE": "false"}),
}  # fmt: skip


@pytest.mark.parametrize("setup", USER_SETUPS, ids=list(USER_SETUPS))
def test_the_users_own_cloudflared_setup_is_ignored(
    setup, test_user, port, state_dir, edge, tmp_path, monkeypatch
):
    """Whatever the machine's cloudflared set-up says (a config file in ~/.cloudflared, TUNNEL_*
    variables), our agent runs with our empty config, --loglevel info, and none of those variables."""
    files, variables = USER_SETUPS[setup]
    home = tmp_path / "home"
    for name, text in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    monkeypatch.setenv("HOME", str(home))
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    tunnel = CloudflaredTunnel(paths_for(state_dir), start_timeout=5)

    connection = start_cloudflared(test_user, port, state_dir, tunnel)

    assert login_with_config(connection, tmp_path, "true").returncode == 0
    (agent,) = agent_pids(state_dir)
    environ = Path(f"/proc/{agent}/environ").read_bytes().split(b"\0")
    names = {entry.split(b"=")[0].decode() for entry in environ if entry}
    assert not {name for name in names if name.startswith("TUNNEL_") or name in variables}
    config = (state_dir / "cloudflared.yml").read_text()
    assert [line for line in config.splitlines() if not line.startswith("#")] == ["{}"]
    assert "was empty" not in agent_log(state_dir)  # "{}" is a document: no error line


def test_a_transient_unauthorized_keeps_the_tunnel(state_dir, edge, origin):
    """The edge drops the connection and refuses the first re-registration with "Unauthorized"
    (SIGUSR2 to the stand-in); cloudflared retries and registers again under the same name.
    alive() must say yes throughout, so the monitor never swaps the address."""
    tunnel = CloudflaredTunnel(paths_for(state_dir), reconnect_timeout=30)
    try:
        endpoint = tunnel.open(origin)
        (agent,) = agent_pids(state_dir)
        registered = agent_log(state_dir).count("Registered tunnel connection")

        os.kill(agent, signal.SIGUSR2)

        answers = []
        while agent_log(state_dir).count("Registered tunnel connection") == registered:
            answers.append(tunnel.alive())
            time.sleep(0.02)
        answers.append(tunnel.alive())
        assert "Unauthorized" in agent_log(state_dir)
        assert all(answers), answers
        assert banner_through(endpoint.host).startswith("SSH-2.0-")
        assert agent_pids(state_dir) == [agent]
    finally:
        tunnel.close()


def test_the_first_login_works_though_the_name_takes_time(
    test_user, port, state_dir, edge, tmp_path, monkeypatch
):
    """ "it may take some time to be reachable": the stand-in's new name resolves 3 s after the
    connection registers. start_ssh() returns only once the address answers, so the first login
    right after it works."""
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_REACHABLE_AFTER", "3")

    connection = start_cloudflared(test_user, port, state_dir)

    result = login_with_config(connection, tmp_path, "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == test_user


def test_a_name_that_never_answers_is_a_clear_error(test_user, port, state_dir, edge, monkeypatch):
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_REACHABLE_AFTER", "3600")
    tunnel = CloudflaredTunnel(paths_for(state_dir), start_timeout=2)

    with pytest.raises(CloudflaredStartError) as raised:
        start_cloudflared(test_user, port, state_dir, tunnel)

    assert re.search(r"connected \S+ to Cloudflare's edge, but the address did not answer", str(raised.value))
    assert "no such host" in raised.value.message_head
    assert_failed_cleanly(state_dir, edge)


# --- failures ---------------------------------------------------------------------------------


def assert_failed_cleanly(state_dir: Path, edge: CloudflareEdge) -> None:
    assert our_processes(state_dir) == []
    assert not (state_dir / "cloudflared.pid").exists()
    assert not (state_dir / "sshd.pid").exists()  # start_ssh undid sshd too
    assert edge.live_hostnames() == []


def test_no_address_within_the_time_out(test_user, port, state_dir, edge, monkeypatch):
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_FAIL", "api-timeout")
    tunnel = CloudflaredTunnel(paths_for(state_dir), start_timeout=1.5)
    started = time.monotonic()

    with pytest.raises(CloudflaredStartError) as raised:
        start_cloudflared(test_user, port, state_dir, tunnel)

    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert "printed no quick-tunnel address within 1.5 s" in message
    assert "tunnel='ngrok'" in message
    assert "Requesting new quick Tunnel on trycloudflare.com..." in raised.value.log_tail
    assert_failed_cleanly(state_dir, edge)


def test_rate_limited_fails_at_once_with_cloudflares_code(test_user, port, state_dir, edge, monkeypatch):
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_FAIL", "rate-limited")
    tunnel = CloudflaredTunnel(paths_for(state_dir), start_timeout=20)
    started = time.monotonic()

    with pytest.raises(CloudflaredStartError) as raised:
        start_cloudflared(test_user, port, state_dir, tunnel)

    assert time.monotonic() - started < 10  # the exit is noticed; the time-out is not waited out
    assert raised.value.code == "1015"
    assert "Wait a few minutes" in str(raised.value)
    assert "failed to unmarshal quick Tunnel" in raised.value.log_tail
    assert_failed_cleanly(state_dir, edge)


def test_no_way_to_the_quick_tunnel_api(test_user, port, state_dir, edge, monkeypatch):
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_FAIL", "no-network")

    with pytest.raises(CloudflaredStartError) as raised:
        start_cloudflared(test_user, port, state_dir)

    assert "api.trycloudflare.com did not answer" in str(raised.value)
    assert "no such host" in raised.value.log_tail
    assert_failed_cleanly(state_dir, edge)


def test_an_address_but_no_edge_connection(test_user, port, state_dir, edge, monkeypatch):
    """Port 7844 blocked for UDP and TCP: addresses are printed, but no connection registers over
    QUIC nor, on the second try, over HTTP/2; that is a failure now, not at the user's first login,
    and the message names both ways out."""
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_FAIL", "edge-unreachable")
    tunnel = CloudflaredTunnel(paths_for(state_dir), start_timeout=2)

    with pytest.raises(CloudflaredStartError) as raised:
        start_cloudflared(test_user, port, state_dir, tunnel)

    message = raised.value.message_head
    assert re.search(r"got the address \S+\.trycloudflare\.com but no connection .* over quic", message)
    assert re.search(r"--protocol http2: .* over http2", message)
    assert "UDP (QUIC)" in message and "TCP (HTTP/2)" in message and "port 7844" in message
    assert "HTTPS (TCP 443)" in message
    assert "Unable to establish connection with Cloudflare edge" in raised.value.log_tail
    log = agent_log(state_dir)
    assert "Failed to dial a quic connection" in log and "Initial protocol http2" in log
    assert_failed_cleanly(state_dir, edge)


def test_ctrl_c_while_it_connects_stops_it_and_starts_no_second_try(
    test_user, port, state_dir, edge, monkeypatch
):
    """start_ssh() opens the tunnel on a thread while sshd starts; Ctrl-C there asks the tunnel to
    stop (cancel()): the agent is stopped and the HTTP/2 retry never starts, so nothing waits for a
    connection that cannot come (without it: two start timeouts, then a second agent)."""
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_FAIL", "edge-unreachable")  # no connection ever registers
    tunnel = CloudflaredTunnel(paths_for(state_dir), start_timeout=30)
    watcher = interrupt_when(lambda: bool(agent_pids(state_dir)))

    with pytest.raises(KeyboardInterrupt):
        start_cloudflared(test_user, port, state_dir, tunnel)
    watcher.join(10)

    assert "Initial protocol http2" not in agent_log(state_dir)
    assert_failed_cleanly(state_dir, edge)


def test_udp_blocked_falls_back_to_http2(test_user, port, state_dir, edge, tmp_path, monkeypatch):
    """Quick tunnels are QUIC-only and never switch by themselves: with UDP dropped, the second
    start with --protocol http2 (TCP) is what registers, and the login works."""
    monkeypatch.setenv("CLOUDFLARED_STAND_IN_FAIL", "quic-blocked")
    tunnel = CloudflaredTunnel(paths_for(state_dir), start_timeout=2)

    connection = start_cloudflared(test_user, port, state_dir, tunnel)

    (agent,) = agent_pids(state_dir)
    argv = Path(f"/proc/{agent}/cmdline").read_bytes().decode().split("\0")
    assert argv[argv.index("--protocol") + 1] == "http2"
    log = agent_log(state_dir)
    assert "Failed to dial a quic connection" in log
    assert "protocol=http2" in log.split("Initial protocol http2")[1]
    assert edge.live_hostnames() == [connection.host]
    assert login_with_config(connection, tmp_path, "true").returncode == 0


def test_a_binary_that_exits_at_once(test_user, port, state_dir, edge, tmp_path, monkeypatch):
    broken = tmp_path / "bin" / "cloudflared"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'exec format error, say' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("COLAB_SSH_CLOUDFLARED", str(broken))

    with pytest.raises(CloudflaredStartError, match="exited with code 3 before it printed") as raised:
        start_cloudflared(test_user, port, state_dir)

    assert "exec format error, say" in raised.value.log_tail
    assert_failed_cleanly(state_dir, edge)


def test_colab_ssh_cloudflared_must_name_a_program(state_dir, edge, tmp_path, monkeypatch):
    monkeypatch.setenv("COLAB_SSH_CLOUDFLARED", str(tmp_path / "missing"))

    with pytest.raises(CloudflaredDownloadError, match="COLAB_SSH_CLOUDFLARED is set to"):
        CloudflaredTunnel(paths_for(state_dir)).open(free_port())


def test_the_stand_in_client_fails_like_the_real_one_for_an_unknown_host(edge):
    result = subprocess.run(
        [str(STAND_IN), "access", "ssh", "--hostname", "never-was-here-now.trycloudflare.com"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip

    assert result.returncode == 1
    assert 'ERR failed to connect to origin error="websocket: bad handshake"' in result.stderr
    assert result.stderr.endswith("websocket: bad handshake\n")


@pytest.mark.parametrize(
    ("flag", "env", "config", "shown"),
    [
        (None, None, None, True),  # the default level is info
        (None, "warn", None, False),  # $TUNNEL_LOGLEVEL
        (None, None, "warn", False),  # the config file
        (None, "info", "warn", True),  # the environment wins over the file
        ("info", "warn", "warn", True),  # the command line wins over both
    ],
)
def test_the_stand_in_resolves_settings_as_urfave_cli_does(
    flag, env, config, shown, edge, tmp_path, monkeypatch
):
    """What the real cloudflared's flags do (cliutil/logger.go:27-32, urfave/cli altsrc/flag.go:108):
    the quick tunnel's box is an info line, hidden at warn."""
    monkeypatch.setenv("HOME", str(tmp_path))
    if config:
        (tmp_path / ".cloudflared").mkdir()
        (tmp_path / ".cloudflared" / "config.yml").write_text(f"loglevel: {config}\n")
    environ = {**os.environ, **({"TUNNEL_LOGLEVEL": env} if env else {})}
    argv = [str(STAND_IN), "tunnel", *(["--loglevel", flag] if flag else []), "--url", "ssh://localhost:9"]
    agent = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environ)
    try:
        wait_for(lambda: edge.live_hostnames() != [])
    finally:
        agent.terminate()
        _out, err = agent.communicate(timeout=10)

    assert ("Your quick Tunnel has been created!" in err.decode()) is shown


def test_the_stand_in_reports_the_pinned_version():
    result = subprocess.run([str(STAND_IN), "--version"], capture_output=True, text=True, check=True)

    assert result.stdout.startswith(f"cloudflared version {cf.VERSION} ")


# --- the download: pinned, integrity-checked, from a local server in tests --------------------


@dataclass
class FileServer:
    """An HTTP server on 127.0.0.1 serving one file at /cloudflared, counting requests."""

    url: str
    requests: list[str]


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    requests: list[str] = []
    with serve_paths({"/cloudflared": STAND_IN.read_bytes()}, requests) as url:
        yield FileServer(url, requests)


STAND_IN_SHA256 = hashlib.sha256(STAND_IN.read_bytes()).hexdigest()


def test_download_verifies_then_runs_the_file(
    test_user, port, state_dir, edge, file_server, monkeypatch, tmp_path
):
    """No COLAB_SSH_CLOUDFLARED: the file is fetched, checked, cached, and is what runs."""
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED")
    paths = paths_for(state_dir)
    tunnel = CloudflaredTunnel(paths, download_url=f"{file_server.url}/cloudflared", sha256=STAND_IN_SHA256)

    connection = start_cloudflared(test_user, port, state_dir, tunnel)

    (cached,) = paths.cache_dir.iterdir()
    assert cached.name == f"cloudflared-sha256-{STAND_IN_SHA256[:16]}"
    assert cached.stat().st_mode & 0o777 == 0o755
    assert cached.read_bytes() == STAND_IN.read_bytes()
    (agent,) = agent_pids(state_dir)
    assert str(cached).encode() in Path(f"/proc/{agent}/cmdline").read_bytes()
    assert login_with_config(connection, tmp_path, "true").returncode == 0
    assert file_server.requests == ["/cloudflared"]

    stop_ssh()
    start_cloudflared(test_user, port, state_dir, tunnel)
    assert file_server.requests == ["/cloudflared"]  # cached: fetched once


def test_a_download_still_held_open_for_writing_is_run_once_it_is_free(
    test_user, port, state_dir, edge, file_server, hold_for_writing, monkeypatch, tmp_path
):
    """The download is written in the tunnel's start step while other steps fork (apt, sshd -V):
    a child forked meanwhile holds it open for writing until its own exec, and starting it fails
    with "Text file busy". A holder makes that happen every time: the start waits it out."""
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED")
    held = []
    real_download = cf.download_verified

    def download_then_hold(url: str, sha256: str, cache: TrustedDir, name: str) -> None:
        real_download(url, sha256, cache, name)
        held.append(hold_for_writing(cache.path / name))

    monkeypatch.setattr(cf, "download_verified", download_then_hold)
    tunnel = CloudflaredTunnel(
        paths_for(state_dir), download_url=f"{file_server.url}/cloudflared", sha256=STAND_IN_SHA256
    )

    connection = start_cloudflared(test_user, port, state_dir, tunnel)

    assert len(held) == 1
    assert login_with_config(connection, tmp_path, "true").returncode == 0


def test_a_wrong_digest_deletes_the_file(state_dir, edge, file_server, monkeypatch):
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED")
    paths = paths_for(state_dir)
    wrong = "0" * 64
    tunnel = CloudflaredTunnel(paths, download_url=f"{file_server.url}/cloudflared", sha256=wrong)

    with pytest.raises(CloudflaredIntegrityError) as raised:
        tunnel.open(free_port())

    assert raised.value.expected == wrong and raised.value.actual == STAND_IN_SHA256
    assert "not saved and not run" in str(raised.value)
    assert list(paths.cache_dir.iterdir()) == []  # neither the file nor a partial one
    assert our_processes(state_dir) == []


def test_a_download_from_a_server_that_is_down(state_dir, edge, monkeypatch):
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED")
    paths = paths_for(state_dir)
    tunnel = CloudflaredTunnel(
        paths, download_url=f"http://127.0.0.1:{free_port()}/cloudflared", sha256="a" * 64
    )

    with pytest.raises(CloudflaredDownloadError, match=r"needs internet access to github\.com") as raised:
        tunnel.open(free_port())

    assert not isinstance(raised.value, CloudflaredIntegrityError)
    assert "refused" in str(raised.value).lower()
    assert list(paths.cache_dir.iterdir()) == []


def test_a_download_answered_with_404(state_dir, edge, file_server, monkeypatch):
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED")
    tunnel = CloudflaredTunnel(paths_for(state_dir), download_url=f"{file_server.url}/gone", sha256="a" * 64)

    with pytest.raises(CloudflaredDownloadError, match="HTTP Error 404"):
        tunnel.open(free_port())


def test_the_pinned_download_goes_to_github_releases(state_dir, monkeypatch):
    """What would be fetched by default (nothing is fetched here: the download is intercepted)."""
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED", raising=False)
    fetched: list[tuple[str, str, Path]] = []
    monkeypatch.setattr(
        cf, "download_verified", lambda url, sha, cache, name: fetched.append((url, sha, cache.path / name))
    )
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    paths = paths_for(state_dir)

    assert CloudflaredTunnel(paths).binary() == paths.cache_dir / f"cloudflared-{cf.VERSION}"

    assert fetched == [
        (
            f"https://github.com/cloudflare/cloudflared/releases/download/{cf.VERSION}/cloudflared-linux-arm64",
            cf.SHA256["cloudflared-linux-arm64"],
            paths.cache_dir / f"cloudflared-{cf.VERSION}",
        )
    ]


def test_close_before_open_is_harmless(state_dir):
    tunnel = CloudflaredTunnel(paths_for(state_dir))
    tunnel.close()
    assert not tunnel.alive()
    assert isinstance(tunnel, Tunnel) and tunnel.name == "cloudflared"


# --- by name: start_ssh(tunnel="cloudflared"), once core wires the name -----------------------

wired = pytest.mark.skipif(
    "cloudflared" not in tunnel_names(),
    reason='tunnel="cloudflared" is not wired into start_ssh() yet',
)


@wired
def test_by_name_with_no_ngrok_token_anywhere(test_user, port, state_dir, edge, tmp_path, monkeypatch):
    """No authtoken is looked for (and no prompt shown): the quick tunnel needs no account."""
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)

    connection = start_ssh(tunnel="cloudflared", port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert connection.tunnel == "cloudflared" and HOSTNAME.fullmatch(connection.host)
    assert login_with_config(connection, tmp_path, "true").returncode == 0
    stop_ssh()
    assert our_processes(state_dir) == [] and edge.live_hostnames() == []


@wired
def test_stop_ssh_in_a_new_kernel_stops_the_old_agent(state_dir, edge):
    """stop_ssh(state_dir=...) with no session in this process: the pid file leads to the agent."""
    pid_file = state_dir / "cloudflared.pid"
    state_dir.mkdir(parents=True)
    orphan = start_orphan_agent(pid_file)
    try:
        record_process(pid_file, orphan.pid, orphan.args)  # as the earlier kernel did
        wait_for(lambda: edge.live_hostnames() != [])

        stop_ssh(state_dir=state_dir)

        assert orphan.wait(timeout=5) == 0
        assert not pid_file.exists()
    finally:
        orphan.kill()
        orphan.wait()


# --- the download and the cache: root runs this file ------------------------------------------


def downloading_tunnel(state_dir: Path, url: str, monkeypatch) -> CloudflaredTunnel:
    monkeypatch.delenv("COLAB_SSH_CLOUDFLARED", raising=False)
    return CloudflaredTunnel(paths_for(state_dir), download_url=url, sha256=STAND_IN_SHA256)


def cache_files(state_dir: Path) -> list[str]:
    cache = paths_for(state_dir).cache_dir
    return sorted(path.name for path in cache.iterdir()) if cache.exists() else []


def test_the_cached_binary_is_checked_before_every_run(
    test_user, port, state_dir, edge, file_server, monkeypatch
):
    """A cached file changed after the download (same name, still executable) is never run: its
    digest is compared before each start, and the pinned file is fetched again."""
    tunnel = downloading_tunnel(state_dir, f"{file_server.url}/cloudflared", monkeypatch)
    start_cloudflared(test_user, port, state_dir, tunnel)
    stop_ssh()
    (cached,) = paths_for(state_dir).cache_dir.iterdir()
    marker = state_dir.parent / "tampered-file-ran"
    cached.write_text(f'#!/bin/sh\ntouch {marker}\nexec {STAND_IN} "$@"\n')

    start_cloudflared(test_user, port, state_dir, tunnel)

    assert not marker.exists()
    assert cached.read_bytes() == STAND_IN.read_bytes()
    assert file_server.requests == ["/cloudflared", "/cloudflared"]


def test_a_trickling_server_cannot_outrun_the_deadline(state_dir, edge, monkeypatch):
    """One deadline for the whole download: a server that sends a byte at a time (each one
    restarting a per-read time-out) is cut off, and no partial file is left anywhere."""
    monkeypatch.setattr("colab_ssh.tunnels.cloudflared_download.DOWNLOAD_DEADLINE", 1.5, raising=False)
    monkeypatch.setattr(cf, "DOWNLOAD_DEADLINE", 1.5, raising=False)  # where older code kept it
    body = STAND_IN.read_bytes()

    def trickle(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(OSError):
            for index in range(100):  # 10 s at most, then the connection ends early
                handler.wfile.write(body[index : index + 1])
                handler.wfile.flush()
                time.sleep(0.1)

    with http_server(trickle) as (url, _asked):
        tunnel = downloading_tunnel(state_dir, f"{url}/cloudflared", monkeypatch)
        with pytest.raises(CloudflaredDownloadError) as raised:
            tunnel.open(free_port())

    assert "did not finish within 1.5 s" in str(raised.value)
    assert cache_files(state_dir) == []
    assert our_processes(state_dir) == []


@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_https_only_holds_for_every_redirect(scheme, state_dir, edge, monkeypatch):
    """A redirect off https (to plain http on another host, or to ftp) is refused, not followed.
    (Plain http is allowed to this machine only, where tests serve from; 192.0.2.2 is not that.)"""
    from colab_ssh.system import local_address

    body = STAND_IN.read_bytes()

    def serve_file(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with http_server(serve_file, host="0.0.0.0") as (elsewhere, asked_elsewhere):
        port = elsewhere.rsplit(":", 1)[1]
        target = {"http": f"http://{local_address()}:{port}/cloudflared", "ftp": f"ftp://127.0.0.1:{port}/x"}[
            scheme
        ]

        def redirect(handler) -> None:
            handler.send_response(302)
            handler.send_header("Location", target)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with http_server(redirect) as (url, _asked):
            tunnel = downloading_tunnel(state_dir, f"{url}/cloudflared", monkeypatch)
            with pytest.raises(CloudflaredDownloadError) as raised:
                tunnel.open(free_port())

    assert f"redirected to {target!r}, which is not https://; refused" in str(raised.value)
    assert asked_elsewhere == []
    assert cache_files(state_dir) == []


def test_a_link_planted_at_the_old_temporary_name_is_not_followed(state_dir, edge, file_server, monkeypatch):
    """The temporary file's name is random and opened O_EXCL|O_NOFOLLOW: links waiting at any
    name we used to use (.<name>.<pid>.part) lead nowhere, and their targets stay as they were."""
    cache = paths_for(state_dir).cache_dir
    cache.mkdir(parents=True, mode=0o700)
    victim = state_dir.parent / "victim"
    victim.write_text("root's file\n")
    victim.chmod(0o600)
    name = f"cloudflared-sha256-{STAND_IN_SHA256[:16]}"
    for pid in range(os.getpid() - 5, os.getpid() + 6):
        (cache / f".{name}.{pid}.part").symlink_to(victim)
    tunnel = downloading_tunnel(state_dir, f"{file_server.url}/cloudflared", monkeypatch)

    binary = tunnel.binary()

    assert victim.read_text() == "root's file\n" and victim.stat().st_mode & 0o777 == 0o600
    assert binary.read_bytes() == STAND_IN.read_bytes() and not binary.is_symlink()


@pytest.mark.parametrize("problem", ["others can write", "another owner"])
def test_a_cache_folder_others_control_is_refused(problem, state_dir, edge, file_server, monkeypatch):
    cache = paths_for(state_dir).cache_dir
    cache.mkdir(parents=True, mode=0o700)
    if problem == "others can write":
        cache.chmod(0o777)
    else:
        os.chown(cache, 65534, 65534)
    tunnel = downloading_tunnel(state_dir, f"{file_server.url}/cloudflared", monkeypatch)

    with pytest.raises(ColabSSHError, match=str(cache)):
        tunnel.open(free_port())

    assert cache_files(state_dir) == []
    assert file_server.requests == []


@pytest.mark.parametrize("problem", ["a folder", "not executable"])
def test_an_unusable_cached_binary_is_explained(problem, state_dir, edge, file_server, monkeypatch):
    tunnel = downloading_tunnel(state_dir, f"{file_server.url}/cloudflared", monkeypatch)
    cached = tunnel.binary()
    if problem == "a folder":
        cached.unlink()
        cached.mkdir()
    else:
        cached.chmod(0o644)

    with pytest.raises(CloudflaredDownloadError) as raised:
        tunnel.open(free_port())

    fix = f"rm -r {cached}" if problem == "a folder" else f"chmod 755 {cached}"
    assert fix in str(raised.value)
    assert our_processes(state_dir) == []
