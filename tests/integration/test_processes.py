"""Our processes are known by more than a number: a pid file naming anything but the very process
we started (a recycled pid, a process whose command line merely mentions our paths, a forged
start time) gets nothing killed; and secrets a dead owner left behind are removed at stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from colab_ssh import start_ssh, stop_ssh
from colab_ssh.errors import UnsafePathError
from colab_ssh.processes import descendants, stop_tree

from ..support.host import SshClient, our_processes
from ..support.stand_ins import NgrokCloud
from .test_cli import cli, saved_connection

EXAMPLES = Path(__file__).parent.parent.parent / "examples"

# The pid files colab_ssh keeps in the state folder, and the path each program's command line names.
PID_FILES = {
    "sshd.pid": "sshd_config",
    "ngrok.pid": "ngrok.yml",
    "cloudflared.pid": "cloudflared-agent.pid",
    "supervisor.pid": "supervisor.log",
}


def stat_start_time(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19])


@contextlib.contextmanager
def running_decoy(state_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Someone else's program whose command line mentions every path of ours, as words and inside words."""
    state_dir.mkdir(parents=True, exist_ok=True)
    mentions = [str(state_dir / name) for name in PID_FILES.values()]
    argv = [
        sys.executable, "-c", "import time; time.sleep(300)",
        "-D", "-f", str(state_dir / "sshd_config"), "--config", str(state_dir / "ngrok.yml"),
        "tunnel", "--pidfile", str(state_dir / "cloudflared-agent.pid"), "--url", "ssh://localhost:9",
        "-m", "colab_ssh", "serve", "--state-dir", str(state_dir), *mentions,
    ]  # fmt: skip
    process = subprocess.Popen(argv, start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def forged_records(pid: int) -> dict[str, str]:
    """What a pid file naming the decoy may hold: every way it is not a process we started."""
    started = stat_start_time(pid)
    own_argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    return {
        "the old bare-pid format": f"{pid}\n",
        "the old supervisor.pid format, with its true start time": f"{pid} {started}\n",
        "a recycled pid (another start time)": json.dumps(
            {"pid": pid, "start_time": started + 1, "argv": own_argv}
        ),
        "its true start time but another argv": json.dumps(
            {"pid": pid, "start_time": started, "argv": ["/usr/sbin/sshd", "-D"]}
        ),
    }


def killed_decoys(state_dir: Path, stop: Callable[[], None]) -> list[str]:
    """For each forged pid file (in every pid file's place), whether ``stop`` killed the decoy."""
    killed = []
    for form in forged_records(os.getpid()):
        with running_decoy(state_dir) as decoy:
            text = forged_records(decoy.pid)[form]
            for name in PID_FILES:
                (state_dir / name).write_text(text)
            stop()
            if decoy.poll() is not None:
                killed.append(form)
    return killed


def test_stop_ssh_never_signals_a_process_a_pid_file_merely_names(state_dir: Path):
    def stop() -> None:
        stop_ssh(state_dir=state_dir)
        assert not any((state_dir / name).exists() for name in PID_FILES if name != "supervisor.pid")

    assert killed_decoys(state_dir, stop) == []


def test_colab_ssh_stop_never_signals_a_process_a_pid_file_merely_names(state_dir: Path):
    def stop() -> None:
        stopped = cli("stop", "--state-dir", state_dir)
        assert stopped.returncode == 0, stopped.stderr
        status = cli("status", "--state-dir", state_dir)
        assert "is not running." in status.stdout, status.stdout

    assert killed_decoys(state_dir, stop) == []


def test_the_processes_we_start_are_recorded_and_a_left_one_is_stopped(test_user, port, state_dir: Path):
    """The other side of the rule: the record names the very sshd, and a later process stops it."""
    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    record = json.loads((state_dir / "sshd.pid").read_text())
    (listener,) = [
        pid for pid in our_processes(state_dir) if b"-D" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert record["pid"] == listener and record["start_time"] == stat_start_time(listener)
    # sshd retitles itself "sshd: <its argv> [listener] ...": the record holds that argv exactly.
    assert " ".join(record["argv"]) in Path(f"/proc/{listener}/cmdline").read_bytes().decode()
    # (-e: its log goes to the descriptor we opened, so sshd opens no path in the state folder.)
    assert record["argv"][1:6] == ["-D", "-e", "-f", str(state_dir / "sshd_config"), "-p"]
    assert (state_dir / "sshd.pid").stat().st_mode & 0o777 == 0o600

    stopped = subprocess.run(
        [sys.executable, "-c", "import sys; from colab_ssh import stop_ssh; stop_ssh(state_dir=sys.argv[1])",
         str(state_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip

    assert stopped.returncode == 0, stopped.stderr
    assert our_processes(state_dir) == []
    assert not (state_dir / "sshd.pid").exists()


def test_a_supervisor_killed_with_sigkill_leaves_no_token_or_password_after_stop(
    test_user, port, state_dir: Path, ngrok_cloud: NgrokCloud, ssh: SshClient, monkeypatch
):
    token = ngrok_cloud.add_account("tok_left_behind_5")
    monkeypatch.setenv("NGROK_AUTHTOKEN", token)
    started = cli("start", "--port", port, "--user", test_user, "--state-dir", state_dir)
    assert started.returncode == 0, started.stderr
    password = saved_connection(state_dir).password
    assert password
    text = (state_dir / "supervisor.pid").read_text()
    supervisor = json.loads(text)["pid"] if text.startswith("{") else int(text.split()[0])

    os.kill(supervisor, signal.SIGKILL)
    stopped = cli("stop", "--state-dir", state_dir)

    assert stopped.returncode == 0, stopped.stderr
    assert our_processes(state_dir) == []
    for path in state_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert token.encode() not in content, f"the ngrok token is still in {path}"
            assert password.encode() not in content, f"the password is still in {path}"


def test_stop_ssh_removes_the_token_an_earlier_kernel_left(
    test_user, port, state_dir: Path, ngrok_cloud: NgrokCloud
):
    """The API path: a kernel restart forgets the session; stop_ssh(state_dir=) in the new one cleans up."""
    token = ngrok_cloud.add_account("tok_left_by_kernel_6")
    kernel = subprocess.run(
        [sys.executable, "-c",
         "import os, sys; from colab_ssh import start_ssh;"
         " start_ssh(os.environ['TOKEN'], tunnel='ngrok', port=int(sys.argv[1]), user=sys.argv[2],"
         " state_dir=sys.argv[3], quiet=True); os._exit(0)",  # dies as a restarted kernel does
         str(port), test_user, str(state_dir)],
        env={**os.environ, "TOKEN": token}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert kernel.returncode == 0, kernel.stderr
    assert (state_dir / "ngrok.yml").exists()

    stop_ssh(state_dir=state_dir)

    assert our_processes(state_dir) == []
    assert not (state_dir / "ngrok.yml").exists()
    assert not any(token.encode() in path.read_bytes() for path in state_dir.rglob("*") if path.is_file())


def test_pid_files_and_the_lock_are_never_written_through_a_link(test_user, port, state_dir: Path, tmp_path):
    victim = tmp_path / "root-only-file"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    state_dir.mkdir(parents=True)
    for name in ("sshd.pid", "owner.pid"):
        (state_dir / name).symlink_to(victim)

    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert victim.read_text() == "precious\n"
    for name in ("sshd.pid", "owner.pid"):
        assert not (state_dir / name).is_symlink() and (state_dir / name).stat().st_mode & 0o777 == 0o600
    stop_ssh(state_dir=state_dir)

    (state_dir / "state.lock").unlink()
    (state_dir / "state.lock").symlink_to(victim)
    with pytest.raises(UnsafePathError, match=r"state\.lock is a symbolic link"):
        start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    assert victim.read_text() == "precious\n"
    assert our_processes(state_dir) == []
    (state_dir / "state.lock").unlink()  # stop_ssh() at teardown refuses the link too


def test_colab_ssh_stop_ends_a_foreground_server_whatever_script_runs_it(test_user, port, state_dir: Path):
    """Its command line is the script's, not `colab-ssh`: it is known by the serving.lock it keeps open."""
    script = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "ssh_on_a_vm.py"), "--tunnel", "none", "--port", str(port),
         "--user", test_user, "--state-dir", str(state_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert script.stdout is not None
        while not (line := script.stdout.readline()).startswith("Serving until Ctrl-C"):
            assert line, script.stderr.read() if script.stderr else ""

        assert "is up" in cli("status", "--state-dir", state_dir).stdout
        stopped = cli("stop", "--state-dir", state_dir)

        assert stopped.returncode == 0 and "Stopped." in stopped.stdout, stopped.stderr
        assert script.wait(timeout=60) == 0
        assert our_processes(state_dir) == []
    finally:
        script.kill()
        script.communicate()


# A process that exits on its Nth SIGTERM (as cloudflared does on its second), and may first start
# a child that ignores SIGTERM altogether.
_TERMED = """
import signal, subprocess, sys, time
needed, terms = int(sys.argv[1]), 0
def on_term(number, frame):
    global terms
    terms += 1
    print(f"term {terms}", flush=True)
    if terms >= needed:
        print("exit", flush=True)
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
if sys.argv[2] == "child":
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('child', flush=True)"
    subprocess.Popen([sys.executable, "-c", deaf + "; time.sleep(600)"])
print("ready", flush=True)
while True:
    time.sleep(0.05)
"""


def _termed(needed: int, child: bool) -> subprocess.Popen[str]:
    """Started, and its SIGTERM handler (and its child's SIG_IGN) in place."""
    process = subprocess.Popen(
        [sys.executable, "-c", _TERMED, str(needed), "child" if child else "alone"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    expected = {"ready\n", "child\n"} if child else {"ready\n"}
    assert {process.stdout.readline() for _ in expected} == expected
    return process


def _gone(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(FileNotFoundError):
        return stat.read_text().rpartition(")")[2].split()[0] == "Z"
    return True


def test_stop_tree_sends_as_many_sigterms_as_asked_before_sigkill():
    # (stop_tree() reaps its own children, so how each ended is read from what it printed.)
    twice = _termed(2, child=False)
    stop_tree(twice.pid, timeout=10.0, sigterms=2)
    assert twice.communicate(timeout=30)[0] == "term 1\nterm 2\nexit\n"  # its own exit, no SIGKILL

    once_asked = _termed(2, child=False)
    stop_tree(once_asked.pid, timeout=1.0)  # one SIGTERM is not enough for it: SIGKILL ends it
    assert once_asked.communicate(timeout=30)[0] == "term 1\n"
    assert _gone(once_asked.pid)


def test_stop_tree_also_ends_a_child_that_ignores_sigterm_after_its_parent_exited():
    parent = _termed(1, child=True)
    (child,) = descendants(parent.pid)
    stop_tree(parent.pid, timeout=5.0, children_timeout=1.0)
    assert parent.communicate(timeout=30)[0] == "term 1\nexit\n"
    assert _gone(child)
