"""Tests of the ngrok agent stand-in itself, driven by real pyngrok the way colab_ssh drives it.

Every agent gets its own config, accounts file and session-state folder under ``tmp_path``; every
process started here is killed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyngrok import ngrok, process
from pyngrok.conf import PyngrokConfig
from pyngrok.exception import PyngrokNgrokError, PyngrokNgrokHTTPError

STAND_IN = Path(__file__).resolve().parent.parent / "stand_ins" / "ngrok"

GOOD = "2goodToken_abcdefghijklmnop"
NO_CARD = "2noCardToken_abcdefghijklmn"
SINGLE = "2singleSession_abcdefghijkl"
MALFORMED = "2unknownToken_abcdefghijklm"  # not two 16+ character runs joined by "_"
UNKNOWN = "2unknownTokenAbcdefghij_KLMNOPqrstuvwxyz12"  # shaped like a real token, but no account
REVOKED = "2revokedTokenAbcdefghij_KLMNOPqrstuvwxyz12"

MakeConfig = Callable[..., PyngrokConfig]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Accounts and session state for this test only; no token leaks in from the environment."""
    accounts = {
        GOOD: {"card": True, "max_sessions": 3},
        NO_CARD: {"card": False, "max_sessions": 3},
        SINGLE: {"card": True, "max_sessions": 1},
        REVOKED: {"revoked": True},
    }
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text(json.dumps(accounts))
    monkeypatch.setenv("STAND_IN_NGROK_ACCOUNTS", str(accounts_file))
    monkeypatch.setenv("STAND_IN_NGROK_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("NGROK_AUTHTOKEN", raising=False)
    monkeypatch.delenv("NGROK_API_KEY", raising=False)
    return tmp_path


@pytest.fixture
def make_config(world: Path) -> Iterator[MakeConfig]:
    """Build a PyngrokConfig for the stand-in (token in a config file), and kill its agent after."""
    made: list[PyngrokConfig] = []

    def build(token: str | None, name: str = "ngrok.yml", ngrok_path: Path = STAND_IN) -> PyngrokConfig:
        config_file = world / name
        agent = f'agent:\n  authtoken: "{token}"\n' if token else ""
        config_file.write_text(f'version: "3"\n{agent}')
        config = PyngrokConfig(
            ngrok_path=str(ngrok_path),
            config_path=str(config_file),
            start_new_session=True,
            startup_timeout=10,
        )
        config.auth_token = None
        config.api_key = None
        made.append(config)
        return config

    yield build
    for config in made:
        ngrok.kill(config)
        process.kill_process(config.ngrok_path)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A local TCP echo server that half-closes back when the client half-closes."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def host_port(public_url: str | None) -> tuple[str, int]:
    match = re.fullmatch(r"tcp://(127\.0\.0\.1):(\d+)", public_url or "")
    assert match, public_url
    return match.group(1), int(match.group(2))


def recv_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def agent_of_version(directory: Path, version: str) -> Path:
    """A copy of the stand-in that reports ``version`` (its VERSION line, as an older binary would)."""
    text = STAND_IN.read_text()
    copy = directory / "bin" / "ngrok"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(re.sub(r'^VERSION = "[^"]*"', f'VERSION = "{version}"', text, count=1, flags=re.M))
    copy.chmod(0o755)
    return copy


def version_of(binary: Path) -> str:
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=10)
    return result.stdout.strip()


def start_raw_agent(
    config_file: Path, binary: Path = STAND_IN
) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """Start the stand-in the way pyngrok does, without pyngrok, and collect its stdout lines."""
    agent = subprocess.Popen(
        [str(binary), "start", "--none", "--log", "stdout", "--config", str(config_file)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert agent.stdout is not None
        for line in agent.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return agent, lines


def wait_for_line(lines: queue.Queue[str], needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout}s")


def test_connect_relays_bytes_both_ways_and_disconnect_closes(
    make_config: MakeConfig, echo_port: int
) -> None:
    config = make_config(GOOD)

    tunnel = ngrok.connect(str(echo_port), "tcp", pyngrok_config=config)

    host, port = host_port(tunnel.public_url)
    assert tunnel.proto == "tcp"
    assert tunnel.upstream == {"url": f"localhost:{echo_port}", "protocol": "tcp"}
    payload = os.urandom(300_000)
    with socket.create_connection((host, port), timeout=5) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)  # the EOF must travel to the echo server and back
        assert recv_all(client) == payload
    lingering = socket.create_connection((host, port), timeout=5)
    lingering.sendall(b"x")
    assert lingering.recv(1) == b"x"
    assert [t.public_url for t in ngrok.get_tunnels(config)] == [tunnel.public_url]

    ngrok.disconnect(tunnel.public_url or "", config)

    assert ngrok.get_tunnels(config) == []
    with lingering, contextlib.suppress(ConnectionResetError):  # a reset is a close too
        assert lingering.recv(1) == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2)


def test_refused_upstream_closes_the_public_connection_and_logs_a_warning(make_config: MakeConfig) -> None:
    config = make_config(GOOD)
    dead_port = closed_port()
    tunnel = ngrok.connect(str(dead_port), "tcp", pyngrok_config=config)

    client = socket.create_connection(host_port(tunnel.public_url), timeout=5)
    with client, contextlib.suppress(ConnectionResetError):  # a reset is a close too
        assert client.recv(1) == b""

    agent = process.get_process(config)
    expected = f"dial tcp 127.0.0.1:{dead_port}: connect: connection refused"
    deadline = time.monotonic() + 3
    while not any(log.lvl == "WARNING" and log.err == expected for log in agent.logs):
        assert time.monotonic() < deadline, [log.line for log in agent.logs]
        time.sleep(0.02)


def test_malformed_authtoken_is_err_ngrok_105_and_echoes_the_token(make_config: MakeConfig) -> None:
    config = make_config(MALFORMED)

    with pytest.raises(PyngrokNgrokError) as caught:
        ngrok.connect("22", "tcp", pyngrok_config=config)

    error = caught.value
    assert error.ngrok_error_code == "ERR_NGROK_105"
    assert error.ngrok_error is not None
    assert f"Your authtoken: {MALFORMED}\\n" in error.ngrok_error  # backslash-n, as the agent logs it
    assert not process.is_process_running(config.ngrok_path)


def test_well_formed_unknown_authtoken_is_err_ngrok_107_and_echoes_the_token(make_config: MakeConfig) -> None:
    config = make_config(UNKNOWN)

    with pytest.raises(PyngrokNgrokError) as caught:
        ngrok.connect("22", "tcp", pyngrok_config=config)

    error = caught.value
    assert error.ngrok_error_code == "ERR_NGROK_107"
    assert "properly formed, but it is invalid" in (error.ngrok_error or "")
    assert f"Your authtoken: {UNKNOWN}\\n" in (error.ngrok_error or "")
    assert not process.is_process_running(config.ngrok_path)


def test_revoked_authtoken_is_err_ngrok_300_naming_the_credential_not_the_token(
    make_config: MakeConfig,
) -> None:
    config = make_config(REVOKED)

    with pytest.raises(PyngrokNgrokError) as caught:
        ngrok.connect("22", "tcp", pyngrok_config=config)

    assert caught.value.ngrok_error_code == "ERR_NGROK_300"
    assert re.search(r"credential cr_\w+ has been revoked", caught.value.ngrok_error or "")
    assert REVOKED not in (caught.value.ngrok_error or "")


def test_authtoken_from_the_environment_wins_over_the_config_file(
    make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(GOOD)  # a good token in ngrok.yml...
    monkeypatch.setenv("NGROK_AUTHTOKEN", UNKNOWN)  # ...and an unknown one in the environment

    with pytest.raises(PyngrokNgrokError) as caught:
        ngrok.connect("22", "tcp", pyngrok_config=config)

    assert caught.value.ngrok_error_code == "ERR_NGROK_107"  # the environment's token was used
    monkeypatch.delenv("NGROK_AUTHTOKEN")
    assert (ngrok.connect("22", "tcp", pyngrok_config=config).public_url or "").startswith("tcp://")


def test_missing_authtoken_is_err_ngrok_4018(make_config: MakeConfig) -> None:
    config = make_config(None)

    with pytest.raises(PyngrokNgrokError) as caught:
        ngrok.connect("22", "tcp", pyngrok_config=config)

    assert caught.value.ngrok_error_code == "ERR_NGROK_4018"
    assert "requires a verified account and authtoken" in (caught.value.ngrok_error or "")


def test_second_agent_of_a_one_session_account_is_err_ngrok_108(make_config: MakeConfig, world: Path) -> None:
    first_config = world / "first.yml"
    first_config.write_text(f'version: "3"\nagent:\n  authtoken: {SINGLE}\n')
    first, lines = start_raw_agent(first_config)
    try:
        wait_for_line(lines, 'msg="tunnel session started"')
        config = make_config(SINGLE)

        with pytest.raises(PyngrokNgrokError) as caught:
            ngrok.connect("22", "tcp", pyngrok_config=config)

        assert caught.value.ngrok_error_code == "ERR_NGROK_108"
        assert "limited to 1 simultaneous ngrok agent sessions" in (caught.value.ngrok_error or "")

        started = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=2) == 0
        assert time.monotonic() - started < 0.5
        assert list((world / "state").glob("*.session")) == []
        # The session is free again: the same account may now start an agent.
        assert (ngrok.connect("22", "tcp", pyngrok_config=config).public_url or "").startswith("tcp://")
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()


def test_tcp_without_a_card_is_http_502_err_ngrok_8013(make_config: MakeConfig) -> None:
    config = make_config(NO_CARD)

    with pytest.raises(PyngrokNgrokHTTPError) as caught:
        ngrok.connect("22", "tcp", pyngrok_config=config)

    assert caught.value.status_code == 502
    body = json.loads(caught.value.body)
    assert (body["error_code"], body["status_code"], body["msg"]) == (105, 502, "failed to start tunnel")
    assert body["details"]["err"].startswith("You must add a credit or debit card")
    assert body["details"]["err"].endswith("\r\n\r\nERR_NGROK_8013\r\n")
    assert "\nPlease add a card" in body["details"]["err"]


def test_kill_leaves_no_stand_in_process(make_config: MakeConfig) -> None:
    config = make_config(GOOD)
    ngrok.connect("22", "tcp", pyngrok_config=config)
    agent = process.get_process(config).proc

    ngrok.kill(config)

    assert agent.poll() is not None
    assert not process.is_process_running(config.ngrok_path)
    with pytest.raises(ProcessLookupError):
        os.killpg(agent.pid, 0)  # start_new_session: the agent led its own group; nothing is left in it


def test_command_line_version_config_and_flags(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STAND_IN), *args], capture_output=True, text=True, timeout=10)

    assert run("--version").stdout == "ngrok version 3.39.8\n"
    assert run("version").stdout == "ngrok version 3.39.8\n"

    config_file = tmp_path / "conf" / "ngrok.yml"
    saved = run("config", "add-authtoken", GOOD, "--config", str(config_file), "--log", "stdout")
    assert saved.returncode == 0
    assert saved.stdout == f"Authtoken saved to configuration file: {config_file}\n"
    assert config_file.read_text() == f'version: "3"\nagent:\n  authtoken: {GOOD}\n'
    assert config_file.stat().st_mode & 0o777 == 0o600

    bad = run("start", "--none", "--log", "stdout", "--frobnicate")
    assert bad.returncode == 1
    assert "unknown flag: --frobnicate" in bad.stderr


def test_an_agent_before_3_30_has_no_endpoints_api(world: Path) -> None:
    old = agent_of_version(world, "3.20.0")
    assert version_of(old) == "ngrok version 3.20.0"
    config_file = world / "old.yml"
    config_file.write_text(f'version: "3"\nagent:\n  authtoken: {GOOD}\n')
    agent, lines = start_raw_agent(config_file, old)
    try:
        line = wait_for_line(lines, 'msg="starting web service"')
        api_url = "http://" + re.search(r"addr=(\S+)", line).group(1)  # type: ignore[union-attr]
        wait_for_line(lines, 'msg="tunnel session started"')

        with pytest.raises(PyngrokNgrokHTTPError) as caught:
            ngrok.api_request(f"{api_url}/api/endpoints", method="GET")
        assert caught.value.status_code == 404
        assert ngrok.api_request(f"{api_url}/api/tunnels", method="GET")["tunnels"] == []
    finally:
        agent.kill()
        agent.wait()


def test_update_replaces_an_old_agent_and_fails_offline(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = agent_of_version(world, "3.20.0")
    config = PyngrokConfig(ngrok_path=str(old), config_path=str(world / "ngrok.yml"))
    (world / "ngrok.yml").write_text('version: "3"\n')

    monkeypatch.setenv("STAND_IN_NGROK_OFFLINE", "1")
    with pytest.raises(PyngrokNgrokError, match=r"update\.ngrok-agent\.com"):
        ngrok.update(config)  # pyngrok's own update call, as colab_ssh uses it
    assert version_of(old) == "ngrok version 3.20.0"

    monkeypatch.delenv("STAND_IN_NGROK_OFFLINE")
    ngrok.update(config)
    assert version_of(old) == "ngrok version 3.39.8"
    assert old.stat().st_mode & 0o777 == 0o755
    assert [path.name for path in old.parent.iterdir()] == ["ngrok"]  # no temporary file left


UNKNOWN_FIELD_REQUESTS = [
    ("/api/endpoints", {"url": "tcp://", "upstream": {"url": "localhost:22"}, "proto": "tcp"}, "proto"),
    ("/api/endpoints", {"url": "tcp://", "upstream": {"url": "localhost:22", "addr": "22"}}, "addr"),
    ("/api/endpoints", {"url": "tcp://", "upstream": {"url": "localhost:22"}, "bind_tls": True}, "bind_tls"),
    ("/api/tunnels", {"proto": "tcp", "addr": "22", "upstream": {"url": "22"}}, "upstream"),
    ("/api/tunnels", {"proto": "tcp", "addr": "22", "options": {}}, "options"),
]


@pytest.mark.parametrize(("path", "body", "field"), UNKNOWN_FIELD_REQUESTS)
def test_unknown_fields_are_a_400_like_the_agents_strict_decoding(
    make_config: MakeConfig, path: str, body: dict[str, object], field: str
) -> None:
    config = make_config(GOOD)
    api_url = ngrok.get_ngrok_process(config).api_url

    with pytest.raises(PyngrokNgrokHTTPError) as caught:
        ngrok.api_request(f"{api_url}{path}", method="POST", data={"name": "t", **body})

    assert caught.value.status_code == 400
    answer = json.loads(caught.value.body)
    assert (answer["error_code"], answer["msg"]) == (102, "invalid tunnel configuration")
    assert f"field {field} not found in type config." in answer["details"]["err"]
    assert ngrok.get_tunnels(config) == []  # nothing was started


def test_documented_fields_are_accepted(make_config: MakeConfig, echo_port: int) -> None:
    config = make_config(GOOD)
    api_url = ngrok.get_ngrok_process(config).api_url
    endpoint = {
        "name": "e", "url": "tcp://", "upstream": {"url": f"localhost:{echo_port}", "proxy_protocol": ""},
        "metadata": "m", "description": "d", "inspect": False, "pooling_enabled": False,
    }  # fmt: skip
    tunnel = {"name": "t", "proto": "tcp", "addr": str(echo_port), "metadata": "m", "remote_addr": ""}

    assert ngrok.api_request(f"{api_url}/api/endpoints", method="POST", data=endpoint)["name"] == "e"
    assert ngrok.api_request(f"{api_url}/api/tunnels", method="POST", data=tunnel)["name"] == "t"
