"""The machine a result was measured on: timings mean little without it."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["machine_info"]


def _version_line(argv: list[str], marker: str = "") -> str:
    """The first line of a program's version output that contains ``marker``."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if marker in line]
    return lines[0] if lines else "not found"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def _revision() -> str:
    """The commit of colab_ssh measured, and whether its files differed from that commit."""
    repo = Path(__file__).resolve().parent.parent
    commit = _version_line(["git", "-C", str(repo), "log", "-1", "--format=%h %s"])
    try:
        changed = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "colab_ssh"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        changed = ""
    return f"{commit} (with uncommitted changes in colab_ssh/)" if changed else commit


def machine_info() -> dict[str, str]:
    """CPU, cores, kernel, OS, the versions of the programs the benchmarks run, and our commit."""
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "kernel": platform.release(),
        "OS": _os_name(),
        "OpenSSH": _version_line(["ssh", "-V"]),
        "sshfs": _version_line(["sshfs", "--version"], "SSHFS"),
        "FUSE": _version_line(["sshfs", "--version"], "FUSE library"),
        "Python": f"{platform.python_version()} ({sys.executable})",
        "pyngrok": _package_version("pyngrok"),
        "colab_ssh": _revision(),
    }
