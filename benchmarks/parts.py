"""Re-runs, and the parts of the warm start one at a time: what a slow start is made of.

A re-run is a second start_ssh() in the same process while everything is up, as when a user
runs the notebook cell again; the parts (importing pyngrok, the programs start_ssh() runs, and
the recipe's apt-get no-op) are each timed alone, so a missed target can say where time goes.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .startup import PASSWORD, SSHD, minimal_sshd_config
from .support import APT_LOCKED, APT_RETRIES, free_port, median, stop_ssh_in_new_process

__all__ = ["Components", "measure_components", "measure_rerun"]

_RERUN = """\
import json, sys, time
from colab_ssh import start_ssh
options = json.loads(sys.argv[1])
start_ssh(quiet=True, **options)
samples = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter()
    start_ssh(quiet=True, **options)
    samples.append(time.perf_counter() - started)
print(json.dumps(samples))
"""


def measure_rerun(
    *,
    python: str,
    env: dict[str, str],
    work: Path,
    user: str,
    repeat: int,
    options: dict[str, object],
    calls: int = 5,
) -> tuple[list[float], list[float]]:
    """Seconds of the second start_ssh() in a process (one per round), and of every later one."""
    seconds: list[float] = []
    later: list[float] = []
    for _ in range(repeat):
        state_dir = work / "rerun-state"
        everything = {
            "port": free_port(),
            "user": user,
            "state_dir": str(state_dir),
            **options,
        }
        try:
            result = subprocess.run(
                [python, "-c", _RERUN, json.dumps(everything), str(calls)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
        finally:
            stop_ssh_in_new_process(python, env, state_dir)
        samples = json.loads(result.stdout.strip().splitlines()[-1])
        seconds.append(samples[0])
        later.extend(samples[1:])
    return seconds, later


@dataclass
class Components:
    """What ours spends its time on, each part measured alone (medians, seconds)."""

    import_pyngrok: float
    import_after_ipython: float  # `from colab_ssh import start_ssh` with IPython loaded first, as in a kernel
    pyngrok_on_import: bool  # whether `import colab_ssh` loads pyngrok (whatever the tunnel)
    sshd_t: float
    chpasswd: float
    hostname_i: float
    apt_noop: float


def _time_process(
    argv: list[str],
    repeat: int,
    stdin_text: str | None = None,
    env: dict[str, str] | None = None,
    stdin: int | None = None,
) -> float:
    samples: list[float] = []
    retries = APT_RETRIES
    while len(samples) < repeat:
        started = time.perf_counter()
        result = subprocess.run(
            argv,
            input=stdin_text,
            stdin=stdin if stdin_text is None else None,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if result.returncode != 0 and retries > 0 and any(sign in result.stderr for sign in APT_LOCKED):
            retries -= 1  # another apt held the lock (other tests run apt): not a sample, try again
            time.sleep(0.5)
            continue
        result.check_returncode()
        samples.append(seconds)
    return median(samples)


def measure_components(*, python: str, env: dict[str, str], work: Path, user: str, repeat: int) -> Components:
    """The parts of start_ssh()'s time that the floor does not have, one by one."""
    script = (
        "import time; started = time.perf_counter()\n"
        "from pyngrok import conf, installer, ngrok, process\n"
        "print(time.perf_counter() - started)"
    )
    imports = []
    for _ in range(repeat):
        result = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True, check=True)
        imports.append(float(result.stdout))
    after_ipython = []
    script = (
        "import time, IPython\nstarted = time.perf_counter()\n"
        "from colab_ssh import start_ssh\nprint(time.perf_counter() - started)"
    )
    for _ in range(repeat):
        result = subprocess.run([python, "-c", script], env=env, capture_output=True, text=True, check=True)
        after_ipython.append(float(result.stdout))
    loaded = subprocess.run(
        [python, "-c", "import sys, colab_ssh; print('pyngrok' in sys.modules)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    config = minimal_sshd_config(work)
    port = str(free_port())
    return Components(
        import_pyngrok=median(imports),
        import_after_ipython=median(after_ipython),
        pyngrok_on_import=loaded == "True",
        sshd_t=_time_process([SSHD, "-t", "-f", str(config), "-p", port], repeat),
        chpasswd=_time_process(["chpasswd"], repeat, stdin_text=f"{user}:{PASSWORD}\n"),
        hostname_i=_time_process(["hostname", "-I"], repeat),
        apt_noop=_time_process(
            ["apt-get", "install", "-y", "openssh-server"],
            repeat,
            env={**env, "DEBIAN_FRONTEND": "noninteractive"},
            stdin=subprocess.DEVNULL,
        ),
    )
