"""The integration layer: real sshd, ssh, sshfs and the stand-ins, as root on Linux. Fixtures that need
root (a throw-away account, client keys) and the check that every test leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from colab_ssh import stop_ssh

from ..support.host import ClientKey, make_client_key, our_processes

if os.geteuid() != 0 or not sys.platform.startswith("linux"):
    pytest.exit(
        "tests/integration runs real sshd processes: run it as root on Linux (tests/unit needs neither)",
        returncode=2,
    )


@pytest.fixture
def test_user() -> Iterator[str]:
    """A fresh account (home under /home, which the user can reach), so tests never change root's password."""
    name = f"cst{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        subprocess.run(["userdel", "-f", "-r", name], check=False, capture_output=True)


@pytest.fixture(autouse=True)
def stop_everything(state_dir: Path) -> Iterator[None]:
    """Every test ends with stop_ssh(), and nothing of ours may survive it."""
    yield
    stop_ssh(state_dir=state_dir)
    assert our_processes(state_dir) == [], "processes left running after stop_ssh()"


@pytest.fixture
def client_key(tmp_path: Path) -> ClientKey:
    return make_client_key(tmp_path / "client")
