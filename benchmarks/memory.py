"""Memory: what colab_ssh adds to the notebook's process, and what it runs beside it.

A fresh Python reads its own VmRSS before ``import colab_ssh``, after it, after
``start_ssh(tunnel="none")`` and after ``start_ssh(tunnel="ngrok")`` (stand-in agent; pyngrok
starts a thread that reads the agent's log). A notebook kernel has IPython loaded before any cell
runs, so the same is measured once more in a process that imported IPython first: that is closer
to what a Colab user pays. A background monitor, if colab_ssh has one, runs inside the process
and is part of the start_ssh() step; it is reported by name.
"""

from __future__ import annotations

import functools
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .startup import STAND_IN_TOKEN, NgrokCloud
from .support import free_port, median, once_more_on_failure

__all__ = ["MemoryResults", "measure_memory"]

_PROBE = """\
import importlib.util, inspect, json, os, sys, threading, time
from pathlib import Path
from typing import Any

def rss_kib(pid="self"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

def cpu_s(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")  # incl. reaped children

def pid_in(path):  # colab_ssh's pid files: {"pid": ..., "start_time": ..., "argv": [...]}
    try:
        return int(json.loads(Path(path).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None

options = json.loads(sys.argv[1])
out = {}
if options.pop("preload_ipython"):
    import IPython  # noqa: F401
out["before"] = rss_kib()
import colab_ssh
from colab_ssh import start_ssh, stop_ssh
out["import"] = rss_kib()
token = options.pop("authtoken")
window = options.pop("monitor_window")
has_monitor = "monitor_interval" in inspect.signature(start_ssh).parameters
out["monitor"] = has_monitor
if has_monitor:
    start_ssh(tunnel="none", quiet=True, monitor_interval=None, **options)
    out["none_without_monitor"] = rss_kib()
start_ssh(tunnel="none", quiet=True, **options)  # the default: with the monitor, if there is one
out["none"] = rss_kib()
out["threads_none"] = threading.active_count()
sshd = pid_in(Path(options["state_dir"]) / "sshd.pid")
out["sshd"] = rss_kib(sshd) if sshd else 0
if has_monitor:
    # CPU of monitor rounds, in this process and in sshd (each round asks it for a banner).
    interval = 0.25
    start_ssh(tunnel="none", quiet=True, monitor_interval=interval, **options)
    ours, theirs = time.process_time(), cpu_s(sshd)
    time.sleep(window)
    rounds = window / interval
    out["monitor_cpu_process"] = (time.process_time() - ours) / rounds
    out["monitor_cpu_sshd"] = (cpu_s(sshd) - theirs) / rounds
start_ssh(tunnel="ngrok", authtoken=token, quiet=True, **options)
out["ngrok"] = rss_kib()
out["threads_ngrok"] = threading.active_count()
agent = pid_in(Path(options["state_dir"]) / "ngrok.pid")
out["agent"] = rss_kib(agent) if agent else 0
stop_ssh()
print(json.dumps(out))
"""


@dataclass
class MemoryResults:
    """Medians in KiB, per baseline ("bare" Python, "IPython" loaded first)."""

    rows: dict[str, dict[str, float]]
    monitor: bool  # whether start_ssh() has a monitor_interval (a background monitor thread)
    threads_none: int
    threads_ngrok: int
    monitor_cpu_process: float = 0.0  # CPU seconds per monitor round, in the notebook's process
    monitor_cpu_sshd: float = 0.0  # and in sshd (a banner check is a new sshd process)


def _probe(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the memory probe failed:\n{result.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return out


def measure_memory(
    *,
    python: str,
    env: dict[str, str],
    ngrok: NgrokCloud,
    work: Path,
    user: str,
    repeat: int,
    monitor_window: float = 2.0,
) -> MemoryResults:
    rows: dict[str, dict[str, float]] = {}
    monitor = False
    threads = (0, 0)
    cpu: dict[str, list[float]] = {"monitor_cpu_process": [], "monitor_cpu_sshd": []}
    for baseline, preload in (("bare Python", False), ("IPython loaded first", True)):
        samples: dict[str, list[float]] = {}
        for _ in range(repeat):
            options = {
                "preload_ipython": preload,
                "authtoken": STAND_IN_TOKEN,
                "port": free_port(),
                "user": user,
                "state_dir": str(work / "memory-state"),
                "monitor_window": monitor_window,
            }
            argv = [python, "-c", _PROBE, json.dumps(options)]
            out = once_more_on_failure(
                "a memory probe", functools.partial(_probe, argv, {**env, **ngrok.env})
            )
            monitor = bool(out["monitor"])
            threads = (int(out["threads_none"]), int(out["threads_ngrok"]))
            for key in ("before", "import", "none_without_monitor", "none", "ngrok", "sshd", "agent"):
                samples.setdefault(key, []).append(float(out.get(key, out["none"])))
            for key, values in cpu.items():
                if key in out:
                    values.append(float(out[key]))
        rows[baseline] = {key: median(values) for key, values in samples.items()}
    return MemoryResults(
        rows=rows,
        monitor=monitor,
        threads_none=threads[0],
        threads_ngrok=threads[1],
        monitor_cpu_process=median(cpu["monitor_cpu_process"]) if cpu["monitor_cpu_process"] else 0.0,
        monitor_cpu_sshd=median(cpu["monitor_cpu_sshd"]) if cpu["monitor_cpu_sshd"] else 0.0,
    )
