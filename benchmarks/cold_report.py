"""The cold start in the results: its rows, its targets and verdicts, the steps alone, and why a miss."""

from __future__ import annotations

from dataclasses import dataclass

from .cold import ColdResults
from .results import percent
from .support import median

__all__ = ["COLD_MARGIN", "ColdFigures", "cold_misses", "cold_rows", "cold_table", "cold_timeline"]

COLD_MARGIN = 0.10  # the targets allow their bound plus 10 %

_STEP_LABELS = {
    "install": "package install: `apt-get install openssh-server` (+ openssh-sftp-server)",
    "download": "agent download: pyngrok's installer fetches and unpacks the agent",
    "drive": "Drive mount: the user's consent (the stand-in's fixed delay)",
    "agent": "agent start-up: `NgrokTunnel.open()` with the agent on disk (its start, cloud login, endpoint)",
    "warm": "warm start: spawn to `start_ssh(tunnel='none')` returning (row 1)",
}


@dataclass(frozen=True)
class ColdFigures:
    """Medians (seconds) the cold targets are about, all from the same run."""

    drive: float  # concurrent, with Drive: spawn to a working login
    drive_today: float  # today's sequential order
    no_drive: float
    no_drive_today: float
    steps: dict[str, float]  # each step alone
    login: float  # after start_ssh() returned, until the login worked (median over all runs)

    @classmethod
    def of(cls, cold: ColdResults) -> ColdFigures:
        after = [
            login - returned
            for key in cold.login
            for login, returned in zip(cold.login[key], cold.returned[key], strict=True)
        ]
        return cls(
            drive=cold.median_login("drive", "concurrent"),
            drive_today=cold.median_login("drive", "sequential"),
            no_drive=cold.median_login("no drive", "concurrent"),
            no_drive_today=cold.median_login("no drive", "sequential"),
            steps={step: cold.median_step(step) for step in cold.steps},
            login=median(after),
        )

    @property
    def longest(self) -> tuple[str, float]:
        step = max(self.steps, key=lambda name: self.steps[name])
        return step, self.steps[step]

    @property
    def drive_bound(self) -> float:
        return self.longest[1]

    @property
    def no_drive_bound(self) -> float:
        return self.steps["install"] + self.steps["agent"]

    def total(self, *, drive: bool) -> float:
        return sum(seconds for step, seconds in self.steps.items() if drive or step != "drive")


def _within(value: float, bound: float) -> str:
    allowed = bound * (1 + COLD_MARGIN)
    if value <= allowed:
        return f"met ({sec2(value)} for <= {sec2(allowed)})"
    return f"**missed** by {percent(value / allowed - 1)} ({sec2(value)} for <= {sec2(allowed)})"


def sec2(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def cold_rows(cold: ColdResults) -> list[str]:
    f = ColdFigures.of(cold)
    s = cold.settings
    name, longest = f.longest
    seam = "" if cold.seam else " (colab_ssh has no seam yet: this is the same code as above)"
    returned = {key: median(values) for key, values in cold.returned.items()}
    return [
        _row(
            "6",
            f"cold start with Drive (consent {s.consent_s:g} s), concurrent steps: a fresh runtime's first"
            " `start_ssh(mount_drive=True)`, spawn to a working login through the tunnel",
            sec2(f.drive),
            f"today's order / this = **{f.drive_today / f.drive:.2f}x**; {f.drive / longest:.2f}x the"
            f" longest step alone ({name}, {sec2(longest)}); the call returns at"
            f" {sec2(returned.get('drive/concurrent', float('nan')))}",
            f"<= longest step + {COLD_MARGIN:.0%}",
            _within(f.drive, f.drive_bound),
        ),
        _row(
            "6",
            f"cold start with Drive, today's sequential order{seam}",
            sec2(f.drive_today),
            f"the steps alone add up to {sec2(f.total(drive=True))}",
            "",
            "",
        ),
        _row(
            "6",
            "cold start without Drive, concurrent steps: spawn to a working login through the tunnel",
            sec2(f.no_drive),
            f"today's order / this = **{f.no_drive_today / f.no_drive:.2f}x**;"
            f" {f.no_drive / f.no_drive_bound:.2f}x the package install + the agent's start-up"
            f" ({sec2(f.no_drive_bound)}); the call returns at"
            f" {sec2(returned.get('no drive/concurrent', float('nan')))}",
            f"<= install + agent start-up + {COLD_MARGIN:.0%}",
            _within(f.no_drive, f.no_drive_bound),
        ),
        _row(
            "6",
            f"cold start without Drive, today's sequential order{seam}",
            sec2(f.no_drive_today),
            f"the steps alone add up to {sec2(f.total(drive=False))}",
            "",
            "",
        ),
    ]


def cold_table(cold: ColdResults) -> list[str]:
    f = ColdFigures.of(cold)
    s = cold.settings
    lines = [
        "## Cold start: the steps alone (median seconds)",
        "",
        f"A fresh runtime: no openssh-server ({cold.package_kb} kB of .debs from the local repository),"
        f" no agent ({s.agent_mb:g} MB), downloads at {s.mbit:g} Mbit/s with a {s.rtt_ms:g} ms round"
        f" trip, the agent's cloud login {s.session_s:g} s, Drive's consent {s.consent_s:g} s;"
        f" {s.repeat} rounds.",
        "",
        _row("step", "median", "how it was measured"),
        _row("---", "---:", "---"),
    ]
    how = "alone, in a process of its own, timed inside"
    for step, label in _STEP_LABELS.items():
        if step in f.steps:
            lines.append(_row(label, sec2(f.steps[step]), "row 1" if step == "warm" else how))
    lines += [
        _row("sum, with Drive / without", f"{sec2(f.total(drive=True))} / {sec2(f.total(drive=False))}", ""),
        _row(
            "the login after the call returned (ssh through the tunnel)", sec2(f.login), "in the runs above"
        ),
        "",
    ]
    return lines


RETURNED = "start_ssh() returns"
_COLUMNS = (
    ("drive/concurrent", "with Drive, concurrent"),
    ("drive/sequential", "with Drive, today's order"),
    ("no drive/concurrent", "without Drive, concurrent"),
    ("no drive/sequential", "without Drive, today's order"),
)


def _spans(cold: ColdResults, key: str) -> dict[str, tuple[float, float]]:
    """Median start and end of each step in the runs of ``key`` ("drive/concurrent", ...)."""
    return {
        label: (median([start for start, _ in pairs]), median([end for _, end in pairs]))
        for label, pairs in cold.timeline.get(key, {}).items()
    }


def cold_timeline(cold: ColdResults) -> list[str]:
    """When each step ran, in each scenario and order: the overlap, or its absence, made visible."""
    spans = {key: _spans(cold, key) for key, _ in _COLUMNS}
    labels = sorted(
        {label for steps in spans.values() for label in steps} - {RETURNED},
        key=lambda label: spans["drive/concurrent"].get(label, (99.0, 99.0)),
    )
    labels.append(RETURNED)
    lines = [
        "## Cold start: when each step ran (median seconds after the timed script began)",
        "",
        "Python's start-up comes before 0; `import colab_ssh` is the time before the first step.",
        "",
        _row("step", *(title for _, title in _COLUMNS)),
        _row("---", *(["---"] * len(_COLUMNS))),
    ]
    for label in labels:
        cells = []
        for key, _ in _COLUMNS:
            span = spans[key].get(label)
            if span is None:
                cells.append("")
            elif label == RETURNED:
                cells.append(f"at {span[1]:.2f}")
            else:
                cells.append(f"{span[0]:.2f} to {span[1]:.2f}")
        lines.append(_row(label, *cells))
    return [*lines, ""]


def _waited_for(spans: dict[str, tuple[float, float]]) -> str:
    """The chain that made the run as long as it was: the last step to end, and what it began after."""
    steps = {label: span for label, span in spans.items() if label != RETURNED}
    if not steps:
        return ""
    last = max(steps, key=lambda label: steps[label][1])
    start, end = steps[last]
    before = [label for label in steps if label != last and steps[label][1] <= start + 0.005]
    text = f" The last step to end was {last} (from +{start:.2f} s to +{end:.2f} s)"
    if before:
        previous = max(before, key=lambda label: steps[label][1])
        text += f"; it began only when {previous} had ended (+{steps[previous][1]:.2f} s)"
    return text + "."


def cold_misses(cold: ColdResults, python_s: float, import_s: float) -> list[str]:
    """A bullet per missed cold target: what the time beyond the bound is made of."""
    f = ColdFigures.of(cold)
    lines = []
    name = f.longest[0]
    for key, label, value, bound, what in (
        ("drive/concurrent", "with Drive", f.drive, f.drive_bound, f"the longest step ({name})"),
        (
            "no drive/concurrent",
            "without Drive",
            f.no_drive,
            f.no_drive_bound,
            f"the install + the agent's start-up ({sec2(f.steps['install'])} + {sec2(f.steps['agent'])})",
        ),
    ):
        allowed = bound * (1 + COLD_MARGIN)
        if value <= allowed:
            continue
        spans = _spans(cold, key)
        returned = spans.get(RETURNED, (0.0, float("nan")))[1]
        lines.append(
            f"- **Cold start {label} {sec2(value)}, not within {sec2(allowed)}**: {what} takes"
            f" {sec2(bound)} alone. Before any step: Python's start-up and `import colab_ssh`"
            f" ({sec2(python_s)} + {sec2(import_s)}, row 1).{_waited_for(spans)} `start_ssh()`"
            f" returned at +{returned:.2f} s; the login through the tunnel then took {sec2(f.login)}"
            " (timeline table below; the steps shared two cores, which alone they did not)."
        )
    return lines
