"""Cold start (issue 13): a fresh runtime's first start_ssh(), concurrent steps against today's order.

A fresh runtime has no openssh-server and no ngrok agent, and with ``mount_drive=True`` the user
first clicks through Google's consent. Each run is one whole process, timed from spawn until a
real password login through the tunnel succeeds (``sshpass`` + ``ssh ... true``), as the user
waits for it:

- openssh-server is absent in a private mount namespace only (``cold_runtime.py``: overlays on
  /etc, /usr and /var, ``dpkg --purge`` there), so this machine's /usr/sbin/sshd is never
  touched; apt installs from a local repository (the installed version's .debs, fetched once
  with ``apt-get download``);
- the .debs and the agent come from ``file_server.py`` with a stated round trip and bandwidth;
  the agent is the stand-in (tests/stand_ins/ngrok) packed as pyngrok's installer expects it,
  padded to the real archive's size; pyngrok's CDN address is pointed at the local server;
- the agent's login to its cloud takes a stated time (STAND_IN_NGROK_SESSION_DELAY);
- the Drive consent is a fixed delay in the google.colab stand-in (``colab_stand_in/``), and
  the process plays a notebook kernel, as only a cell can mount Drive.

The same run times today's sequential order through engineer D's seam
(``colab_ssh.parallel_steps.CONCURRENT = False``), and each step alone, for the targets.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .startup import STAND_IN_NGROK, STAND_IN_TOKEN, NgrokCloud
from .support import (
    end_when_stdin_closes,
    free_port,
    median,
    once_more_on_failure,
    pids_mentioning,
    read_line,
    stop_pid,
)

__all__ = [
    "PACKAGES",
    "SCENARIOS",
    "ColdResults",
    "ColdSettings",
    "LocalInternet",
    "measure_cold",
]

COLD_RUNTIME = Path(__file__).with_name("cold_runtime.py")
FILE_SERVER = Path(__file__).with_name("file_server.py")
STAND_IN_COLAB = Path(__file__).with_name("colab_stand_in")
PACKAGES = ("openssh-server", "openssh-sftp-server")  # what cold_runtime.py removes
SCENARIOS = ("drive", "no drive")
ORDERS = ("concurrent", "sequential")
STEPS = ("install", "download", "drive", "agent", "warm")  # the steps alone, by key
_AGENT_ARCHIVE = "ngrok-v3-stable-linux-amd64.tgz"
_READY_TIMEOUT = 120.0
_RUN_TIMEOUT = 300.0

# start_steps.py's functions whose calls the first cell times, and what the report calls them.
# Since da91127 ngrok's prepare() also starts the agent (its cloud login), so open() only
# creates the endpoint; in today's order prepare() runs inside the tunnel's opening.
_NOTED = (
    ("_install_sshd", "package install"),
    ("prepare_tunnel", "the tunnel's prepare() (agent download, then its start)"),
    ("_mount_drive", "Drive's consent"),
    ("validate_config", "`sshd -t`"),
    ("_open_tunnel", "the tunnel opens (waits for prepare(), creates the endpoint)"),
)
# The same for colab_ssh.tunnels.ngrok: the agent's start inside prepare() (its Progress row
# "Starting the ngrok agent").
_NOTED_NGROK = (("_start_agent", "the agent starts (its login to ngrok's cloud)"),)

# Lines every timed Python runs first: today's order if asked (engineer D's seam), pyngrok's
# CDN pointed at the local server (patched as pyngrok.installer loads, wherever that happens),
# and a notebook kernel as far as colab_ssh looks for one (platform.in_notebook).
_PRELUDE = """\
import importlib.util, json, sys, time, types
began = time.perf_counter()
settings = json.loads(sys.argv[1])
if settings.pop("sequential", False):
    try:
        import colab_ssh.parallel_steps as steps
        steps.CONCURRENT = False  # engineer D's seam: today's order, one step after another
    except ImportError:
        pass  # before issue 13: every start runs its steps one after another
agent_url = settings.pop("agent_url")

class LocalCdn:
    def find_spec(self, name, path=None, target=None):
        if name != "pyngrok.installer":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module
        def exec_module(module):
            load(module)
            module.get_ngrok_cdn_url = lambda *args, **kwargs: agent_url
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, LocalCdn())
shell = types.SimpleNamespace(kernel=object())
ipython = types.ModuleType("IPython")
ipython.get_ipython = lambda: shell
sys.modules["IPython"] = ipython
"""

# The user's first cell; it holds until its stdin closes (pyngrok ends the agent at exit). It
# also notes when start_steps.py's steps ran (seconds after this script began), for the report:
# wrappers around the module's own names, so a step that is not there is simply not shown.
_FIRST_CELL = (
    _PRELUDE
    + """\
from colab_ssh import start_ssh
import colab_ssh.start_steps as start_steps
timeline = []
def noted(function, label):
    def run(*args, **kwargs):
        start = time.perf_counter() - began
        try:
            return function(*args, **kwargs)
        finally:
            timeline.append((label, start, time.perf_counter() - began))
    return run
import colab_ssh.tunnels.ngrok as ngrok_tunnel  # start_ssh(tunnel="ngrok") loads it before any step
for module, steps in ((start_steps, STEPS_NOTED), (ngrok_tunnel, NGROK_NOTED)):
    for name, label in steps:
        if hasattr(module, name):
            setattr(module, name, noted(getattr(module, name), label))
if hasattr(start_steps, "SshdProcess"):
    start_steps.SshdProcess.launch = noted(start_steps.SshdProcess.launch, "sshd starts")
connection = start_ssh(quiet=True, **settings)
timeline.append(("start_ssh() returns", 0.0, time.perf_counter() - began))
print(json.dumps({"host": connection.host, "port": connection.port, "password": connection.password,
                  "timeline": timeline}), flush=True)
sys.stdin.read()
""".replace("STEPS_NOTED", repr(_NOTED)).replace("NGROK_NOTED", repr(_NOTED_NGROK))
)

# Each step alone, timed inside a process (after its imports): prints the seconds.
_INSTALL_ALONE = """\
import sys, time
from pathlib import Path
from colab_ssh.system import ensure_package
started = time.perf_counter()
ensure_package("sshd", "openssh-server", log_path=Path(sys.argv[1]))
print(time.perf_counter() - started)
"""
_DOWNLOAD_ALONE = (
    _PRELUDE
    + """\
from pyngrok import installer
started = time.perf_counter()
installer.install_ngrok(settings["path"])
print(time.perf_counter() - started)
"""
)
_DRIVE_ALONE = """\
import time
from google.colab import drive
started = time.perf_counter()
drive.mount("/content/drive")
print(time.perf_counter() - started)
"""
_AGENT_ALONE = """\
import sys, time
from pathlib import Path
from colab_ssh.paths import Paths
from colab_ssh.tunnels.ngrok import NgrokTunnel
tunnel = NgrokTunnel(sys.argv[1], paths=Paths(state_dir=Path(sys.argv[2])))
started = time.perf_counter()
tunnel.open(int(sys.argv[3]))
print(time.perf_counter() - started, flush=True)
tunnel.close()
"""


@dataclass(frozen=True)
class ColdSettings:
    """The fresh runtime's parameters, as RESULTS.md states them."""

    consent_s: float = 5.0  # the user clicking through Drive's consent, and Drive starting
    rtt_ms: float = 20.0  # to the package mirror and the agent's CDN
    mbit: float = 100.0  # their bandwidth
    agent_mb: float = 9.0  # the agent archive's size (pyngrok downloads a .tgz of ngrok 3)
    session_s: float = 1.0  # the agent's login to ngrok's cloud
    repeat: int = 3


@dataclass
class ColdResults:
    """Seconds per round, by "scenario/order" ("drive/concurrent", ...), and the steps alone."""

    settings: ColdSettings
    seam: bool  # whether colab_ssh has engineer D's seam (else both orders are today's)
    package_kb: int  # the .debs apt fetches
    login: dict[str, list[float]] = field(default_factory=dict)  # spawn to a working login
    returned: dict[str, list[float]] = field(default_factory=dict)  # spawn to start_ssh() returning
    steps: dict[str, list[float]] = field(default_factory=dict)  # each step alone (STEPS)
    # When each step ran in the runs (by "scenario/order", then the step's label): (start, end)
    # seconds after the timed script began, one pair per round.
    timeline: dict[str, dict[str, list[tuple[float, float]]]] = field(default_factory=dict)

    def median_login(self, scenario: str, order: str) -> float:
        return median(self.login.get(f"{scenario}/{order}", []))

    def median_step(self, step: str) -> float:
        return median(self.steps.get(step, []))


@dataclass(frozen=True)
class LocalInternet:
    """The local file server: the apt repository at ``debs/``, the agent archive at its root."""

    url: str
    package_kb: int

    @property
    def repository(self) -> str:
        return f"{self.url}/debs"

    @property
    def agent_url(self) -> str:
        return f"{self.url}/{_AGENT_ARCHIVE}"


def _installed_version(package: str) -> str:
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
    ).stdout.strip()


def _fetch_packages(debs: Path) -> int:
    """The installed version's .debs (so that the overlay installs what the machine has), once."""
    debs.mkdir(parents=True, exist_ok=True)
    wanted = [f"{package}={_installed_version(package)}" for package in PACKAGES]
    subprocess.run(
        ["apt-get", "download", "-q", *wanted], cwd=debs, capture_output=True, text=True, check=True
    )
    packages = subprocess.run(
        ["dpkg-scanpackages", "-m", "."], cwd=debs, capture_output=True, text=True, check=True
    ).stdout
    (debs / "Packages").write_text(packages)
    return sum(path.stat().st_size for path in debs.glob("*.deb")) // 1024


def _pack_agent(folder: Path, size_mb: float) -> None:
    """The stand-in agent as pyngrok's installer unpacks it (``ngrok`` in a .tgz), padded with
    incompressible bytes to the real archive's size, so that the download takes as long."""
    script = STAND_IN_NGROK.read_bytes()
    padding = os.urandom(max(0, int(size_mb * 1e6) - len(script)))
    with tarfile.open(folder / _AGENT_ARCHIVE, "w:gz", compresslevel=1) as archive:
        for name, data, mode in (("ngrok", script, 0o755), ("ngrok.padding", padding, 0o644)):
            entry = tarfile.TarInfo(name)
            entry.size, entry.mode = len(data), mode
            archive.addfile(entry, io.BytesIO(data))


@contextlib.contextmanager
def local_internet(folder: Path, settings: ColdSettings) -> Iterator[LocalInternet]:
    """The .debs and the agent archive, served at the stated round trip and bandwidth."""
    package_kb = _fetch_packages(folder / "debs")
    _pack_agent(folder, settings.agent_mb)
    server = subprocess.Popen(
        [sys.executable, str(FILE_SERVER), "--root", str(folder), "--rtt-ms", repr(settings.rtt_ms),
         "--mbit", repr(settings.mbit)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("READY "):
            raise RuntimeError(f"file_server.py did not start: {line!r}")
        yield LocalInternet(f"http://127.0.0.1:{int(line.split()[1])}", package_kb)
    finally:
        stop_pid(server.pid)
        if server.stdout is not None:
            server.stdout.close()


@contextlib.contextmanager
def cold_runtime(work: Path, repository: str) -> Iterator[list[str]]:
    """A private mount namespace without openssh-server; yields the argv prefix that runs inside."""
    scratch = work / f"cold-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    log = work / "cold_runtime.log"
    with log.open("w") as errors:
        holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", sys.executable, str(COLD_RUNTIME),
             "--scratch", str(scratch), "--repository", repository,
             "--machine-namespace", str(Path("/proc/self/ns/mnt").readlink())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
        )  # fmt: skip
    try:
        line = read_line(holder, _READY_TIMEOUT)
        if line.strip() != "READY":
            raise RuntimeError(f"cold_runtime.py failed: {log.read_text()[-2000:]}")
        yield ["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "--"]
    finally:
        end_when_stdin_closes(holder)
        with contextlib.suppress(OSError):
            scratch.rmdir()  # the tmpfs went with the namespace: an empty folder is left


def _login(host: str, port: int, user: str, password: str, timeout: float = 30.0) -> None:
    """A real password login through the tunnel: ``ssh user@host true`` until it succeeds."""
    argv = [
        "sshpass", "-e", "ssh", "-F", "/dev/null", "-p", str(port),
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password",
        "-o", "ConnectTimeout=10", f"{user}@{host}", "true",
    ]  # fmt: skip
    env = {**os.environ, "SSHPASS": password}
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=timeout)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no login through {host}:{port}: {result.stderr.strip()[-500:]}")
        time.sleep(0.02)


@dataclass(frozen=True)
class _Cell:
    """What every timed process of one run needs."""

    python: str
    env: dict[str, str]
    work: Path
    user: str
    internet: LocalInternet


@dataclass(frozen=True)
class _FirstCell:
    returned: float  # seconds from spawn until start_ssh() returned
    logged_in: float  # ... until a login through the tunnel worked
    timeline: list[tuple[str, float, float]]  # (step, start, end), seconds after the script began


def _first_cell(cell: _Cell, inside: list[str], drive: bool, sequential: bool) -> _FirstCell:
    """One fresh runtime's first start_ssh(): when it returned, when a login worked, its steps."""
    state_dir = cell.work / f"cold-state-{uuid.uuid4().hex[:8]}"
    settings = {
        "port": free_port(),
        "user": cell.user,
        "state_dir": str(state_dir),
        "tunnel": "ngrok",
        "authtoken": STAND_IN_TOKEN,
        "mount_drive": drive,
        "sequential": sequential,
        "agent_url": cell.internet.agent_url,
    }
    log = cell.work / "cold.log"
    try:
        with log.open("w") as errors:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*inside, cell.python, "-c", _FIRST_CELL, json.dumps(settings)],
                env=cell.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True,
                start_new_session=True,
            )  # fmt: skip
            try:
                line = " "
                while line and not line.startswith("{"):  # pyngrok's installer prints progress
                    line = read_line(process, _RUN_TIMEOUT)
                returned = time.perf_counter() - started
                if not line:
                    raise RuntimeError(f"the first cell printed nothing: {log.read_text()[-2000:]}")
                details = json.loads(line)
                _login(str(details["host"]), int(details["port"]), cell.user, str(details["password"]))
                logged_in = time.perf_counter() - started
            finally:
                end_when_stdin_closes(process)
        timeline = [(str(label), float(start), float(end)) for label, start, end in details["timeline"]]
        return _FirstCell(returned, logged_in, timeline)
    finally:
        script = "import sys; from colab_ssh import stop_ssh; stop_ssh(state_dir=sys.argv[1])"
        subprocess.run(
            [*inside, cell.python, "-c", script, str(state_dir)], env=cell.env, check=True, timeout=60
        )
        for pid in pids_mentioning(str(state_dir)):  # nothing should be left; if it is, it is ours
            stop_pid(pid)
        _forget_agent(cell.env)


def _in_fresh_runtime(cell: _Cell, drive: bool, sequential: bool) -> _FirstCell:
    with cold_runtime(cell.work, cell.internet.repository) as inside:
        return _first_cell(cell, inside, drive=drive, sequential=sequential)


def _forget_agent(env: dict[str, str]) -> None:
    """The downloaded agent goes: every run starts without one, as a fresh runtime does."""
    agent = Path(env["PYNGROK_NGROK_PATH"])
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(agent.parent)


def _seconds(argv: list[str], env: dict[str, str]) -> float:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=_RUN_TIMEOUT)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


def _steps_alone(cell: _Cell, results: ColdResults, warm: list[float]) -> None:
    """Each slow step once, alone, in a process of its own."""
    with cold_runtime(cell.work, cell.internet.repository) as inside:
        install = _seconds([*inside, cell.python, "-c", _INSTALL_ALONE, str(cell.work / "apt.log")], cell.env)
    download_settings = {"agent_url": cell.internet.agent_url, "path": cell.env["PYNGROK_NGROK_PATH"]}
    download = _seconds([cell.python, "-c", _DOWNLOAD_ALONE, json.dumps(download_settings)], cell.env)
    state_dir = cell.work / f"agent-state-{uuid.uuid4().hex[:8]}"
    try:
        agent = _seconds(
            [cell.python, "-c", _AGENT_ALONE, STAND_IN_TOKEN, str(state_dir), str(free_port())], cell.env
        )
    finally:
        for pid in pids_mentioning(str(state_dir)):
            stop_pid(pid)
        _forget_agent(cell.env)
        shutil.rmtree(state_dir, ignore_errors=True)
    drive = _seconds([cell.python, "-c", _DRIVE_ALONE], cell.env)
    for step, seconds in zip(STEPS, (install, download, drive, agent, median(warm)), strict=True):
        results.steps.setdefault(step, []).append(seconds)


def has_seam(python: str, env: dict[str, str]) -> bool:
    """Whether colab_ssh offers engineer D's seam to run today's sequential order."""
    script = "import colab_ssh.parallel_steps as steps; assert isinstance(steps.CONCURRENT, bool)"
    return subprocess.run([python, "-c", script], env=env, capture_output=True, check=False).returncode == 0


def cold_env(env: dict[str, str], ngrok: NgrokCloud, work: Path, settings: ColdSettings) -> dict[str, str]:
    """The timed processes' environment: the stand-in agent's cloud, Colab, no agent on disk yet."""
    return {
        **env,
        **ngrok.env,
        "PYNGROK_NGROK_PATH": str(work / "cold-agent" / "ngrok"),
        "STAND_IN_NGROK_SESSION_DELAY": repr(settings.session_s),
        "BENCH_DRIVE_CONSENT_S": repr(settings.consent_s),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(STAND_IN_COLAB), env.get("PYTHONPATH", "")])),
    }


def measure_cold(
    *,
    python: str,
    env: dict[str, str],
    ngrok: NgrokCloud,
    work: Path,
    user: str,
    settings: ColdSettings,
    warm: list[float],
    progress: Callable[[str], None] | None = None,
) -> ColdResults:
    """``settings.repeat`` rounds (after one warm-up) of both scenarios in both orders, then the
    steps alone. ``warm`` is the warm start's seconds to its call's return (tunnel='none')."""
    folder = work / "local-internet"
    folder.mkdir(parents=True, exist_ok=True)
    with local_internet(folder, settings) as internet:
        cell = _Cell(python, cold_env(env, ngrok, work, settings), work, user, internet)
        results = ColdResults(settings, has_seam(python, cell.env), internet.package_kb)
        for round_number in range(settings.repeat + 1):
            # Alternate which order goes first, so that neither always runs on a warmer machine.
            orders = ORDERS if round_number % 2 else ORDERS[::-1]
            for scenario in SCENARIOS:
                for order in orders:
                    run = once_more_on_failure(
                        f"a cold start ({scenario}, {order})",
                        functools.partial(
                            _in_fresh_runtime, cell, scenario == "drive", order == "sequential"
                        ),
                    )
                    key = f"{scenario}/{order}"
                    if round_number > 0:
                        results.returned.setdefault(key, []).append(run.returned)
                        results.login.setdefault(key, []).append(run.logged_in)
                        steps = results.timeline.setdefault(key, {})
                        for label, start, end in run.timeline:
                            if len(steps.setdefault(label, [])) < len(results.login[key]):  # first call
                                steps[label].append((start, end))
                    if progress is not None:
                        progress(
                            f"  cold round {round_number}/{settings.repeat}, {scenario}, {order}:"
                            f" {run.logged_in:.2f} s"
                        )
        for _ in range(settings.repeat):
            _steps_alone(cell, results, warm)
    return results
