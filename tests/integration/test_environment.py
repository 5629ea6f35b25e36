"""The notebook kernel's environment reaches SSH sessions: plain commands and interactive logins."""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from colab_ssh import ColabSSHError, Connection, start_ssh, stop_ssh
from colab_ssh.environment import render_environment_script, session_environment
from colab_ssh.paths import Paths

from ..support.host import SshClient
from ..support.kernel_env import TRICKY, colab_kernel_environment


def start_in_kernel_environment(environ: dict[str, str], user: str, port: int, state_dir: Path) -> Connection:
    """start_ssh() in a process whose environment is the kernel's, as in a notebook."""
    script = (
        "import dataclasses, json; from colab_ssh import start_ssh;"
        f"c = start_ssh(tunnel='none', port={port}, user={user!r}, state_dir={str(state_dir)!r}, quiet=True);"
        "print(json.dumps({'host': c.host, 'port': c.port, 'user': c.user, 'password': c.password,"
        " 'local_port': c.local_port, 'tunnel': c.tunnel}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return Connection(**json.loads(result.stdout))


def parse_env0(output: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in output.split("\0") if "=" in item)


def test_profile_script_is_valid_shell_that_exports_the_values():
    script = render_environment_script(TRICKY)
    result = subprocess.run(
        ["sh", "-c", script + "env -0"], env={}, capture_output=True, text=True, check=True
    )
    exported = parse_env0(result.stdout)
    for name, value in TRICKY.items():
        assert exported[name] == value


@pytest.fixture
def kernel_session(test_user, port, state_dir) -> tuple[Connection, dict[str, str]]:
    environ = {**colab_kernel_environment(), **TRICKY}
    return start_in_kernel_environment(environ, test_user, port, state_dir), session_environment(environ)


def test_plain_ssh_commands_get_the_kernel_environment(kernel_session, ssh: SshClient):
    connection, expected = kernel_session

    result = ssh.run(connection, "env -0")

    assert result.returncode == 0, result.stderr
    got = parse_env0(result.stdout)
    mismatched = {name: (got.get(name), value) for name, value in expected.items() if got.get(name) != value}
    assert mismatched == {}
    assert "MPLBACKEND" not in got and "JPY_PARENT_PID" not in got
    assert got["HOME"] == f"/home/{connection.user}"  # per-session values stay sshd's


def test_interactive_login_shells_get_the_kernel_environment(kernel_session, ssh: SshClient):
    """Debian's /etc/profile resets PATH for login shells; the profile.d script puts it back."""
    connection, expected = kernel_session
    # '@@''X=' keeps the echoed input line from matching the markers.
    commands = "".join(
        f'echo "@@""{name}=${name}@@"\n'
        for name in ("PATH", "LD_LIBRARY_PATH", "CUDA_VERSION", "CS_HASH", "CS_QUOTES")
    )
    result = ssh.run(connection, "", tty=True, stdin=commands + "exit\n")

    assert result.returncode == 0, result.stderr
    got = dict(re.findall(r"@@(\w+)=(.*?)@@", result.stdout))
    for name in ("PATH", "LD_LIBRARY_PATH", "CUDA_VERSION", "CS_HASH", "CS_QUOTES"):
        assert got.get(name) == expected[name], (name, result.stdout[-2000:])
    assert os.path.basename(got["PATH"].split(":")[0]) == "bin"


# --- the values reach the login user only --------------------------------------------------------


@pytest.fixture
def other_account() -> Iterator[str]:
    """Another account on the machine, with a shell, that must not see the kernel's environment."""
    name = f"cse{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", "-f", "-r", name], check=False, capture_output=True)


def login_shell_as(user: str, command: str) -> subprocess.CompletedProcess[str]:
    """A login shell of that account (/etc/profile and profile.d run), as `su -` gives it."""
    return subprocess.run(
        ["su", "-", user, "-c", command], capture_output=True, text=True, timeout=30, check=False, env={}
    )


def test_another_accounts_login_shell_neither_gets_nor_can_read_the_values(
    kernel_session, other_account, state_dir
):
    connection, expected = kernel_session
    paths = Paths(state_dir=state_dir)

    seen = login_shell_as(other_account, "env -0")
    assert seen.returncode == 0, seen.stderr
    leaked = {
        name for name in ("CUDA_VERSION", "CS_HASH", "COLAB_RELEASE_TAG") if name in parse_env0(seen.stdout)
    }
    assert leaked == set()

    read = login_shell_as(other_account, f"cat {paths.session_env_file}")
    own = login_shell_as(connection.user, "env -0")
    assert read.returncode != 0 and "Permission denied" in read.stderr
    assert parse_env0(own.stdout)["CUDA_VERSION"] == expected["CUDA_VERSION"]  # su - is a login shell too


def test_the_profile_hook_holds_no_values_and_the_values_file_is_private(kernel_session, state_dir):
    connection, expected = kernel_session
    paths = Paths(state_dir=state_dir)
    account = pwd.getpwnam(connection.user)

    hook = paths.profile_script.read_text()
    values = paths.session_env_file.stat()
    folder = paths.session_env_file.parent.stat()

    assert expected["CUDA_VERSION"] not in hook and expected["CS_HASH"] not in hook
    assert f'"$(id -u)" = {account.pw_uid} ]' in hook
    assert (values.st_uid, stat.S_IMODE(values.st_mode)) == (account.pw_uid, 0o600)
    assert (folder.st_uid, stat.S_IMODE(folder.st_mode)) == (0, 0o711)  # others pass, cannot list


def test_stop_removes_the_hook_and_the_values(kernel_session, state_dir, ssh: SshClient):
    paths = Paths(state_dir=state_dir)
    assert paths.profile_script.exists() and paths.session_env_file.exists()

    stop_ssh(state_dir=state_dir)

    assert not paths.profile_script.exists() and not paths.session_env_file.exists()


def test_a_failed_start_leaves_no_environment_files(test_user, port, state_dir):
    paths = Paths(state_dir=state_dir)
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    with busy, pytest.raises(ColabSSHError):
        start_ssh(tunnel="none", port=busy.getsockname()[1], user=test_user, state_dir=state_dir, quiet=True)
    assert not paths.profile_script.exists() and not paths.session_env_file.exists()


# --- which names and values are never copied ------------------------------------------------------


# --- environments sshd or exec cannot carry ------------------------------------------------------


def start_with_environment(
    environ: dict, user: str, port: int, state_dir: Path
) -> subprocess.CompletedProcess:
    script = (
        "import json; from colab_ssh import start_ssh;"
        f"c = start_ssh(tunnel='none', port={port}, user={user!r}, state_dir={str(state_dir)!r}, quiet=True);"
        "print(json.dumps({'host': c.host, 'port': c.port, 'user': c.user, 'password': c.password,"
        " 'local_port': c.local_port, 'tunnel': c.tunnel}))"
    )
    return subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, timeout=60, check=False
    )


def test_a_value_that_is_not_utf8_is_skipped(test_user, port, state_dir, ssh: SshClient):
    environ = {
        **{name.encode(): value.encode() for name, value in colab_kernel_environment().items()},
        b"CS_LATIN1": "caf\xe9".encode("latin-1"),
    }

    started = start_with_environment(environ, test_user, port, state_dir)

    assert started.returncode == 0, started.stderr.decode(errors="replace")
    connection = Connection(**json.loads(started.stdout))
    got = parse_env0(ssh.run(connection, "env -0").stdout)
    assert "CS_LATIN1" not in got and got["CUDA_VERSION"] == colab_kernel_environment()["CUDA_VERSION"]


def test_more_variables_than_sshd_allows_are_capped_and_logins_work(test_user, port, state_dir, ssh):
    environ = {**colab_kernel_environment(), **{f"CS_MANY_{i:04}": f"value {i}" for i in range(1200)}}

    started = start_with_environment(environ, test_user, port, state_dir)

    assert started.returncode == 0, started.stderr
    warnings = [line for line in started.stderr.decode().splitlines() if "were left out" in line]
    assert len(warnings) == 1, started.stderr  # said once
    connection = Connection(**json.loads(started.stdout))
    command = ssh.run(connection, "env -0")
    assert command.returncode == 0, command.stderr
    got = parse_env0(command.stdout)
    copied = [name for name in got if name.startswith("CS_MANY_")]
    assert 0 < len(copied) < 1200 and len(got) < 999
    assert got["PATH"] == environ["PATH"] and got["CUDA_VERSION"] == environ["CUDA_VERSION"]  # kept first
    shell = ssh.run(connection, "", tty=True, stdin='echo "@@""$CUDA_VERSION@@"\nexit\n')
    assert shell.returncode == 0 and f"@@{environ['CUDA_VERSION']}@@" in shell.stdout, shell.stderr


def test_an_environment_too_large_to_exec_still_starts(test_user, port, state_dir, ssh, monkeypatch):
    # One string over 128 KiB (MAX_ARG_STRLEN) makes every exec with this environment fail (E2BIG).
    monkeypatch.setenv("CS_HUGE", "x" * 200_000)

    connection = start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    monkeypatch.delenv("CS_HUGE")  # the ssh client cannot run with it either

    result = ssh.run(connection, "echo ok; env -0")
    assert result.returncode == 0, result.stderr
    assert "CS_HUGE" not in parse_env0(result.stdout)
