"""`colab-ssh proxy`: a new address with no new paste. The real OpenSSH client, with host-key checking
on and the key pinned under the alias, logs in through ``ProxyCommand python -m colab_ssh proxy ...``
to a real sshd behind the stand-in ngrok agent; the tunnel reopens at a new port and the same
command works again, through the address file (host_keys_dir) and through ngrok's API (its stand-in)."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyngrok import conf, ngrok

from colab_ssh import Connection, NgrokAuthtokenError, ssh_status, start_ssh
from colab_ssh.laptop.lookup import from_ngrok_api
from colab_ssh.paths import Paths
from colab_ssh.published import ADDRESS_FILE

from ..support.host import ClientKey, our_processes, start_published_ngrok
from ..support.ngrok_api import NgrokApi
from ..support.stand_ins import STAND_IN_CLOUDFLARED, NgrokCloud, use_cloudflare_edge

REVIVE_SECONDS = 20


def proxy_command(alias: str, *source: str) -> str:
    """What the managed block's ProxyCommand runs (this interpreter, as `connect` writes sys.executable)."""
    argv = [sys.executable, "-m", "colab_ssh", "proxy", "colab", "--alias", alias, *source]
    return shlex.join(argv) + " %h %p"


def ssh_through_proxy(
    connection: Connection,
    key: ClientKey,
    tmp_path: Path,
    proxy: str,
    command: str = "id -un",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`ssh` to the address the block holds (the one `connect` saw), the key pinned, checking on."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(connection.known_hosts + "\n")
    argv = [
        "ssh", "-F", "/dev/null", "-i", str(key.private), "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", f"HostKeyAlias={connection.host_key_alias}", "-o", f"ProxyCommand={proxy}",
        "-o", "ConnectTimeout=20", "-p", str(connection.port),
        f"{connection.user}@{connection.host}", command,
    ]  # fmt: skip
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}, check=False
    )


def agent_pid(state_dir: Path) -> int:
    (pid,) = [p for p in our_processes(state_dir) if b"ngrok.yml" in Path(f"/proc/{p}/cmdline").read_bytes()]
    return pid


def reopen_elsewhere(state_dir: Path, first: Connection) -> Connection:
    """Kill the agent: the monitor opens a new tunnel, at another port (the old one is dead)."""
    os.kill(agent_pid(state_dir), signal.SIGKILL)
    deadline = time.monotonic() + REVIVE_SECONDS
    while time.monotonic() < deadline:
        now = ssh_status().connection
        if now is not None and now.port != first.port and ssh_status().tunnel_alive:
            return now
        time.sleep(0.2)
    pytest.fail(f"the tunnel did not come back within {REVIVE_SECONDS} s")


def refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def decoy() -> Iterator[tuple[int, list[object]]]:
    """A listener standing for a hostile address: it records every connection it gets."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[object] = []

    def serve() -> None:
        while True:
            try:
                conn, peer = server.accept()
            except OSError:
                return
            accepted.append(peer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield int(server.getsockname()[1]), accepted
    server.close()


# --- the address file ----------------------------------------------------------------------------


def test_the_runtime_writes_its_address_next_to_the_host_keys(
    test_user, port, state_dir, tmp_path, ngrok_cloud: NgrokCloud, client_key
):
    keys_dir = tmp_path / "drive" / "keys"
    connection = start_published_ngrok(
        test_user, port, state_dir, keys_dir, ngrok_cloud.add_account("tok_px_1"), client_key.public_line
    )

    address = keys_dir / ADDRESS_FILE
    assert stat.S_IMODE(address.stat().st_mode) == 0o644
    record = json.loads(address.read_text())
    assert record["format"] == 1 and record["updated"].endswith("Z")
    assert (record["host"], record["port"], record["user"]) == (connection.host, connection.port, test_user)
    assert record["host_key_alias"] == connection.host_key_alias
    assert record["host_keys"] == [key.public_key for key in connection.host_keys]
    assert record["tunnel"] == "ngrok" and record["client_command"] is None
    assert "tok_px_1" not in address.read_text()


def test_a_failed_start_writes_no_address(test_user, port, state_dir, tmp_path, ngrok_cloud, client_key):
    keys_dir = tmp_path / "keys"
    with pytest.raises(NgrokAuthtokenError):
        start_published_ngrok(
            test_user, port, state_dir, keys_dir, "tok_not_an_account", client_key.public_line
        )

    assert not (keys_dir / ADDRESS_FILE).exists()


def test_through_the_address_file_after_the_tunnel_moved(
    test_user, port, state_dir, tmp_path, ngrok_cloud: NgrokCloud, client_key
):
    keys_dir = tmp_path / "keys"
    first = start_published_ngrok(
        test_user, port, state_dir, keys_dir, ngrok_cloud.add_account("tok_px_2"), client_key.public_line
    )
    proxy = proxy_command(first.host_key_alias, "--from", str(keys_dir))
    assert ssh_through_proxy(first, client_key, tmp_path, proxy).stdout.strip() == test_user

    now = reopen_elsewhere(state_dir, first)

    assert refused(first.port)  # the address the config holds is dead
    assert json.loads((keys_dir / ADDRESS_FILE).read_text())["port"] == now.port
    again = ssh_through_proxy(first, client_key, tmp_path, proxy)  # the same command, no new paste
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == test_user


def test_the_proxy_takes_the_file_itself_too(test_user, port, state_dir, tmp_path, ngrok_cloud, client_key):
    keys_dir = tmp_path / "keys"
    first = start_published_ngrok(
        test_user, port, state_dir, keys_dir, ngrok_cloud.add_account("tok_px_3"), client_key.public_line
    )
    reopen_elsewhere(state_dir, first)

    proxy = proxy_command(first.host_key_alias, "--from", str(keys_dir / ADDRESS_FILE))
    result = ssh_through_proxy(first, client_key, tmp_path, proxy)

    assert result.returncode == 0, result.stderr


def test_a_file_for_other_host_keys_is_not_followed(
    test_user, port, state_dir, tmp_path, ngrok_cloud, client_key, decoy
):
    decoy_port, accepted = decoy
    keys_dir = tmp_path / "keys"
    first = start_published_ngrok(
        test_user, port, state_dir, keys_dir, ngrok_cloud.add_account("tok_px_4"), client_key.public_line
    )
    synced = tmp_path / "synced"
    synced.mkdir()
    record = json.loads((keys_dir / ADDRESS_FILE).read_text())
    (synced / ADDRESS_FILE).write_text(
        json.dumps({**record, "port": decoy_port, "host_key_alias": "colab-ssh-0000000000"})
    )

    result = ssh_through_proxy(
        first, client_key, tmp_path, proxy_command(first.host_key_alias, "--from", str(synced))
    )

    assert accepted == []
    assert f"is for host colab-ssh-0000000000, not {first.host_key_alias}" in result.stderr
    assert f"trying the last known address {first.host}:{first.port}" in result.stderr
    assert result.returncode == 0, result.stderr  # the last known address still works


@pytest.mark.parametrize(
    "change",
    [
        {"host": "127.0.0.1\n    ProxyCommand touch {marker}"},
        {"host": "-oProxyCommand=touch {marker}"},
        {"port": "{decoy} "},
        {"client_command": "sh -c 'touch {marker}' %h"},
        {"client_command": "cloudflared access ssh --hostname %h;touch {marker}"},
    ],
)
def test_a_hostile_file_is_refused(
    test_user, port, state_dir, tmp_path, ngrok_cloud, client_key, decoy, change
):
    decoy_port, accepted = decoy
    marker = tmp_path / "ran"
    keys_dir = tmp_path / "keys"
    first = start_published_ngrok(
        test_user, port, state_dir, keys_dir, ngrok_cloud.add_account("tok_px_5"), client_key.public_line
    )
    record = {**json.loads((keys_dir / ADDRESS_FILE).read_text()), "port": decoy_port}
    for name, value in change.items():
        record[name] = value.format(marker=marker, decoy=decoy_port)
    synced = tmp_path / "synced"
    synced.mkdir()
    (synced / ADDRESS_FILE).write_text(json.dumps(record))

    result = ssh_through_proxy(
        first, client_key, tmp_path, proxy_command(first.host_key_alias, "--from", str(synced))
    )

    assert "colab-ssh proxy: refused" in result.stderr
    assert accepted == [] and not marker.exists()
    assert result.returncode == 0, result.stderr


# --- ngrok's API ------------------------------------------------------------------------------------


def test_through_ngroks_api_after_the_tunnel_moved(
    test_user, port, state_dir, tmp_path, ngrok_cloud: NgrokCloud, ngrok_api: NgrokApi, client_key, decoy
):
    decoy_port, accepted = decoy
    token = ngrok_cloud.add_account("tok_px_6")
    api_key = ngrok_api.add_key(token)
    first = start_published_ngrok(
        test_user, port, state_dir, tmp_path / "keys", token, client_key.public_line
    )
    # Other endpoints of the account, one page each: another host's, one without metadata, and one
    # tagged with our alias whose address is not a host (all listed before ours: higher ids).
    tagged = json.dumps({"colab_ssh_host_key_alias": first.host_key_alias})
    for number, (metadata, url) in enumerate(
        [
            (
                json.dumps({"colab_ssh_host_key_alias": "colab-ssh-1111111111"}),
                f"tcp://127.0.0.1:{decoy_port}",
            ),
            ("", f"tcp://127.0.0.1:{decoy_port}"),
            (tagged, "tcp://-oProxyCommand=x:22"),
        ]
    ):
        ngrok_api.extra.append(
            {
                "id": f"ep_zz{number}",
                "public_url": url,
                "proto": "tcp",
                "metadata": metadata,
                "created_at": "9999",
            }
        )
    ngrok_api.page_size = 1
    proxy = proxy_command(first.host_key_alias, "--ngrok-api")
    env = {"NGROK_API_KEY": api_key}
    assert ssh_through_proxy(first, client_key, tmp_path, proxy, env=env).stdout.strip() == test_user

    reopen_elsewhere(state_dir, first)

    assert refused(first.port)
    ngrok_api.requests.clear()
    again = ssh_through_proxy(first, client_key, tmp_path, proxy, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == test_user
    assert accepted == []
    assert len(ngrok_api.requests) == 4  # every page, by its next_page_uri
    assert {r["authorization"] for r in ngrok_api.requests} == {f"Bearer {api_key}"}
    assert {r["ngrok-version"] for r in ngrok_api.requests} == {"2"}


def test_the_agent_lists_the_endpoints_metadata(
    test_user, port, state_dir, tmp_path, ngrok_cloud, client_key
):
    """What pyngrok sent as `metadata` the agent keeps and lists (GET /api/endpoints)."""
    token = ngrok_cloud.add_account("tok_px_7")
    first = start_published_ngrok(
        test_user, port, state_dir, tmp_path / "keys", token, client_key.public_line
    )
    paths = Paths(state_dir=state_dir)
    config = conf.PyngrokConfig(ngrok_path=str(paths.ngrok_launcher), config_path=str(paths.ngrok_config))

    (tunnel,) = ngrok.get_tunnels(config)

    assert json.loads(tunnel.data["metadata"]) == {"colab_ssh_host_key_alias": first.host_key_alias}


def test_a_rejected_api_key_is_named_without_showing_it(
    test_user, port, state_dir, tmp_path, ngrok_cloud, ngrok_api: NgrokApi, client_key
):
    token = ngrok_cloud.add_account("tok_px_8")
    first = start_published_ngrok(
        test_user, port, state_dir, tmp_path / "keys", token, client_key.public_line
    )
    wrong = "2wrongApiKey0000000000_abcdefghijklmnopqrstu"
    proxy = proxy_command(first.host_key_alias, "--ngrok-api")

    result = ssh_through_proxy(first, client_key, tmp_path, proxy, env={"NGROK_API_KEY": wrong})

    assert "ngrok's API refused NGROK_API_KEY (ERR_NGROK_203:" in result.stderr
    assert wrong not in result.stderr
    assert "https://dashboard.ngrok.com/api-keys" in result.stderr
    assert result.returncode == 0, result.stderr  # the last known address still works


def test_without_a_source_the_last_address_fails_like_any_dead_one(
    test_user, port, state_dir, tmp_path, ngrok_cloud, ngrok_api: NgrokApi, client_key
):
    token = ngrok_cloud.add_account("tok_px_9")
    first = start_published_ngrok(
        test_user, port, state_dir, tmp_path / "keys", token, client_key.public_line
    )
    reopen_elsewhere(state_dir, first)

    result = ssh_through_proxy(
        first, client_key, tmp_path, proxy_command(first.host_key_alias, "--ngrok-api")
    )

    assert result.returncode == 255
    lines = [line for line in result.stderr.splitlines() if line.startswith("colab-ssh proxy:")]
    assert lines == [
        "colab-ssh proxy: NGROK_API_KEY is not set: create an API key at https://dashboard.ngrok.com/api-keys"
        " and set it in the environment ssh runs in; trying the last known address"
        f" {first.host}:{first.port}",
        f"colab-ssh proxy: could not connect to {first.host}:{first.port} (from the ssh config): Connection"
        " refused. Is the runtime up?",
    ]


# --- the runtime's side, when the folder cannot be written -----------------------------------------


def test_a_revived_tunnel_stays_up_when_its_address_cannot_be_written(
    test_user, port, state_dir, tmp_path, ngrok_cloud, client_key, caplog
):
    keys_dir = tmp_path / "keys"
    announced: list[Connection] = []
    token = ngrok_cloud.add_account("tok_px_10")
    first = start_published_ngrok(
        test_user, port, state_dir, keys_dir, token, client_key.public_line, on_change=announced.append
    )
    before = (keys_dir / ADDRESS_FILE).read_text()
    keys_dir.chmod(0o777)  # another account could plant a link there now: root writes nothing in it

    now = reopen_elsewhere(state_dir, first)

    assert ssh_status().monitoring and ssh_status().tunnel_alive
    assert (keys_dir / ADDRESS_FILE).read_text() == before  # not written, and not half written
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any(str(keys_dir) in warning for warning in warnings), warnings
    assert not any("could not bring the SSH server back" in warning for warning in warnings), warnings
    deadline = time.monotonic() + REVIVE_SECONDS
    while announced != [now] and time.monotonic() < deadline:  # the new address is announced all the same
        time.sleep(0.1)
    assert announced == [now]
    keys_dir.chmod(0o700)
    direct = ssh_through_proxy(
        now, client_key, tmp_path, proxy_command(now.host_key_alias, "--from", "/none")
    )
    assert direct.returncode == 0, direct.stderr  # the tunnel itself is fine


# --- a tunnel whose client needs a program: the client command from the address file ---------------


def test_the_client_command_from_the_file_follows_a_new_hostname(
    test_user, port, state_dir, tmp_path, client_key, monkeypatch
):
    use_cloudflare_edge(monkeypatch, tmp_path / "edge")  # the proxy's --client shares its state
    keys_dir = tmp_path / "keys"
    first = start_ssh(
        tunnel="cloudflared", port=port, user=test_user, state_dir=state_dir, host_keys_dir=keys_dir,
        public_key=client_key.public_line, quiet=True, monitor_interval=0.5,
    )  # fmt: skip
    assert json.loads((keys_dir / ADDRESS_FILE).read_text())["client_command"] == first.proxy_command
    proxy = proxy_command(
        first.host_key_alias, "--from", str(keys_dir), "--client", str(STAND_IN_CLOUDFLARED)
    )
    assert ssh_through_proxy(first, client_key, tmp_path, proxy).stdout.strip() == test_user

    (agent,) = [
        p for p in our_processes(state_dir) if b"--pidfile" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    os.kill(agent, signal.SIGKILL)
    deadline = time.monotonic() + REVIVE_SECONDS
    while (ssh_status().connection or first).host == first.host or not ssh_status().tunnel_alive:
        assert time.monotonic() < deadline, "the tunnel did not come back"
        time.sleep(0.2)

    again = ssh_through_proxy(first, client_key, tmp_path, proxy)  # ssh's %h is the dead hostname
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == test_user


def test_a_connection_dropped_before_the_answer_is_tried_once_more():
    """The first connection is closed unanswered (a restarting load balancer); the second is answered."""
    server = socket.create_server(("127.0.0.1", 0))
    tagged = json.dumps({"colab_ssh_host_key_alias": "colab-ssh-abcdef0123"})
    body = json.dumps(
        {"endpoints": [{"id": "ep_1", "public_url": "tcp://5.tcp.ngrok.io:12345", "metadata": tagged}]}
    ).encode()
    seen: list[bytes] = []

    def serve() -> None:
        for answer in (False, True):
            conn, _ = server.accept()
            with conn:
                seen.append(conn.recv(65536))
                if answer:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                        + f"Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    environ = {"NGROK_API_KEY": "k", "COLAB_SSH_NGROK_API_URL": f"http://127.0.0.1:{server.getsockname()[1]}"}
    try:
        found = from_ngrok_api("colab-ssh-abcdef0123", environ)
    finally:
        server.close()
        thread.join(5)

    assert (found.host, found.port) == ("5.tcp.ngrok.io", 12345)
    assert len(seen) == 2 and all(request.startswith(b"GET /endpoints?limit=100 ") for request in seen)
