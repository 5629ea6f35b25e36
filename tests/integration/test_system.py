"""Package installation, sshd start-up failures and file writes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from colab_ssh import PackageInstallError, SshdStartError, start_ssh
from colab_ssh import start_steps as start_steps_module
from colab_ssh.sshd_config import SshdSettings, render_sshd_config
from colab_ssh.system import ensure_package, restore_file, retry_while_text_busy, write_file

from ..support.host import our_processes


def test_install_without_update_when_lists_are_fine(apt, monkeypatch):
    script, calls, tmp = apt
    monkeypatch.setenv("APT_MODE", "ok")
    policy = tmp / "policy-rc.d"

    found = ensure_package(
        "fakeprog", "fakepkg", log_path=tmp / "apt.log", apt_get=str(script), policy_rc_d=policy
    )

    assert found == str(tmp / "bin" / "fakeprog")
    assert calls.read_text().splitlines() == [
        "install -y -q --no-install-recommends fakepkg DEBIAN_FRONTEND=noninteractive"
    ]
    assert not policy.exists()  # only there while apt ran


def test_stale_lists_get_one_update_and_one_retry(apt, monkeypatch):
    script, calls, tmp = apt
    monkeypatch.setenv("APT_MODE", "stale")
    # The update makes the lists fresh: the stand-in's install then succeeds.
    update_refreshes = script.read_text().replace(
        'update) echo "Reading package lists... Done"; exit 0 ;;',
        'update) touch "$APT_LISTS_FRESH"; echo "Reading package lists... Done"; exit 0 ;;',
    )
    script.write_text(update_refreshes)

    ensure_package(
        "fakeprog", "fakepkg", log_path=tmp / "apt.log", apt_get=str(script), policy_rc_d=tmp / "policy-rc.d"
    )

    verbs = [line.split()[0] for line in calls.read_text().splitlines()]
    assert verbs == ["install", "update", "install"]


def test_a_failed_install_raises_with_the_tail_of_apt_output(apt, monkeypatch):
    script, calls, tmp = apt
    monkeypatch.setenv("APT_MODE", "broken")

    with pytest.raises(PackageInstallError) as raised:
        ensure_package(
            "fakeprog",
            "fakepkg",
            log_path=tmp / "apt.log",
            apt_get=str(script),
            policy_rc_d=tmp / "policy-rc.d",
        )

    assert "dpkg returned an error code" in raised.value.output_tail
    assert "apt-get install fakepkg" in str(raised.value)
    assert [line.split()[0] for line in calls.read_text().splitlines()] == ["install"]  # no pointless update


def test_a_real_apt_install_of_a_missing_program(tmp_path):
    """The real apt-get, with a small real package that is not installed."""
    policy = Path("/usr/sbin/policy-rc.d")
    policy_before = policy.read_bytes() if policy.exists() else None
    if shutil.which("hello"):
        subprocess.run(["apt-get", "remove", "-y", "-q", "hello"], capture_output=True, check=True)
    try:
        found = ensure_package("hello", "hello", log_path=tmp_path / "apt.log")
        assert subprocess.run([found], capture_output=True, text=True, check=True).stdout.startswith("Hello")
        assert "hello" in (tmp_path / "apt.log").read_text()
        assert (policy.read_bytes() if policy.exists() else None) == policy_before  # as it was
    finally:
        subprocess.run(["apt-get", "remove", "-y", "-q", "hello"], capture_output=True, check=False)


def test_sshd_that_dies_at_start_raises_with_its_log(test_user, port, state_dir, monkeypatch):
    def unbindable(settings: SshdSettings) -> str:
        # Passes `sshd -t` (which binds nothing) but fails to bind: an address this machine lacks.
        return render_sshd_config(settings) + "ListenAddress 198.51.100.77\n"

    monkeypatch.setattr(start_steps_module, "render_sshd_config", unbindable)
    with pytest.raises(SshdStartError) as raised:
        start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert (
        "Cannot assign requested address" in raised.value.log_tail or "Cannot bind" in raised.value.log_tail
    )
    assert not (state_dir / "sshd_config").exists()  # rolled back
    assert our_processes(state_dir) == []


def test_write_file_is_atomic_private_from_the_start_and_undoable(tmp_path):
    target = tmp_path / "dir" / "secret.conf"
    assert write_file(target, "one\n", mode=0o600) is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    previous = write_file(target, "two\n", mode=0o600)
    assert previous == b"one\n" and target.read_text() == "two\n"
    restore_file(target, previous)
    assert target.read_text() == "one\n"
    restore_file(target, None)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary files left behind


def test_an_environment_too_large_to_exec_is_a_clear_error_for_apt(tmp_path, monkeypatch):
    """apt-get keeps the caller's environment (proxies, APT_CONFIG); one it cannot run with is an error."""
    monkeypatch.setenv("CS_HUGE", "x" * 200_000)  # over MAX_ARG_STRLEN: execve fails with E2BIG

    with pytest.raises(PackageInstallError, match=r"Could not run apt-get: .*Argument list too long"):
        ensure_package(
            "colab-ssh-no-such-program",
            "no-such-package",
            log_path=tmp_path / "apt.log",
            policy_rc_d=tmp_path / "policy-rc.d",
        )
    assert not (tmp_path / "policy-rc.d").exists()


def test_apt_runs_in_its_own_session_out_of_reach_of_a_notebooks_interrupt(apt, monkeypatch):
    """A notebook's interrupt goes to the kernel's whole process group (jupyter_client's
    LocalProvisioner.send_signal uses killpg); dpkg stopped halfway leaves a broken package."""
    script, _calls, tmp = apt
    monkeypatch.setenv("APT_MODE", "ok")
    monkeypatch.setenv("APT_SECONDS", "1")
    sessions: list[int] = []

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not sessions and time.monotonic() < deadline:
            sessions.extend(os.getsid(pid) for pid in our_processes(script))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    ensure_package(
        "fakeprog", "fakepkg", log_path=tmp / "apt.log", apt_get=str(script), policy_rc_d=tmp / "policy-rc.d"
    )
    watcher.join()

    assert sessions and os.getsid(0) not in sessions


def test_a_program_still_open_for_writing_is_run_once_the_writer_lets_go(tmp_path):
    """What a thread forking while another writes a program causes (the child holds the write
    descriptor until its exec): exec fails with ETXTBSY for that moment, and is tried again."""
    program = tmp_path / "fresh-program"
    writer = os.fdopen(os.open(program, os.O_WRONLY | os.O_CREAT, 0o755), "w")
    writer.write("#!/bin/sh\necho ran\n")
    writer.flush()

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(program)], capture_output=True, text=True, check=True)

    with pytest.raises(OSError, match="Text file busy"):
        run()  # as it is while the descriptor is open
    threading.Timer(0.2, writer.close).start()

    assert retry_while_text_busy(run).stdout == "ran\n"
