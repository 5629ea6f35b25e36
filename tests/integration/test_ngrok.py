"""tunnel="ngrok": real pyngrok driving the stand-in agent (tests/stand_ins/ngrok), which relays
real TCP and fails the way ngrok's cloud does."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pyngrok import conf, installer, process

from colab_ssh import (
    AuthtokenMissingError,
    ColabSSHError,
    NgrokAgentVersionError,
    NgrokAuthtokenError,
    NgrokDownloadError,
    NgrokSessionLimitError,
    NgrokTcpNeedsCardError,
    ssh_status,
    start_ssh,
    stop_ssh,
)
from colab_ssh.paths import Paths
from colab_ssh.system import read_password_hash
from colab_ssh.tunnels import ngrok as ngrok_module

from ..support.host import SshClient, our_processes
from ..support.stand_ins import STAND_IN_NGROK, ColabStub, NgrokCloud, ngrok_agent_archive, serve_paths


def start_ngrok(user: str, port: int, state_dir: Path, **options: object):
    return start_ssh(tunnel="ngrok", port=port, user=user, state_dir=state_dir, quiet=True, **options)


def agent_pids(state_dir: Path) -> list[int]:
    return [pid for pid in our_processes(state_dir) if b"ngrok" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def assert_nothing_left(state_dir: Path) -> None:
    assert our_processes(state_dir) == []
    assert not (state_dir / "ngrok.pid").exists()


def agent_of_version(directory: Path, version: str) -> Path:
    """A copy of the stand-in agent that reports ``version``, as an older binary on disk would."""
    copy = directory / "ngrok-bin" / "ngrok"
    copy.parent.mkdir(parents=True, exist_ok=True)
    text = STAND_IN_NGROK.read_text()
    copy.write_text(re.sub(r'^VERSION = "[^"]*"', f'VERSION = "{version}"', text, count=1, flags=re.M))
    copy.chmod(0o755)
    return copy


def version_of(agent: Path) -> str:
    return subprocess.run(
        [str(agent), "--version"], capture_output=True, text=True, timeout=10
    ).stdout.strip()


def returns_within(seconds: float, state_dir: Path, call: Callable[[], object]) -> BaseException | object:
    """Run ``call`` on a thread: its result or exception, or a test failure if it hangs (the bug).

    A hung start waits on the agent's output while holding pyngrok's process lock: the agent is
    killed so that the thread ends and the tests after this one are not stuck behind it.
    """
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for pid in agent_pids(state_dir):
            os.kill(pid, signal.SIGKILL)
        thread.join(30)
        pytest.fail(f"start_ssh() had not returned after {seconds} s")
    return outcome[0]


WELL_FORMED_UNKNOWN = "2wellFormedButUnknown77_AbCdEfGhIjKlMnOpQr"
REVOKED = "2revokedTokenAbcdefgh_ijklmnopqrstuvw"


def test_login_through_the_tunnel(test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient):
    token = ngrok_cloud.add_account("tok_good_1")

    connection = start_ngrok(test_user, port, state_dir, authtoken=token)

    assert connection.tunnel == "ngrok" and connection.local_port == port
    assert connection.port != port  # the tunnel's public port, relayed to sshd's
    result = ssh.run(connection, "id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == test_user


def test_the_token_is_never_in_argv_logs_or_readable_files(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, caplog
):
    token = ngrok_cloud.add_account("tok_secret_never_shown_2")
    caplog.set_level(logging.DEBUG)

    connection = start_ngrok(test_user, port, state_dir, authtoken=token)

    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            raw = cmdline.read_bytes()
        except OSError:
            continue
        assert token.encode() not in raw
        assert (connection.password or "").encode() not in raw
    assert token not in caplog.text
    for path in state_dir.rglob("*"):
        if path.is_file() and token in path.read_text(errors="replace"):
            assert path.stat().st_mode & 0o077 == 0, f"{path} holds the token and is readable by others"


def test_rerun_reuses_the_agent_and_tunnel(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    token = ngrok_cloud.add_account("tok_rerun_3")
    first = start_ngrok(test_user, port, state_dir, authtoken=token)
    agents = agent_pids(state_dir)

    for _ in range(4):
        assert start_ngrok(test_user, port, state_dir, authtoken=token) == first

    assert agent_pids(state_dir) == agents and len(agents) == 1


def test_a_killed_agent_is_brought_back(test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient):
    token = ngrok_cloud.add_account("tok_revive_4")
    start_ngrok(test_user, port, state_dir, authtoken=token)
    (agent,) = agent_pids(state_dir)
    os.kill(agent, signal.SIGKILL)
    time.sleep(0.2)

    again = start_ngrok(test_user, port, state_dir, authtoken=token)

    assert agent_pids(state_dir) not in ([], [agent])
    assert ssh.run(again, "true").returncode == 0


def test_an_agent_api_that_resets_the_connection_is_an_agent_not_alive(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud
):
    """An agent killed while alive() asks its local API (ssh_status(), the monitor) resets the
    connection, and pyngrok wraps only URLError and HTTPError (pyngrok/ngrok.py, api_request), so
    the reset comes out as ConnectionResetError. A listener that resets every connection stands in
    for the dying agent's API: the tunnel is reported down, never an exception from ssh_status()."""
    start_ngrok(
        test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_reset_6"), monitor_interval=None
    )
    resetting = socket.create_server(("127.0.0.1", 0))
    # accept() with a timeout, and the socket closed only once the thread has ended: a thread still
    # in accept() when its socket is closed takes the connections of the next socket given that
    # descriptor number (a later test's HTTP server) and resets them.
    resetting.settimeout(0.1)
    stop = threading.Event()

    def reset_each() -> None:
        while not stop.is_set():
            try:
                connection, _ = resetting.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            with contextlib.suppress(OSError):
                connection.recv(1024)  # the request has arrived: the agent dies while answering it
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()  # with SO_LINGER 0: a reset, not an orderly end

    resetter = threading.Thread(target=reset_each, daemon=True)
    resetter.start()
    launcher = Paths(state_dir=state_dir).ngrok_launcher  # what pyngrok runs: our launcher of the agent
    agent = process.get_process(conf.PyngrokConfig(ngrok_path=str(launcher)))  # the running one
    api_url = agent.api_url
    agent.api_url = f"http://127.0.0.1:{resetting.getsockname()[1]}"
    try:
        status = ssh_status()
    finally:
        agent.api_url = api_url
        stop.set()
        resetter.join()
        resetting.close()

    assert status.running and not status.tunnel_alive and status.sshd_alive
    assert ssh_status().tunnel_alive  # the real agent's API answers again


def test_the_agent_is_in_its_own_session(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    start_ngrok(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_session_5"))
    (agent,) = agent_pids(state_dir)

    assert os.getsid(agent) != os.getsid(0)
    assert os.readlink(f"/proc/{agent}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{agent}/fd/2") == str(state_dir / "ngrok.log")


def test_stop_ssh_closes_the_tunnel(test_user, port, state_dir, ngrok_cloud: NgrokCloud, ssh: SshClient):
    connection = start_ngrok(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_stop_6"))

    stop_ssh()

    assert_nothing_left(state_dir)
    assert ssh.run(connection, "true", timeout=20).returncode != 0


def test_unknown_token_err_ngrok_105(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    token = "tok_not_an_account_7"
    with pytest.raises(NgrokAuthtokenError) as raised:
        start_ngrok(test_user, port, state_dir, authtoken=token)

    assert raised.value.code == "ERR_NGROK_105"
    message = str(raised.value)
    assert "dashboard.ngrok.com/get-started/your-authtoken" in message
    assert token not in message  # the agent echoes it; we must not
    assert raised.value.__cause__ is None and raised.value.__context__ is None  # nor pyngrok's error
    assert "Your authtoken" in (state_dir / "ngrok.log").read_text()  # the agent did echo it...
    for path in state_dir.rglob("*"):  # ...and no file keeps it
        assert not path.is_file() or token not in path.read_text(errors="replace"), path
    assert_nothing_left(state_dir)
    assert not (state_dir / "sshd.pid").exists()


@pytest.mark.parametrize(
    ("code", "make_token", "reason"),
    [
        ("ERR_NGROK_107", lambda cloud: WELL_FORMED_UNKNOWN, "well-formed, but was mistyped, reset"),
        ("ERR_NGROK_300", lambda cloud: cloud.add_account(REVOKED, revoked=True), "revoked"),
        ("ERR_NGROK_105", lambda cloud: "tok_short", "does not look like an ngrok authtoken"),
    ],
)  # fmt: skip
def test_every_rejected_token_is_an_authtoken_error_with_advice(
    code, make_token, reason, test_user, port, state_dir, ngrok_cloud: NgrokCloud
):
    token = make_token(ngrok_cloud)

    with pytest.raises(NgrokAuthtokenError) as raised:
        start_ngrok(test_user, port, state_dir, authtoken=token)

    assert raised.value.code == code  # the raw code, for callers that branch on it
    message = str(raised.value)
    assert f"({code})" in message and reason in message
    assert "dashboard.ngrok.com/get-started/your-authtoken" in message and "NGROK_AUTHTOKEN" in message
    assert token not in message
    for path in state_dir.rglob("*"):  # the agent echoed a 107 token in its log: no file keeps it
        assert not path.is_file() or token not in path.read_text(errors="replace"), path
    assert_nothing_left(state_dir)


def test_unverified_account_err_ngrok_4018(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    token = ngrok_cloud.add_account("tok_unverified_8", verified=False)

    with pytest.raises(NgrokAuthtokenError) as raised:
        start_ngrok(test_user, port, state_dir, authtoken=token)

    assert raised.value.code == "ERR_NGROK_4018"
    assert "dashboard.ngrok.com/get-started/your-authtoken" in str(raised.value)
    assert_nothing_left(state_dir)


def test_second_agent_session_err_ngrok_108(test_user, port, state_dir, ngrok_cloud: NgrokCloud, tmp_path):
    token = ngrok_cloud.add_account("tok_one_session_9", max_sessions=1)
    other_config = tmp_path / "laptop-ngrok.yml"
    other_config.write_text(f'version: "3"\nagent:\n  authtoken: {token}\n')
    other_agent = subprocess.Popen(
        [str(STAND_IN_NGROK), "start", "--none", "--log", "stdout", "--config", str(other_config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other_agent.stdout is not None
        while "client session established" not in other_agent.stdout.readline():
            pass
        with pytest.raises(NgrokSessionLimitError) as raised:
            start_ngrok(test_user, port, state_dir, authtoken=token)
    finally:
        other_agent.terminate()
        other_agent.wait(timeout=10)

    assert raised.value.code == "ERR_NGROK_108"
    assert "dashboard.ngrok.com/agents" in str(raised.value)
    assert_nothing_left(state_dir)


def test_no_card_for_tcp_err_ngrok_8013(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    token = ngrok_cloud.add_account("tok_no_card_10", card=False)
    password_before = read_password_hash(Path("/etc/shadow"), test_user)

    with pytest.raises(NgrokTcpNeedsCardError) as raised:
        start_ngrok(test_user, port, state_dir, authtoken=token)

    assert raised.value.code == "ERR_NGROK_8013"
    assert "card" in str(raised.value) and "dashboard.ngrok.com/settings" in str(raised.value)
    assert "tunnel='cloudflared' needs no card and no account" in str(raised.value)
    assert_nothing_left(state_dir)
    assert read_password_hash(Path("/etc/shadow"), test_user) == password_before  # the change was undone
    assert not (state_dir / "sshd_config").exists()  # and so was the config


def test_agent_download_failure(test_user, port, state_dir, ngrok_cloud: NgrokCloud, tmp_path, monkeypatch):
    """No agent on disk and no way to fetch one: pyngrok's real installer, pointed at a closed port."""
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(tmp_path / "bin" / "ngrok"))
    monkeypatch.setattr(installer, "get_ngrok_cdn_url", lambda *_args, **_kw: "http://127.0.0.1:9/ngrok.tgz")
    token = ngrok_cloud.add_account("tok_download_11")

    with pytest.raises(NgrokDownloadError, match="internet"):
        start_ngrok(test_user, port, state_dir, authtoken=token)
    assert_nothing_left(state_dir)


def test_a_launcher_still_held_open_for_writing_is_run_once_it_is_free(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, hold_for_writing, monkeypatch, ssh: SshClient
):
    """The launcher is written in the agent's start step while other steps fork (sshd -V,
    chpasswd): a child forked meanwhile holds it open for writing until its own exec, and running
    it fails with "Text file busy" (seen as an agent "of unknown version" in about one start of 150
    here). A holder makes that happen every time: the start waits it out."""
    launcher = Paths(state_dir=state_dir).ngrok_launcher
    held = []
    real_write_file = ngrok_module.write_file

    def write_then_hold(path: Path, text: str, **options: int) -> bytes | None:
        previous = real_write_file(path, text, **options)
        if path == launcher:
            held.append(hold_for_writing(path))
        return previous

    monkeypatch.setattr(ngrok_module, "write_file", write_then_hold)

    connection = start_ngrok(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_busy_20"))

    assert len(held) == 1
    assert ssh.run(connection, "true").returncode == 0


def test_an_agent_pyngrok_just_wrote_still_held_open_is_run_once_it_is_free(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, hold_for_writing, tmp_path, monkeypatch, ssh
):
    """pyngrok's installer writes the agent in the agent's start step while apt runs in another:
    the same race, met by the launcher's shell when it execs the agent (exit 126, its message in
    our log), which is waited out too."""
    agent = tmp_path / "agent" / "ngrok"
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(agent))
    held = []
    real_install = installer.install_ngrok

    def install_then_hold(path: str, *args: object, **kwargs: object) -> None:
        real_install(path, *args, **kwargs)
        held.append(hold_for_writing(Path(path)))

    monkeypatch.setattr(installer, "install_ngrok", install_then_hold)
    with serve_paths({"/ngrok.tgz": ngrok_agent_archive()}) as url:
        monkeypatch.setattr(installer, "get_ngrok_cdn_url", lambda *_args, **_kw: f"{url}/ngrok.tgz")

        connection = start_ngrok(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_busy_21"))

    assert len(held) == 1 and agent.is_file()
    assert ssh.run(connection, "true").returncode == 0


def test_token_from_the_environment(test_user, port, state_dir, ngrok_cloud: NgrokCloud, monkeypatch, ssh):
    monkeypatch.setenv("NGROK_AUTHTOKEN", ngrok_cloud.add_account("tok_env_12"))

    connection = start_ngrok(test_user, port, state_dir)

    assert ssh.run(connection, "true").returncode == 0


def test_token_from_the_colab_secret(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, colab: ColabStub, ssh
):
    colab.secrets["NGROK_AUTHTOKEN"] = ngrok_cloud.add_account("tok_secret_13")

    connection = start_ngrok(test_user, port, state_dir)

    assert ssh.run(connection, "true").returncode == 0


def test_no_token_anywhere_names_all_four_places(test_user, port, state_dir, ngrok_cloud, colab: ColabStub):
    with pytest.raises(AuthtokenMissingError) as raised:
        start_ngrok(test_user, port, state_dir)

    message = str(raised.value)
    for place in (
        "authtoken=",
        "NGROK_AUTHTOKEN environment variable",
        "Colab secret NGROK_AUTHTOKEN",
        "prompt",
        "no such secret",
    ):
        assert place in message
    assert not state_dir.exists()


def test_an_old_agent_of_the_users_is_refused_before_it_starts(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, tmp_path, monkeypatch
):
    """pyngrok 9 waited forever on an agent without /api/endpoints, and left it running."""
    old = agent_of_version(tmp_path, "3.20.0")
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(old))
    token = ngrok_cloud.add_account("tok_old_agent_14")

    raised = returns_within(60, state_dir, lambda: start_ngrok(test_user, port, state_dir, authtoken=token))

    assert isinstance(raised, NgrokAgentVersionError), raised
    message = str(raised)
    assert "version 3.20.0" in message and "3.30.0 or newer" in message  # found, needed...
    assert str(old) in message and "PYNGROK_NGROK_PATH" in message and "update" in message  # ...and the fix
    assert (raised.found, raised.needed) == ("3.20.0", "3.30.0")
    assert_nothing_left(state_dir)  # no agent, no sshd
    assert not (state_dir / "ngrok.yml").exists()
    assert version_of(old) == "ngrok version 3.20.0"  # the user's binary is theirs: not updated


def test_an_old_pyngrok_managed_agent_is_updated_and_used(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, tmp_path, monkeypatch, ssh: SshClient
):
    old = agent_of_version(tmp_path, "3.20.0")
    monkeypatch.delenv("PYNGROK_NGROK_PATH")
    monkeypatch.setattr(conf, "DEFAULT_NGROK_PATH", str(old))  # pyngrok's own agent, from an older run

    connection = returns_within(
        60,
        state_dir,
        lambda: start_ngrok(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_upd_15")),
    )

    assert not isinstance(connection, BaseException), connection
    assert version_of(old) == "ngrok version 3.39.8"
    assert ssh.run(connection, "true").returncode == 0


def test_an_old_managed_agent_that_cannot_update_is_a_clear_error(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, tmp_path, monkeypatch
):
    old = agent_of_version(tmp_path, "3.20.0")
    monkeypatch.delenv("PYNGROK_NGROK_PATH")
    monkeypatch.setattr(conf, "DEFAULT_NGROK_PATH", str(old))
    monkeypatch.setenv("STAND_IN_NGROK_OFFLINE", "1")  # ngrok update cannot reach its server

    raised = returns_within(
        60,
        state_dir,
        lambda: start_ngrok(test_user, port, state_dir, authtoken=ngrok_cloud.add_account("tok_off_16")),
    )

    assert isinstance(raised, NgrokAgentVersionError), raised
    message = str(raised)
    assert "version 3.20.0" in message and "3.30.0" in message
    assert "update.ngrok-agent.com" in message  # why the update failed
    assert "internet access" in message and f"delete {old}" in message
    assert_nothing_left(state_dir)


def test_the_agent_gets_no_ngrok_variables_so_our_token_is_the_only_one(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, monkeypatch, ssh: SshClient
):
    """The agent prefers NGROK_AUTHTOKEN from its environment over our config file."""
    token = ngrok_cloud.add_account("tok_ours_17")
    monkeypatch.setenv("NGROK_AUTHTOKEN", WELL_FORMED_UNKNOWN)  # a stale token of the user's
    monkeypatch.setenv("NGROK_CONFIG", "/nonexistent/ngrok.yml")
    monkeypatch.setenv("NGROK_SOME_FUTURE_SETTING", "x")

    connection = start_ngrok(test_user, port, state_dir, authtoken=token)

    assert ssh.run(connection, "true").returncode == 0
    (agent,) = [
        pid
        for pid in agent_pids(state_dir)
        if b"\0start\0--none" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    names = [entry.split(b"=", 1)[0] for entry in Path(f"/proc/{agent}/environ").read_bytes().split(b"\0")]
    assert names and not [name for name in names if name.startswith(b"NGROK_")]
    assert b"PATH" in names  # the rest of the environment is kept (proxies, HOME, ...)
    assert os.environ["NGROK_AUTHTOKEN"] == WELL_FORMED_UNKNOWN  # the caller's own environment is untouched


def test_errors_are_colab_ssh_errors(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, tmp_path, monkeypatch
):
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(agent_of_version(tmp_path, "2.3.40")))
    token = ngrok_cloud.add_account("tok_v2_18")

    raised = returns_within(60, state_dir, lambda: start_ngrok(test_user, port, state_dir, authtoken=token))

    assert isinstance(raised, ColabSSHError) and "version 2.3.40" in str(raised), raised


def test_an_agent_that_does_not_say_its_version_is_refused_with_what_it_said(
    test_user, port, state_dir, ngrok_cloud: NgrokCloud, tmp_path, monkeypatch
):
    strange = tmp_path / "not-ngrok"
    strange.write_text("#!/bin/sh\necho 'usage: something else entirely'\nexit 3\n")
    strange.chmod(0o755)
    monkeypatch.setenv("PYNGROK_NGROK_PATH", str(strange))
    token = ngrok_cloud.add_account("tok_strange_19")

    raised = returns_within(60, state_dir, lambda: start_ngrok(test_user, port, state_dir, authtoken=token))

    assert isinstance(raised, NgrokAgentVersionError), raised
    assert raised.found is None and "unknown version (usage: something else entirely)" in str(raised)
    assert_nothing_left(state_dir)
