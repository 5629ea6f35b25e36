"""The notebook kernel's environment reaches SSH sessions: plain commands and interactive logins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from colab_ssh import Connection
from colab_ssh.environment import NVIDIA_LIBRARY_DIR, render_profile_script, session_environment
from colab_ssh.sshd_config import quote_setenv_value

from .conftest import SshClient

KERNEL_ENV_FILE = Path(__file__).parent / "data" / "colab-kernel-env.txt"
# Tricky values a kernel environment can hold; sshd's config quoting must carry them unchanged.
TRICKY = {
    "CS_QUOTES": "say \"hi\" and 'bye'",
    "CS_BACKSLASH": "C:\\path\\to\\thing\\",
    "CS_HASH": "#not a comment = still # value",
    "CS_DOLLAR": "$HOME and `date` stay literal",
    "CS_EMPTY": "",
}


def colab_kernel_environment() -> dict[str, str]:
    """A real Colab kernel's environment (from tests/data), as a GPU runtime would have it."""
    environ = {}
    for line in KERNEL_ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            environ[name] = value
    environ["COLAB_GPU"] = "1"
    environ["LD_LIBRARY_PATH"] = f"{NVIDIA_LIBRARY_DIR}:{environ['LD_LIBRARY_PATH']}"
    return environ


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


def test_selection_keeps_cuda_and_path_and_drops_kernel_only_variables():
    kernel = colab_kernel_environment()
    selected = session_environment({**kernel, "NGROK_AUTHTOKEN": "secret", "MY_API_KEY": "k"})

    assert selected["PATH"] == kernel["PATH"]
    assert selected["LD_LIBRARY_PATH"].split(":")[0] == NVIDIA_LIBRARY_DIR
    for kept in (
        "CUDA_VERSION",
        "COLAB_GPU",
        "COLAB_RELEASE_TAG",
        "NVIDIA_VISIBLE_DEVICES",
        "LANG",
        "PYTHONPATH",
        "TF_FORCE_GPU_ALLOW_GROWTH",
        "NVIDIA_REQUIRE_CUDA",
    ):
        assert selected[kept] == kernel[kept]
    for dropped in (
        "MPLBACKEND",
        "JPY_PARENT_PID",
        "JPY_SESSION_NAME",
        "PYDEVD_USE_FRAME_EVAL",
        "PAGER",
        "GIT_PAGER",
        "CLICOLOR",
        "TERM",
        "SHLVL",
        "PWD",
        "OLDPWD",
        "_",
        "HOME",
        "HOSTNAME",
        "KMP_LISTEN_PORT",
        "KMP_EXTRA_ARGS",
        "COLAB_KERNEL_MANAGER_PROXY_HOST",
        "COLAB_JUPYTER_TOKEN",
        "NGROK_AUTHTOKEN",
        "MY_API_KEY",
    ):
        assert dropped not in selected
    assert list(selected) == sorted(selected)


def test_nvidia_libraries_are_added_when_the_kernel_lacks_them():
    assert session_environment({})["LD_LIBRARY_PATH"] == NVIDIA_LIBRARY_DIR
    assert (
        session_environment({"LD_LIBRARY_PATH": "/a:/b"})["LD_LIBRARY_PATH"] == f"/a:/b:{NVIDIA_LIBRARY_DIR}"
    )


def test_values_with_control_characters_are_left_out():
    assert "MULTI" not in session_environment({"MULTI": "two\nlines"})


@pytest.mark.parametrize("value", list(TRICKY.values()))
def test_setenv_quoting_escapes_only_what_sshd_unescapes(value):
    quoted = quote_setenv_value(value)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert quoted[1:-1].replace('\\"', "").count('"') == 0


def test_profile_script_is_valid_shell_that_exports_the_values():
    script = render_profile_script(TRICKY)
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
