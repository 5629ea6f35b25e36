"""The integration layer: real sshd, ssh, sshfs and the stand-ins, as root on Linux. Fixtures that need
root (a throw-away account, client keys) and the check that every test leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from colab_ssh import stop_ssh

from ..support.host import ClientKey, hold_open_for_writing, make_client_key, our_processes
from ..support.stand_ins import APT_STAND_IN

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
def apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """The apt-get stand-in (stand_ins.APT_STAND_IN) first on PATH: (the script, its call log, tmp_path)."""
    script = tmp_path / "apt-get"
    script.write_text(APT_STAND_IN)
    script.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    monkeypatch.setenv("APT_CALLS", str(calls))
    monkeypatch.setenv("APT_BIN", str(bin_dir))
    monkeypatch.setenv("APT_LISTS_FRESH", str(tmp_path / "fresh"))
    monkeypatch.setenv("PATH", f"{tmp_path}:{bin_dir}:{os.environ['PATH']}")
    return script, calls, tmp_path


@pytest.fixture
def client_key(tmp_path: Path) -> ClientKey:
    return make_client_key(tmp_path / "client")


@pytest.fixture
def hold_for_writing() -> Iterator[Callable[[Path], subprocess.Popen[bytes]]]:
    """``hold(path)``: a process keeps ``path`` open for writing for half a second, as a child forked
    by another start step keeps it until its exec (support.host.hold_open_for_writing). Every
    holder is waited for at the end."""
    holders: list[subprocess.Popen[bytes]] = []

    def hold(path: Path) -> subprocess.Popen[bytes]:
        holders.append(hold_open_for_writing(path, 0.5))
        return holders[-1]

    yield hold
    for holder in holders:
        holder.wait(timeout=30)
