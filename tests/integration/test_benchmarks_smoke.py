"""The benchmark command runs end to end on a tiny setting and writes its table (issue 6).

Benchmarks are not tests: nothing here looks at how fast anything was, only that every row
is there with a number, and that the run left nothing behind.
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
)
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


def test_the_benchmark_command_runs_on_a_tiny_setting(tmp_path: Path) -> None:
    noop, apt_says = apt_install_is_noop()
    if not noop:
        pytest.skip(
            f"the seed recipe's `apt-get install openssh-server` would change this machine: {apt_says}"
        )
    out = tmp_path / "RESULTS.md"
    work = tmp_path / "work"
    users_before = _benchmark_users()

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
            "--out",
            str(out),
            "--work-dir",
            str(work),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    for words in ROWS:
        matching = [row for row in rows if all(word in row for word in words)]
        assert matching, f"no row with {words!r} in:\n{table}"
        assert NUMBER.search(matching[0].split("|")[3]), f"no number in the median column: {matching[0]}"
    for field in ("CPU", "cores", "kernel", "OpenSSH", "sshfs", "Python"):
        assert f"| {field} |" in table
    assert "python -m benchmarks --repeat 1" in table
    # Nothing left behind: processes, mounts, the temporary user.
    assert _processes_mentioning(str(work)) == []
    assert str(work) not in Path("/proc/mounts").read_text()
    assert _benchmark_users() == users_before
