"""Time to a working login: our start_ssh() against the seed recipe and against the floor.

Everything is a whole process, timed from spawn until sshd answers with its SSH banner (what a
client needs first), as a user pays it: a fresh ``python -c "...start_ssh(...)"``, the recipe
as ``bash seed.sh``, and the floor, which no tool can beat: ``python -c pass`` plus a bare
``sshd -D`` with a minimal config reaching its banner. Rounds interleave the contenders so that
a drift of the machine hits all of them alike; one warm-up round is not counted.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .support import (
    APT_LOCKED,
    APT_RETRIES,
    REPO,
    free_port,
    stop_pid,
    stop_ssh_in_new_process,
    wait_for_banner,
)

__all__ = [
    "PASSWORD",
    "STAND_IN_TOKEN",
    "NgrokCloud",
    "StartupResults",
    "apt_install_is_noop",
    "measure_startup",
    "minimal_sshd_config",
]

SEED_SCRIPT = Path(__file__).with_name("seed.sh")
STAND_IN_NGROK = REPO / "tests" / "stand_ins" / "ngrok"
SYSTEM_SSHD_CONFIG = Path("/etc/ssh/sshd_config")
SSHD = "/usr/sbin/sshd"
# The recipe's password for the throw-away account, fed on stdin only; new every run.
PASSWORD = secrets.token_urlsafe(18)
STAND_IN_TOKEN = "tok_benchmark_stand_in"  # noqa: S105 - an account of the stand-in agent only


@dataclass(frozen=True)
class NgrokCloud:
    """The stand-in agent's environment: which program pyngrok runs, and its accounts."""

    env: dict[str, str]

    @classmethod
    def create(cls, folder: Path) -> NgrokCloud:
        folder.mkdir(parents=True, exist_ok=True)
        accounts = folder / "accounts.json"
        accounts.write_text(json.dumps({STAND_IN_TOKEN: {"card": True, "max_sessions": 3}}))
        return cls(
            env={
                "PYNGROK_NGROK_PATH": str(STAND_IN_NGROK),
                "STAND_IN_NGROK_ACCOUNTS": str(accounts),
                "STAND_IN_NGROK_STATE": str(folder / "state"),
            }
        )


@dataclass
class Run:
    """One whole process, timed from spawn."""

    banner_s: float
    exit_s: float


@dataclass
class OursRun:
    """One ``python -c "...start_ssh(...)"`` process, timed from spawn."""

    banner_s: float  # sshd answers on its local port
    returned_s: float  # start_ssh() returned (the line it prints after the call arrived)
    exit_s: float  # the process ended (for a held process: after the harness let it go)
    public_s: float  # the connection's own address answered (held processes; else nan)
    inside: dict[str, float]  # timed inside the process: "import", "call"


@dataclass
class StartupResults:
    """Seconds per round (medians are taken when reporting)."""

    ours_banner: list[float] = field(default_factory=list)
    ours_returned: list[float] = field(default_factory=list)
    ours_exit: list[float] = field(default_factory=list)
    ours_import: list[float] = field(default_factory=list)  # inside the process: import colab_ssh
    ours_call: list[float] = field(default_factory=list)  # inside the process: start_ssh() itself
    recipe_banner: list[float] = field(default_factory=list)
    floor_python: list[float] = field(default_factory=list)
    floor_sshd: list[float] = field(default_factory=list)
    ngrok_local_banner: list[float] = field(default_factory=list)
    ngrok_returned: list[float] = field(default_factory=list)
    ngrok_public: list[float] = field(default_factory=list)

    @property
    def floor(self) -> list[float]:
        return [python + sshd for python, sshd in zip(self.floor_python, self.floor_sshd, strict=True)]


# The user's one-liner, plus timing lines around the import and the call. With an extra
# argument it waits for its stdin to close before it exits: pyngrok ends the ngrok agent
# when the process that started it exits (atexit), so the tunnel is probed while it holds.
_OURS = """\
import json, sys, time
started = time.perf_counter()
from colab_ssh import start_ssh
imported = time.perf_counter()
connection = start_ssh(quiet=True, **json.loads(sys.argv[1]))
called = time.perf_counter()
print(json.dumps({"import": imported - started, "call": called - imported,
                  "host": connection.host, "port": connection.port}), flush=True)
if len(sys.argv) > 2:
    sys.stdin.read()
"""


def _kill_if_running(process: subprocess.Popen[str]) -> None:
    """A process that hung past every timeout is ours to end (only after a failed measurement)."""
    if process.poll() is None:
        process.kill()
        process.wait()


def _spawn_ours(argv: list[str], *, env: dict[str, str], port: int, log: Path, hold: bool) -> OursRun:
    """Start our one-liner; time the local banner, the call's return, the tunnel, the exit."""
    line: list[tuple[float, str]] = []
    exited: list[float] = []
    with log.open("w") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE if hold else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )

        def read_line() -> None:
            text = process.stdout.readline() if process.stdout else ""
            line.append((time.perf_counter() - started, text))

        def wait() -> None:
            process.wait()
            exited.append(time.perf_counter() - started)

        reader = threading.Thread(target=read_line, daemon=True)
        waiter = threading.Thread(target=wait, daemon=True)
        reader.start()
        waiter.start()
        try:
            banner = wait_for_banner(port, started, timeout=60)
            reader.join(60)
            if not line or not line[0][1].strip():
                raise RuntimeError(f"{argv[:2]} printed nothing; its stderr: {log.read_text()[-2000:]}")
            returned, text = line[0]
            inside = json.loads(text)
            public = float("nan")
            if hold:
                public = wait_for_banner(int(inside["port"]), started, timeout=30, host=str(inside["host"]))
        finally:
            if process.stdin is not None:
                process.stdin.close()
            waiter.join(60)
            _kill_if_running(process)
            if process.stdout is not None:
                process.stdout.close()
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:2]} exited with {process.returncode}: {log.read_text()[-2000:]}")
    return OursRun(banner, returned, exited[0], public, inside)


def _spawn_until_banner(
    argv: list[str], *, env: dict[str, str], port: int, log: Path, stdin_text: str | None = None
) -> Run:
    """Start ``argv`` and time it until 127.0.0.1:port answers with a banner, and until it exits.

    Output goes to a file, not a pipe: the recipe's ``sshd &`` would hold a pipe open forever.
    """
    exited: list[float] = []
    with log.open("w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

        def wait() -> None:
            if stdin_text is not None and process.stdin is not None:
                process.stdin.write(stdin_text)
                process.stdin.close()
            process.wait()
            exited.append(time.perf_counter() - started)

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        try:
            failed = lambda: process.poll() not in (None, 0)  # noqa: E731 - bash stopped early (set -e)
            banner = wait_for_banner(port, started, timeout=60, failed=failed)
        finally:
            waiter.join(60)
            _kill_if_running(process)
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:3]} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
    return Run(banner, exited[0])


def _run_ours(python: str, env: dict[str, str], work: Path, user: str, options: dict[str, object]) -> OursRun:
    port = free_port()
    state_dir = work / "ours-state"
    everything = {"port": port, "user": user, "state_dir": str(state_dir), **options}
    hold = options.get("tunnel") == "ngrok"
    argv = [python, "-c", _OURS, json.dumps(everything), *(["hold"] if hold else [])]
    try:
        return _spawn_ours(argv, env=env, port=port, log=work / "ours.log", hold=hold)
    finally:
        stop_ssh_in_new_process(python, env, state_dir)


def _run_recipe(env: dict[str, str], work: Path, user: str) -> Run:
    """The recipe once; again (not counted) when its apt-get found apt's lock held by another apt."""
    for _ in range(APT_RETRIES):
        try:
            return _run_recipe_once(env, work, user)
        except RuntimeError:
            if not any(sign in (work / "seed.log").read_text() for sign in APT_LOCKED):
                raise
            time.sleep(0.5)
    return _run_recipe_once(env, work, user)


def _run_recipe_once(env: dict[str, str], work: Path, user: str) -> Run:
    port = free_port()
    config = work / "seed_sshd_config"
    config.write_bytes(SYSTEM_SSHD_CONFIG.read_bytes())  # a fresh copy each round, as on a new runtime
    sshd_pid = work / "seed_sshd.child"
    sshd_pid.unlink(missing_ok=True)
    recipe_env = {
        **env,
        "DEBIAN_FRONTEND": "noninteractive",
        "SEED_SSHD_CONFIG": str(config),
        "SEED_PORT": str(port),
        "SEED_SSHD_PIDFILE": str(work / "seed_sshd.pid"),
        "SEED_SSHD_PID": str(sshd_pid),
    }
    try:
        return _spawn_until_banner(
            ["bash", str(SEED_SCRIPT)],
            env=recipe_env,
            port=port,
            log=work / "seed.log",
            stdin_text=f"{user}:{PASSWORD}\n",
        )
    finally:
        if sshd_pid.exists():
            stop_pid(int(sshd_pid.read_text()))


def minimal_sshd_config(work: Path) -> Path:
    """The least sshd will start with: one host key, loopback, a pid file of its own."""
    config = work / "floor_sshd_config"
    config.write_text(
        "HostKey /etc/ssh/ssh_host_ed25519_key\n"
        f"PidFile {work / 'floor_sshd.pid'}\n"
        "ListenAddress 127.0.0.1\n"
        "UsePAM no\n"
    )
    config.chmod(0o600)
    return config


def _run_floor(python: str, env: dict[str, str], work: Path) -> tuple[float, float]:
    started = time.perf_counter()
    subprocess.run([python, "-c", "pass"], env=env, check=True)
    python_s = time.perf_counter() - started
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [SSHD, "-D", "-f", str(minimal_sshd_config(work)), "-p", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sshd_s = wait_for_banner(port, started)
    finally:
        stop_pid(process.pid)
    return python_s, sshd_s


def apt_install_is_noop() -> tuple[bool, str]:
    """Whether ``apt-get install -y openssh-server`` would change nothing (asked with ``-s``).

    The recipe runs it for real; it must not upgrade or install anything on this machine.
    """
    result = subprocess.run(
        ["apt-get", "install", "-s", "-y", "openssh-server"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    output = result.stdout + result.stderr
    noop = result.returncode == 0 and re.search(r"\b0 upgraded, 0 newly installed, 0 to remove\b", output)
    return bool(noop), output.strip().splitlines()[-1] if output.strip() else ""


def measure_startup(
    *,
    python: str,
    env: dict[str, str],
    ngrok: NgrokCloud,
    work: Path,
    user: str,
    repeat: int,
    progress: Callable[[str], None] | None = None,
) -> StartupResults:
    """``repeat`` interleaved rounds of: floor, ours, the recipe, ours through the stand-in agent."""
    results = StartupResults()
    ngrok_env = {**env, **ngrok.env}
    ngrok_options: dict[str, object] = {"tunnel": "ngrok", "authtoken": STAND_IN_TOKEN}
    for round_number in range(repeat + 1):
        counted = round_number > 0  # round 0 warms caches (bytecode, apt's lists, page cache)
        python_s, sshd_s = _run_floor(python, env, work)
        ours = _run_ours(python, env, work, user, {"tunnel": "none"})
        recipe = _run_recipe(env, work, user)
        through = _run_ours(python, ngrok_env, work, user, ngrok_options)
        if not counted:
            continue
        results.floor_python.append(python_s)
        results.floor_sshd.append(sshd_s)
        results.ours_banner.append(ours.banner_s)
        results.ours_returned.append(ours.returned_s)
        results.ours_exit.append(ours.exit_s)
        results.ours_import.append(ours.inside["import"])
        results.ours_call.append(ours.inside["call"])
        results.recipe_banner.append(recipe.banner_s)
        results.ngrok_local_banner.append(through.banner_s)
        results.ngrok_returned.append(through.returned_s)
        results.ngrok_public.append(through.public_s)
        if progress is not None:
            progress(
                f"  start-up round {round_number}/{repeat}: ours {1000 * ours.banner_s:.0f} ms,"
                f" recipe {1000 * recipe.banner_s:.0f} ms, through ngrok {1000 * through.public_s:.0f} ms"
            )
    return results
