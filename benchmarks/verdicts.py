"""The issue's targets, whether a run met them, and, for a missed one, by how much and why.

The "why" is written from the parts measured in the same run (each program start_ssh() runs,
the import, the round trips per file), so it stays true when the numbers move.
"""

from __future__ import annotations

from collections.abc import Sequence

from .results import Figures, Report, ms, percent, phase_median, sec
from .slow_link import SshfsRun
from .support import median

__all__ = [
    "FLOOR_TARGET",
    "RECIPE_TARGET",
    "RERUN_TARGET",
    "SHARED_LOGIN_TARGET",
    "SSHFS_TARGET",
    "at_least",
    "at_most",
    "explain_misses",
]

RECIPE_TARGET = 6.0  # ours at least 6x faster than the recipe
FLOOR_TARGET = 2.0  # ours within 2x of the floor
RERUN_TARGET = 0.020  # seconds
SHARED_LOGIN_TARGET = 2.0  # round trips
SSHFS_TARGET = 2.0  # the recommended sshfs command at least 2x faster than the plain one


def at_least(value: float, target: float) -> str:
    """Verdict for "value must be at least target" (ratios)."""
    if value >= target:
        return f"met ({value:.2f}x)"
    return f"**missed** by {percent(1 - value / target)} ({value:.2f}x of {target:g}x)"


def at_most(value: float, target: float, unit: str) -> str:
    """Verdict for "value must be under target"."""
    if value < target:
        return f"met ({value:.2f}{unit})"
    return f"**missed** by {percent(value / target - 1)} ({value:.2f}{unit} for < {target:g}{unit})"


def _startup_breakdown(report: Report) -> tuple[str, float, float]:
    """Where ours spends its time, and the two parts the floor does not have."""
    s, c = report.startup, report.components
    python_s, import_s, call_s = median(s.floor_python), median(s.ours_import), median(s.ours_call)
    programs = c.chpasswd + c.sshd_t + c.hostname_i
    pyngrok = (
        f" (pyngrok alone {ms(c.import_pyngrok)}, imported even for `tunnel='none'`)"
        if c.pyngrok_on_import
        else " (pyngrok is not imported for `tunnel='none'`)"
    )
    text = (
        f"Ours is Python start-up {ms(python_s)} + `import colab_ssh` {ms(import_s)}{pyngrok} + the"
        f" `start_ssh()` call {ms(call_s)} (until it returns). The call runs `chpasswd`"
        f" ({ms(c.chpasswd)} alone), `sshd -t` ({ms(c.sshd_t)} alone) and `hostname -I`"
        f" ({ms(c.hostname_i)} alone), some of them side by side, and starts sshd (about"
        f" {ms(median(s.floor_sshd))} to its banner with one host key)"
    )
    return text, import_s, programs


def _sshfs_why(report: Report, figures: Figures) -> str:
    plain_runs, rec_runs = report.sshfs["plain"], report.sshfs["recommended"]
    rtt, files = report.rtt_s, report.files

    def per_file(runs: Sequence[SshfsRun], phase: str) -> float:
        return phase_median(runs, phase) / rtt / files

    # Perfect caching: the listing and the saves as measured, 2 RTT per first read, 1 per re-read.
    best = phase_median(rec_runs, "list") + phase_median(rec_runs, "save") + 3 * files * rtt
    gap = (
        "reaches"
        if figures.sshfs_recommended <= best
        else f"is {percent(figures.sshfs_recommended / best - 1)} slower than"
    )
    return (
        f"- **sshfs {figures.sshfs_ratio:.2f}x, not {SSHFS_TARGET:g}x**: sshfs sends an SFTP OPEN (one"
        " round trip; the attribute check rides along) for every `open()`, and no mount option"
        " caches opens or file handles. So with any options the first read of a file costs two"
        f" round trips (OPEN, then READ; measured {per_file(rec_runs, 'read'):.2f} RTT/file, plain"
        f" {per_file(plain_runs, 'read'):.2f}) and a re-read from the cache still one (measured"
        f" {per_file(rec_runs, 'reread'):.2f}, plain {per_file(plain_runs, 'reread'):.2f}). The"
        " options remove the lookups and the second READ, not the opens: even perfect caching"
        " (2 + 1 round trips per file, the listing and the saves as measured) would take"
        f" {sec(best)}, {figures.sshfs_plain / best:.2f}x faster than plain, below"
        f" {SSHFS_TARGET:g}x for this workload at this latency; the recommended command {gap} that"
        " bound."
    )


def explain_misses(report: Report, figures: Figures) -> list[str]:
    """One Markdown bullet per missed target."""
    lines: list[str] = []
    c, rtt = report.components, report.rtt_s
    breakdown, import_s, programs = _startup_breakdown(report)
    if figures.recipe_ratio < RECIPE_TARGET:
        needed = figures.recipe / RECIPE_TARGET
        without_pyngrok = max(figures.ours - c.import_pyngrok, 1e-9)
        hint = (
            f" Not importing pyngrok for `tunnel='none'` alone would bring ours to about"
            f" {ms(without_pyngrok)} ({figures.recipe / without_pyngrok:.1f}x)."
            if c.pyngrok_on_import
            else ""
        )
        lines.append(
            f"- **Recipe / ours {figures.recipe_ratio:.2f}x, not {RECIPE_TARGET:g}x**: the recipe takes"
            f" {ms(figures.recipe)}, of which apt-get's no-op is {ms(c.apt_noop)}; {RECIPE_TARGET:g}x"
            f" needs ours at {ms(needed)} or less, {ms(figures.ours - needed)} less than now."
            f" {breakdown}.{hint}"
        )
    if figures.floor_ratio > FLOOR_TARGET:
        allowed = FLOOR_TARGET * figures.floor
        lines.append(
            f"- **Ours / floor {figures.floor_ratio:.2f}x, not {FLOOR_TARGET:g}x**: the floor is"
            f" {ms(figures.floor)}; {FLOOR_TARGET:g}x allows {ms(allowed)}, ours is {ms(figures.ours)}"
            f" ({ms(figures.ours - allowed)} over). {breakdown}. The floor has neither the import"
            f" ({ms(import_s)}) nor the three programs ({ms(programs)} one after the other). In a"
            " notebook kernel, which has IPython (and with it logging, json, html, ...) loaded before"
            f" any cell runs, the import takes {ms(c.import_after_ipython)}."
        )
    if figures.rerun >= RERUN_TARGET:
        lines.append(
            f"- **Re-run {ms(figures.rerun)}, not under {RERUN_TARGET * 1000:g} ms**: a re-run checks"
            " that sshd and the tunnel are still alive before it returns the same connection; the"
            " later calls in the table show whether the first check paid a one-time cost."
        )
    if figures.shared_second_rtt >= SHARED_LOGIN_TARGET:
        lines.append(
            f"- **Second `ssh colab true` {figures.shared_second_rtt:.2f} RTT, not under"
            f" {SHARED_LOGIN_TARGET:g}**: on a shared connection no handshake or login is left, but a"
            " new session still needs two round trips by the protocol: the channel open must be"
            " confirmed before the exec request can name the channel, and the command's exit status"
            " comes back with the request's answer. The rest is local: the same command takes"
            f" {ms(median(report.ssh_local.config_second))} on loopback without any delay (starting"
            " sshpass and ssh, the multiplexing socket, the remote command). Without sharing, the"
            f" printed command costs {median(report.ssh.plain_second) / rtt:.1f} RTT every time."
        )
    if figures.sshfs_ratio < SSHFS_TARGET:
        lines.append(_sshfs_why(report, figures))
    return lines
