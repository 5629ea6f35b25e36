"""The benchmark command runs end to end on a tiny setting and writes its table (issues 6, 13).

Benchmarks are not tests: nothing here looks at how fast anything was, only that every row
is there with a number, and that the run left nothing behind: no process, no mount, no account,
and this machine's openssh-server exactly as it was (the cold start removes it in a private
mount namespace only).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.startup import apt_install_is_noop

REPO = Path(__file__).resolve().parent.parent.parent

# Each row of the results table, found by words its label must contain.
ROWS = (
    ("warm start, ours",),
    ("seed recipe",),
    ("floor:",),
    ("of which `import colab_ssh`",),
    ("re-run: second",),
    ("re-run with `tunnel='ngrok'`",),
    ("through the stand-in ngrok agent",),
    ("round trip through the relay",),
    ("printed `ssh -p P user@host true`", "first"),
    ("printed `ssh -p P user@host true`", "second in a row"),
    ("printed config block", "ControlMaster auto", "first"),
    ("printed config block", "ControlMaster auto", "second in a row"),
    ("plain `sshfs",),
    ("printed recommended command",),
    ("resident memory",),
    ("our sshd listener",),
    ("cold start with Drive", "concurrent steps"),
    ("cold start with Drive, today's sequential order",),
    ("cold start without Drive, concurrent steps",),
    ("cold start without Drive, today's sequential order",),
)
# The cold start's steps alone, in their own table, by how their label starts (median: 2nd column).
STEP_ROWS = ("package install", "agent download", "Drive mount", "agent start-up", "warm start:")
NUMBER = re.compile(r"\b\d+(\.\d+)? (ms|s|MiB)\b")


def _benchmark_users() -> set[str]:
    names = (line.split(":", 1)[0] for line in Path("/etc/passwd").read_text().splitlines())
    return {name for name in names if name.startswith("csb")}


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in command:
                found.append(command)
    return found


def _openssh_server() -> tuple[str, list[tuple[int, int, int]]]:
    """dpkg's word on openssh-server, and the identity (inode, size, mtime) of its programs."""
    status = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status} ${Version}", "openssh-server"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    programs = [Path("/usr/sbin/sshd"), Path("/usr/lib/openssh/sftp-server")]
    return status, [(path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) for path in programs]


def test_the_benchmark_command_runs_on_a_tiny_setting(tmp_path: Path) -> None:
    noop, apt_says = apt_install_is_noop()
    if not noop:
        pytest.skip(
            f"the seed recipe's `apt-get install openssh-server` would change this machine: {apt_says}"
        )
    out = tmp_path / "RESULTS.md"
    work = tmp_path / "work"
    users_before = _benchmark_users()
    openssh_before = _openssh_server()
    assert openssh_before[0].startswith("install ok installed"), openssh_before

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--repeat",
            "1",
            "--sshfs-repeat",
            "1",
            "--files",
            "10",
            "--delay-ms",
            "2",
            "--cold-repeat",
            "1",
            "--consent-s",
            "0.3",
            "--rtt-ms",
            "1",
            "--agent-mb",
            "0.2",
            "--session-s",
            "0.1",
            "--out",
            str(out),
            "--work-dir",
            str(work),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    for words in ROWS:
        matching = [row for row in rows if all(word in row for word in words)]
        assert matching, f"no row with {words!r} in:\n{table}"
        assert NUMBER.search(matching[0].split("|")[3]), f"no number in the median column: {matching[0]}"
    for label in STEP_ROWS:
        matching = [row for row in rows if row.startswith(f"| {label}")]
        assert matching, f"no step row {label!r} in:\n{table}"
        assert NUMBER.search(matching[0].split("|")[2]), f"no number in the median column: {matching[0]}"
    for field in ("CPU", "cores", "kernel", "OpenSSH", "sshfs", "Python"):
        assert f"| {field} |" in table
    assert "python -m benchmarks --repeat 1" in table
    assert "a new venv (colab-ssh-host pip-installed from this checkout)" in table
    timeline = table.split("## Cold start: when each step ran", 1)[-1]
    assert "| package install | " in timeline and "| start_ssh() returns | at " in timeline, timeline
    # Nothing left behind: processes, mounts, the temporary user.
    assert _processes_mentioning(str(work)) == []
    assert str(work) not in Path("/proc/mounts").read_text()
    assert _benchmark_users() == users_before
    assert _openssh_server() == openssh_before
