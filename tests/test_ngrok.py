"""tunnel="ngrok": real pyngrok driving the stand-in agent (tests/stand_ins/ngrok), which relays
real TCP and fails the way ngrok's cloud does."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pyngrok import installer

from colab_ssh import (
    AuthtokenMissingError,
    NgrokAuthtokenError,
    NgrokDownloadError,
    NgrokSessionLimitError,
    NgrokTcpNeedsCardError,
    start_ssh,
    stop_ssh,
)
from colab_ssh.authtoken import resolve_authtoken
from colab_ssh.system import read_password_hash

from .conftest import STAND_IN_NGROK, ColabStub, NgrokCloud, SshClient, our_processes


def start_ngrok(user: str, port: int, state_dir: Path, **options: object):
    return start_ssh(tunnel="ngrok", port=port, user=user, state_dir=state_dir, quiet=True, **options)


def agent_pids(state_dir: Path) -> list[int]:
    return [pid for pid in our_processes(state_dir) if b"ngrok" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def assert_nothing_left(state_dir: Path) -> None:
    assert our_processes(state_dir) == []
    assert not (state_dir / "ngrok.pid").exists()


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
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert "Your authtoken" in (state_dir / "ngrok.log").read_text()  # the agent did echo it...
    for path in state_dir.rglob("*"):  # ...and no file keeps it
        assert not path.is_file() or token not in path.read_text(errors="replace"), path
    assert_nothing_left(state_dir)
    assert not (state_dir / "sshd.pid").exists()


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


def test_secret_without_notebook_access_is_explained(colab: ColabStub):
    colab.secret_error = "NotebookAccessError"
    with pytest.raises(AuthtokenMissingError, match="no access"):
        resolve_authtoken(None, {}, someone_to_ask=lambda: False)


def test_the_order_is_argument_environment_secret_prompt(colab: ColabStub):
    colab.secrets["NGROK_AUTHTOKEN"] = "from-secret"
    environ = {"NGROK_AUTHTOKEN": "from-env"}
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return "from-prompt"

    def someone() -> bool:
        return True

    assert resolve_authtoken("from-arg", environ, someone_to_ask=someone, ask=ask) == "from-arg"
    assert resolve_authtoken(None, environ, someone_to_ask=someone, ask=ask) == "from-env"
    assert resolve_authtoken(None, {}, someone_to_ask=someone, ask=ask) == "from-secret"
    del colab.secrets["NGROK_AUTHTOKEN"]
    assert resolve_authtoken(None, {}, someone_to_ask=someone, ask=ask) == "from-prompt"
    assert asked and "authtoken" in asked[0]
