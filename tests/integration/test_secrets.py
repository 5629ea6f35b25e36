"""The password and the authtoken never appear in a command line of any process start_ssh() starts, in
log output, or in a file more readable than 0600. strace records every execve and every file opened for
writing by the whole process tree (sshd, chpasswd, the ngrok agent and the sessions)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from colab_ssh.paths import Paths

from ..support.host import free_port, home_of
from ..support.secrets import secrets_in_chain
from ..support.stand_ins import NgrokCloud

SCRIPT = """
import logging, os, subprocess, sys, time
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
from colab_ssh import start_ssh, stop_ssh
conn = start_ssh(authtoken=os.environ["T_TOKEN"], password=os.environ["T_PASSWORD"], tunnel="ngrok",
                 port=int(os.environ["T_PORT"]), user=os.environ["T_USER"], state_dir=os.environ["T_STATE"])
login = subprocess.run(
    ["sshpass", "-e", "ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
     "-o", "PubkeyAuthentication=no", "-p", str(conn.port), f"{conn.user}@{conn.host}", "echo logged-in"],
    env={**os.environ, "SSHPASS": conn.password}, capture_output=True, text=True, timeout=60)
print("LOGIN", login.returncode, login.stdout.strip(), file=sys.stderr)
start_ssh(authtoken=os.environ["T_TOKEN"], password=os.environ["T_PASSWORD"], tunnel="ngrok", quiet=True,
          port=int(os.environ["T_PORT"]), user=os.environ["T_USER"], state_dir=os.environ["T_STATE"])
open(os.environ["T_READY"], "w").close()
while not os.path.exists(os.environ["T_GO"]):  # the test looks at the files while everything runs
    time.sleep(0.05)
stop_ssh()
"""
_EXECVE = re.compile(r'execve\("[^"]*", (\[.*?\]), ')
_WRITE_OPEN = re.compile(r'open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", [^)]*O_(?:WRONLY|RDWR)')


@pytest.fixture
def traced_start(test_user, state_dir, tmp_path, ngrok_cloud: NgrokCloud):
    if shutil.which("strace") is None:
        pytest.fail("strace is installed by .ci/run")
    token = ngrok_cloud.add_account("tok_S3cretTokenValue_4242")
    password = "Pw-S3cret-Value-9876"
    script = tmp_path / "start.py"
    script.write_text(SCRIPT)
    trace = tmp_path / "strace.txt"
    ready, go = tmp_path / "ready", tmp_path / "go"
    env = {
        **os.environ, "T_TOKEN": token, "T_PASSWORD": password, "T_PORT": str(free_port()),
        "T_USER": test_user, "T_STATE": str(state_dir), "T_READY": str(ready), "T_GO": str(go),
    }  # fmt: skip
    process = subprocess.Popen(
        ["strace", "-f", "-qq", "-s", "4096", "-e", "trace=execve,open,openat", "-o", str(trace),
         sys.executable, str(script)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    running_files = files_with_secrets(state_dir, test_user, trace.read_text(), token, password)
    go.touch()
    stdout, stderr = process.communicate(timeout=120)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LOGIN 0 logged-in" in result.stderr
    # stdout holds the details printed for the user (the password among them, on purpose);
    # stderr holds every log line at DEBUG level.
    assert f"password: {password}" in result.stdout
    return token, password, trace.read_text(), result.stderr, running_files


def test_no_secret_in_any_command_line(traced_start):
    token, password, trace, _output, _files = traced_start
    command_lines = _EXECVE.findall(trace)

    assert len(command_lines) > 5  # sshd, chpasswd, ssh-keygen, the agent, the session's shell...
    assert any("chpasswd" in line for line in command_lines)
    assert any("ngrok" in line for line in command_lines)
    for line in command_lines:
        assert token not in line and password not in line, line


def test_no_secret_in_log_output(traced_start):
    token, password, _trace, log_output, _files = traced_start
    assert "DEBUG:pyngrok" in log_output  # logging was on, pyngrok's included
    output = log_output
    assert token not in output
    assert password not in output


def files_with_secrets(
    state_dir: Path, user: str, trace: str, token: str, password: str
) -> dict[Path, tuple[int, bool, bool]]:
    """Every file written so far (per strace, plus our folders): mode, holds token, holds password."""
    written = {Path(path) for path in _WRITE_OPEN.findall(trace)}
    paths = Paths(state_dir=state_dir)
    written |= set(state_dir.rglob("*")) | set(home_of(user).rglob("*"))
    written |= {paths.profile_script, paths.session_env_file}
    found = {}
    for path in written:
        if str(path).startswith(("/proc/", "/dev/", "/sys/")) or not path.is_file():
            continue
        content = path.read_bytes()
        found[path] = (
            stat.S_IMODE(path.stat().st_mode),
            token.encode() in content,
            password.encode() in content,
        )
    return found


def test_files_holding_a_secret_are_private(traced_start, state_dir):
    files = traced_start[4]

    assert state_dir / "sshd_config" in files and state_dir / "ngrok.yml" in files
    assert files[state_dir / "ngrok.yml"][1]  # the agent's config does hold the token...
    for path, (mode, has_token, has_password) in files.items():
        assert not has_password, f"{path} holds the password"
        if has_token:
            assert mode & 0o077 == 0, f"{path} holds the authtoken with mode {mode:o}"  # ...privately


def test_stop_ssh_removes_the_token_file(traced_start, state_dir):
    token = traced_start[0]
    assert not (state_dir / "ngrok.yml").exists()
    assert token.encode() not in (state_dir / "ngrok.log").read_bytes()


# --- No raised error carries a secret: not in its message or args, and not in the exceptions it
# --- chains to (__cause__, __context__). "raise ... from None" only hides __context__ from the
# --- printed traceback; the object (pyngrok's exception quoting the agent's line that echoes a
# --- rejected token) stays reachable to any handler, logger or debugger that walks the chain.

CHAIN_PASSWORD = "Pw-Chain-S3cret-5150"


def _old_agent(c: ChainCase) -> dict[str, object]:
    from .test_ngrok import agent_of_version

    c.monkeypatch.setenv("PYNGROK_NGROK_PATH", str(agent_of_version(c.tmp, "3.20.0")))
    return {"authtoken": c.cloud.add_account("2chainOldAgentAbcdefgh_ijklmnopqrstuvw")}


def _no_download(c: ChainCase) -> dict[str, object]:
    from pyngrok import installer

    c.monkeypatch.setenv("PYNGROK_NGROK_PATH", str(c.tmp / "bin" / "ngrok"))
    c.monkeypatch.setattr(installer, "get_ngrok_cdn_url", lambda *_a, **_k: "http://127.0.0.1:9/ngrok.tgz")
    return {"authtoken": c.cloud.add_account("2chainNoDownloadAbcdef_ghijklmnopqrstuv")}


@dataclass
class ChainCase:
    tmp: Path
    cloud: NgrokCloud
    monkeypatch: pytest.MonkeyPatch


CHAIN_CASES: dict[str, Callable[[ChainCase], dict[str, object]]] = {
    "malformed token (105, echoed by the agent)": lambda c: {"authtoken": "tok_chain_S3cret_malformed"},
    "unknown token (107, echoed by the agent)": lambda c: {
        "authtoken": "2chainS3cretTokenAbcdef_GhIjKlMnOpQrStUv12"
    },
    "revoked token (300)": lambda c: {
        "authtoken": c.cloud.add_account("2chainRevokedTokenAbcd_efghijklmnopqrstu", revoked=True)
    },
    "unverified account (4018)": lambda c: {
        "authtoken": c.cloud.add_account("2chainUnverifiedAbcdefg_hijklmnopqrstuv", verified=False)
    },
    "no card for TCP (8013)": lambda c: {
        "authtoken": c.cloud.add_account("2chainNoCardTokenAbcdef_ghijklmnopqrstuv", card=False)
    },
    "agent too old": _old_agent,
    "agent download fails": _no_download,
}


@pytest.mark.parametrize("case", list(CHAIN_CASES), ids=list(CHAIN_CASES))
def test_no_raised_error_chains_to_a_secret(
    case, test_user, port, state_dir, tmp_path, ngrok_cloud: NgrokCloud, monkeypatch
):
    from colab_ssh import ColabSSHError, start_ssh

    options = CHAIN_CASES[case](ChainCase(tmp_path, ngrok_cloud, monkeypatch))
    token = str(options["authtoken"])

    with pytest.raises(ColabSSHError) as raised:
        start_ssh(
            tunnel="ngrok", port=port, user=test_user, state_dir=state_dir, quiet=True,
            password=CHAIN_PASSWORD, **options,
        )  # fmt: skip

    assert secrets_in_chain(raised.value, [token, CHAIN_PASSWORD]) == []


BAD_SECRETS: dict[str, dict[str, object]] = {
    "token with a space": {"tunnel": "ngrok", "authtoken": "S3cret tokenvalue"},
    "token with a newline": {"tunnel": "ngrok", "authtoken": "S3cret\ntokenvalue"},
    "token with a control character": {"tunnel": "ngrok", "authtoken": "S3cret\x07tokenvalue"},
    "token ngrok rejects": {"tunnel": "ngrok", "authtoken": "tok_S3cretRejected"},
    "password with a newline": {"tunnel": "none", "password": "S3cret-pass\nword-9876"},
    "password with a trailing space": {"tunnel": "none", "password": "S3cret-password-9876 "},
    "password too short": {"tunnel": "none", "password": "S3c-1"},
}


@pytest.mark.parametrize("case", list(BAD_SECRETS), ids=list(BAD_SECRETS))
def test_a_refused_secret_is_not_in_the_error_or_its_chain(
    case, test_user, port, state_dir, ngrok_cloud: NgrokCloud
):
    from colab_ssh import ColabSSHError, start_ssh

    options = BAD_SECRETS[case]
    secret = str(options.get("authtoken") or options.get("password"))

    with pytest.raises(ColabSSHError) as raised:
        start_ssh(port=port, user=test_user, state_dir=state_dir, quiet=True, **options)

    assert secrets_in_chain(raised.value, [secret, secret.strip(), *secret.split()]) == []
