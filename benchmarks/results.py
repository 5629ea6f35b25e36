"""What one run measured, the headline figures derived from it, and how numbers are written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .cold import ColdResults
from .memory import MemoryResults
from .parts import Components
from .slow_link import SshfsRun, SshResults
from .startup import StartupResults
from .support import median

__all__ = ["Figures", "Report", "mib", "ms", "percent", "phase_median", "sec"]


@dataclass
class Report:
    """Everything one run measured (samples, not medians)."""

    command: str
    started: str
    duration_s: float
    machine: dict[str, str]
    settings: dict[str, str]  # "settings" (the flags, as text), "delay" ("50 ms"), "files"
    startup: StartupResults
    rerun_none: tuple[list[float], list[float]]  # the second call per process; every later call
    rerun_ngrok: tuple[list[float], list[float]]
    components: Components
    rtt_s: float
    ssh: SshResults
    ssh_local: SshResults  # the same commands straight to sshd's port: the local, CPU-bound part
    sshfs: dict[str, list[SshfsRun]]  # "plain", "recommended"
    sshfs_options: tuple[str, ...]
    memory: MemoryResults
    cold: ColdResults
    notes: list[str]

    @property
    def files(self) -> int:
        return int(self.settings["files"])


@dataclass(frozen=True)
class Figures:
    """The medians and ratios the targets are about, all from the same run."""

    ours: float  # warm start to banner
    recipe: float
    floor: float
    recipe_ratio: float  # recipe / ours
    floor_ratio: float  # ours / floor
    rerun: float
    shared_second_rtt: float  # the second `ssh colab true`, in round trips
    sshfs_plain: float
    sshfs_recommended: float
    sshfs_ratio: float  # plain / recommended

    @classmethod
    def of(cls, report: Report) -> Figures:
        startup = report.startup
        ours, recipe, floor = (
            median(startup.ours_banner),
            median(startup.recipe_banner),
            median(startup.floor),
        )
        plain = phase_median(report.sshfs["plain"], "workload")
        recommended = phase_median(report.sshfs["recommended"], "workload")
        return cls(
            ours=ours,
            recipe=recipe,
            floor=floor,
            recipe_ratio=recipe / ours,
            floor_ratio=ours / floor,
            rerun=median(report.rerun_none[0]),
            shared_second_rtt=median(report.ssh.config_second) / report.rtt_s,
            sshfs_plain=plain,
            sshfs_recommended=recommended,
            sshfs_ratio=plain / recommended,
        )


def phase_median(runs: Sequence[SshfsRun], phase: str) -> float:
    """Median seconds of one phase ("list", "read", ..., or "workload") over sshfs runs."""
    return median([float(getattr(run, phase)) for run in runs])


def ms(seconds: float) -> str:
    if seconds >= 0.0095:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds * 1000:.1f} ms" if seconds >= 0.00095 else f"{seconds * 1000:.2f} ms"


def sec(seconds: float) -> str:
    return f"{seconds:.1f} s"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def percent(fraction: float) -> str:
    return f"{100 * fraction:.1f} %" if fraction < 0.1 else f"{100 * fraction:.0f} %"
