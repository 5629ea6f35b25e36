"""One command for every benchmark: ``python -m benchmarks`` (see ``--help``), as root on Linux.

It runs on loopback only, needs no internet, changes nothing that outlives it (a temporary
user, temporary files, free ports, every process stopped), and writes a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from colab_ssh import start_ssh, stop_ssh

from .cold import ColdSettings, measure_cold
from .machine import machine_info
from .memory import measure_memory
from .parts import measure_components, measure_rerun
from .relay import DelayRelay, measure_rtt
from .report import render
from .results import Report
from .slow_link import SshfsRun, SshResults, measure_ssh, measure_sshfs, sshfs_variants
from .startup import STAND_IN_TOKEN, NgrokCloud, apt_install_is_noop, measure_startup
from .support import INCIDENTS, child_env, free_port, log, temporary_user
from .venv import clean_venv, venv_env

__all__ = ["main"]

PROGRAMS = (
    "sshd", "ssh", "sshpass", "sshfs", "fusermount3", "apt-get", "chpasswd", "useradd",
    "unshare", "nsenter", "dpkg-scanpackages",
)  # fmt: skip
DEFAULT_OUT = Path(__file__).with_name("RESULTS.md")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="colab_ssh benchmarks: time to a working login, and working over a slow link.",
    )
    parser.add_argument("--repeat", type=int, default=7, help="rounds for start-up, re-run and ssh (7)")
    parser.add_argument("--sshfs-repeat", type=int, default=2, help="sshfs workload runs per variant (2)")
    parser.add_argument("--files", type=int, default=200, help="files in the sshfs workload's tree (200)")
    parser.add_argument("--delay-ms", type=float, default=50.0, help="slow link: delay each way (50)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown file to write")
    parser.add_argument(
        "--python",
        help="time this interpreter with the checkout on PYTHONPATH (default: a new venv with the"
        " checkout pip-installed, made from this interpreter)",
    )
    parser.add_argument("--work-dir", type=Path, help="scratch folder (default: a new temporary one)")
    cold = parser.add_argument_group("cold start (a fresh runtime: no openssh-server, no agent)")
    cold.add_argument("--cold-repeat", type=int, default=3, help="rounds of each cold scenario (3)")
    cold.add_argument("--consent-s", type=float, default=5.0, help="Drive consent delay, seconds (5)")
    cold.add_argument("--rtt-ms", type=float, default=20.0, help="round trip to the downloads (20)")
    cold.add_argument("--mbit", type=float, default=100.0, help="bandwidth of the downloads, Mbit/s (100)")
    cold.add_argument("--agent-mb", type=float, default=9.0, help="the agent archive's size, MB (9)")
    cold.add_argument("--session-s", type=float, default=1.0, help="the agent's login to its cloud, s (1)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.sshfs_repeat < 1 or args.files < 1 or args.cold_repeat < 1:
        parser.error("--repeat, --sshfs-repeat, --files and --cold-repeat must be at least 1")
    if min(args.delay_ms, args.consent_s, args.rtt_ms, args.agent_mb, args.session_s) < 0 or args.mbit <= 0:
        parser.error(
            "--delay-ms, --consent-s, --rtt-ms, --agent-mb, --session-s not negative, --mbit above 0"
        )
    return args


def _preflight() -> None:
    """Refuse early, before anything is started, with what is missing."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        raise SystemExit("The benchmarks run real sshd processes: run them as root on Linux.")
    missing = [program for program in PROGRAMS if shutil.which(program, path=_sbin_path()) is None]
    if missing:
        raise SystemExit(f"Missing programs: {', '.join(missing)} (`bash .ci/run` installs them).")
    noop, summary = apt_install_is_noop()
    if not noop:
        raise SystemExit(
            "The seed recipe runs `apt-get install -y openssh-server`, which here would change the"
            f" machine ({summary!r}). The warm start needs openssh-server installed and current."
        )


def _sbin_path() -> str:
    return os.environ.get("PATH", "") + ":/usr/local/sbin:/usr/sbin:/sbin"


def _load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def _describe(python: str, args: argparse.Namespace) -> str:
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    if args.python is None:
        return f"{version}, a new venv (colab-ssh-host pip-installed from this checkout)"
    return f"{version} ({python}, this checkout on PYTHONPATH)"


def _command_line(argv: list[str] | None) -> str:
    shown = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", "benchmarks", *shown])


def _notes(args: argparse.Namespace, monitor: bool, cpu: tuple[float, float], load: str) -> list[str]:
    process_cpu, sshd_cpu = cpu
    monitor_note = (
        "Monitor: `colab_ssh.monitor` exists; `start_ssh()` starts it (a daemon thread, default every 5 s)."
        " Its memory is the difference between the rows with and without it (memory table); one round"
        f" costs {process_cpu * 1000:.1f} ms CPU in the notebook's process and {sshd_cpu * 1000:.1f} ms"
        " in sshd (measured over rounds at a 0.25 s interval)."
        if monitor
        else "Monitor: no monitor yet (colab_ssh has no `monitor` module)."
    )
    return [
        "Seed recipe: `benchmarks/seed.sh`, run whole as `bash seed.sh`. It appends its two lines to a"
        " fresh copy of /etc/ssh/sshd_config each round and starts `sshd -f <copy>`; the machine's"
        " own sshd_config is never changed (no back-up and restore needed). Its sshd also gets"
        " `-o ListenAddress=127.0.0.1 -o PidFile=<temp>` and `mkdir -p /run/sshd`, which cost"
        " nothing measurable. `apt-get install -s` confirmed first that the install is a no-op.",
        "Ours: a fresh `python -c \"from colab_ssh import start_ssh; start_ssh(tunnel='none', port=P,"
        ' user=U, state_dir=D, quiet=True)"` per round (a generated password, as by default), then'
        " `stop_ssh(state_dir=D)` in another process. The login user is a temporary account. sshd"
        " may answer its banner a little before `chpasswd` (run beside it) has set the password;"
        " the call returns when both are done, so the ratios by the call's return are shown too.",
        "Timing: from spawn until a TCP connect to 127.0.0.1:P reads `SSH-` (polled every 1 ms by the"
        " harness). "
        + (
            "Every timed Python is a new venv's (`python -m venv`, then `pip install` of a copy of this"
            " checkout: not editable, bytecode compiled by pip, dependencies from the index), so that"
            " no global package slows its start-up; `import colab_ssh` is timed inside the process."
            if args.python is None
            else "Every Python is the interpreter itself (`--python`; a pyenv shim on PATH would add a"
            " shell script's start-up) with one bytecode cache (PYTHONPYCACHEPREFIX) warmed by the"
            " uncounted first round, as a pip-installed package has its bytecode compiled."
        ),
        "Our sshd listens on all interfaces (colab_ssh passes no ListenAddress) on a free port; the"
        " recipe's and the floor's listen on 127.0.0.1.",
        "ngrok: `tests/stand_ins/ngrok` (a Python script that answers pyngrok locally and relays TCP)"
        " selected with PYNGROK_NGROK_PATH, `authtoken=` passed explicitly. The real agent is a Go"
        " binary that starts faster but must log in to ngrok's cloud (TLS and a few round trips)"
        " before the tunnel opens: over a real network add those round trips to row 3.",
        "Slow link: `benchmarks/delay_server.py`, a relay process that delays every byte by the delay"
        " in each direction, pipelined (a latency, not a bandwidth limit), behind a tunnel object"
        " (`benchmarks/relay.py`, name 'relay') passed as `start_ssh(tunnel=DelayRelay(...))`. RTT is"
        " the median of 1-byte TCP ping-pongs through it. The TCP handshake to the relay is local: a"
        " real tunnel adds one more round trip to every new connection (the first logins here),"
        " not to a shared one.",
        "ssh: `sshpass -e` (password in SSHPASS) runs the printed `conn.ssh_command` with `-F <file>`,"
        " and `ssh -F <file> colab` with the printed `conn.ssh_config` block in that file; both files"
        " carry the same options (StrictHostKeyChecking no, a temporary UserKnownHostsFile emptied"
        " before each pair, PubkeyAuthentication no) and nothing else is read. The block's"
        " ControlPath is moved to a temporary folder; the ControlPersist master is ended with"
        " `ssh -O exit` after each pair.",
        f"sshfs: a fresh tree of {args.files} files (1-4 KB, {10} per folder) in the temporary user's"
        " home and a fresh mount per run; both variants get `password_stdin` and the host-key"
        " options. Save = `write_bytes()` of the file plus one line, then its content is compared"
        " with the server's copy. Unmounted with `fusermount3 -u`.",
        "Memory: VmRSS of a fresh Python process at each step; 'IPython loaded first' imports IPython"
        " before colab_ssh, as a notebook kernel has it loaded.",
        monitor_note,
        *cold_notes(args),
        *(f"Incident: {incident}" for incident in INCIDENTS),
        f"Load average at the start of the run: {load}. Other processes on the machine share its"
        " 2 cores; medians damp, not remove, their effect.",
    ]


def cold_notes(args: argparse.Namespace) -> list[str]:
    """How the cold start was set up, with its parameters."""
    return [
        "Cold start: a private mount namespace per run (`unshare --mount`, benchmarks/cold_runtime.py):"
        " overlays on /usr and /var and copies of /etc and /var/lib/dpkg on a tmpfs, then"
        " `dpkg --purge openssh-server openssh-sftp-server` there, so the machine's own sshd is never"
        " touched. apt's only source there is a local repository (`deb [trusted=yes] http://... ./`,"
        " the installed version's .debs fetched once with `apt-get download`, `dpkg-scanpackages`);"
        " its lists are read before the run, as a runtime has them. The install is colab_ssh's own"
        " (`apt-get install -y -q --no-install-recommends openssh-server`, host keys generated by"
        " the package).",
        f"Cold start's downloads: `benchmarks/file_server.py`, {args.rtt_ms:g} ms round trip (one per"
        f" request, one more per connection; no TLS), {args.mbit:g} Mbit/s. The agent: the stand-in"
        " (tests/stand_ins/ngrok) in a .tgz as pyngrok's installer expects, padded with random bytes"
        f" to {args.agent_mb:g} MB (the real archive's order of size), from pyngrok's own installer"
        " with its CDN address pointed at the local server (patched as pyngrok.installer loads);"
        f" its login to its cloud takes {args.session_s:g} s (STAND_IN_NGROK_SESSION_DELAY)."
        f" Drive: `drive.mount()` of a google.colab stand-in returns after {args.consent_s:g} s (the"
        " user's consent and Drive's start, as one fixed delay); the process plays a notebook kernel"
        " (only a cell may mount Drive).",
        "Cold start's timing: a fresh `python -c` (entered into the namespace with `nsenter`) from"
        " spawn until `sshpass -e ssh user@host true` through the tunnel's address succeeds (the"
        " generated password, read from the process's stdout); the ngrok agent's download is"
        " removed before every run. Today's order is the same code with engineer D's seam"
        " `colab_ssh.parallel_steps.CONCURRENT = False`, in the same rounds, alternating which goes"
        " first. Each step alone: the install (`ensure_package()` in a fresh namespace), the"
        " download (`installer.install_ngrok()`), the consent (`drive.mount()`), the agent's"
        " start-up (`NgrokTunnel.open()` with the agent on disk), each in a process of its own,"
        " timed inside after its imports; the warm start (spawn to `start_ssh(tunnel='none')`"
        " returning) from row 1.",
    ]


@dataclass
class _SlowLink:
    rtt_s: float
    ssh: SshResults
    ssh_local: SshResults
    sshfs: dict[str, list[SshfsRun]]
    sshfs_options: tuple[str, ...]


def _slow_link(args: argparse.Namespace, user: str, work: Path) -> _SlowLink:
    """sshd behind the delay relay, started in this process: the relay is a tunnel object."""
    log(f"Slow link: {args.delay_ms:g} ms each way")
    delay = args.delay_ms / 1000
    rtt = measure_rtt(delay, pings=20)
    relay, state_dir = DelayRelay(delay_s=delay), work / "relay-state"
    connection = start_ssh(tunnel=relay, port=free_port(), user=user, state_dir=state_dir, quiet=True)
    try:
        ssh = measure_ssh(connection, work / "ssh-relay", args.repeat)
        # The same commands straight to sshd: what a login costs without any latency.
        direct = replace(connection, host="127.0.0.1", port=connection.local_port)
        ssh_local = measure_ssh(direct, work / "ssh-direct", args.repeat)
        log(f"  ssh: done; sshfs: {args.sshfs_repeat} run(s) per variant, {args.files} files")
        sshfs = measure_sshfs(connection, work, args.files, args.sshfs_repeat, progress=log)
        return _SlowLink(rtt, ssh, ssh_local, sshfs, sshfs_variants(connection)[1].options)
    finally:
        stop_ssh(state_dir=state_dir)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    _preflight()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    started = time.perf_counter()
    load = _load_average()
    work = Path(tempfile.mkdtemp(prefix="colab_ssh_bench.")) if args.work_dir is None else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    ngrok = NgrokCloud.create(work / "ngrok")
    try:
        if args.python is None:
            log("A clean venv with this checkout pip-installed")
            python = clean_venv(work / "venv", sys.executable)
            env = venv_env(python)
        else:
            python = args.python
            # `python3` (the stand-in agent's shebang) should be the interpreter itself, not a shim.
            env = child_env(work / "pycache", PATH=f"{Path(python).parent}:{os.environ.get('PATH', '')}")
        timed_python = _describe(python, args)
        with temporary_user() as user:
            log(f"Start-up: {args.repeat} rounds (+1 warm-up) of floor, ours, recipe, ours via ngrok")
            startup = measure_startup(
                python=python, env=env, ngrok=ngrok, work=work, user=user, repeat=args.repeat, progress=log
            )
            log("Re-runs")
            rerun_none = measure_rerun(
                python=python, env=env, work=work, user=user, repeat=args.repeat, options={"tunnel": "none"}
            )
            rerun_ngrok = measure_rerun(
                python=python,
                env={**env, **ngrok.env},
                work=work,
                user=user,
                repeat=args.repeat,
                options={"tunnel": "ngrok", "authtoken": STAND_IN_TOKEN},
            )
            log("Parts of the start-up, one by one")
            components = measure_components(python=python, env=env, work=work, user=user, repeat=args.repeat)
            log("Memory")
            memory = measure_memory(
                python=python, env=env, ngrok=ngrok, work=work, user=user, repeat=min(args.repeat, 3)
            )
            slow_link = _slow_link(args, user, work)
            cold_settings = ColdSettings(
                consent_s=args.consent_s,
                rtt_ms=args.rtt_ms,
                mbit=args.mbit,
                agent_mb=args.agent_mb,
                session_s=args.session_s,
                repeat=args.cold_repeat,
            )
            log(f"Cold start: {args.cold_repeat} rounds (+1 warm-up), with and without Drive, both orders")
            cold = measure_cold(
                python=python,
                env=env,
                ngrok=ngrok,
                work=work,
                user=user,
                settings=cold_settings,
                warm=startup.ours_returned,
                progress=log,
            )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    settings = {
        "settings": f"--repeat {args.repeat}, --sshfs-repeat {args.sshfs_repeat}, --files {args.files},"
        f" --delay-ms {args.delay_ms:g}, --cold-repeat {args.cold_repeat}, --consent-s {args.consent_s:g},"
        f" --rtt-ms {args.rtt_ms:g}, --mbit {args.mbit:g}, --agent-mb {args.agent_mb:g},"
        f" --session-s {args.session_s:g}",
        "delay": f"{args.delay_ms:g} ms",
        "files": str(args.files),
    }
    report = Report(
        command=_command_line(argv),
        started=started_at,
        duration_s=time.perf_counter() - started,
        machine={**machine_info(), "host": platform.node() or "unknown", "timed Python": timed_python},
        settings=settings,
        startup=startup,
        rerun_none=rerun_none,
        rerun_ngrok=rerun_ngrok,
        components=components,
        rtt_s=slow_link.rtt_s,
        ssh=slow_link.ssh,
        ssh_local=slow_link.ssh_local,
        sshfs=slow_link.sshfs,
        sshfs_options=slow_link.sshfs_options,
        memory=memory,
        cold=cold,
        notes=_notes(args, memory.monitor, (memory.monitor_cpu_process, memory.monitor_cpu_sshd), load),
    )
    text = render(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"Wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
