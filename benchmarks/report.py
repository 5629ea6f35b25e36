"""The results as Markdown: one table of medians, ratios from the same run and verdicts, then
the details behind them (where the start-up time goes, sshfs phase by phase, memory, notes)."""

from __future__ import annotations

from .cold_report import cold_misses, cold_rows, cold_table, cold_timeline
from .results import Figures, Report, mib, ms, phase_median, sec
from .slow_link import SshfsRun, saved_count
from .support import median
from .verdicts import (
    FLOOR_TARGET,
    RECIPE_TARGET,
    RERUN_TARGET,
    SHARED_LOGIN_TARGET,
    SSHFS_TARGET,
    at_least,
    at_most,
    explain_misses,
)

__all__ = ["render"]


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(report: Report) -> list[str]:
    lines = [
        "# colab_ssh benchmarks",
        "",
        f"Measured {report.started} in {report.duration_s / 60:.1f} min with:",
        "",
        "```bash",
        report.command,
        "```",
        "",
        "Everything runs on loopback (127.0.0.1), without internet. Times are medians over the rounds",
        "given; ratios come from the same run. Rounds interleave the contenders, after one warm-up round.",
        "",
        "## Machine",
        "",
        _row("", ""),
        _row("---", "---"),
    ]
    lines += [_row(key, value) for key, value in report.machine.items()]
    lines += [_row("settings", report.settings["settings"]), ""]
    return lines


def _startup_rows(report: Report, figures: Figures) -> list[str]:
    s = report.startup
    ours_returned = median(s.ours_returned)
    ngrok_returned = median(s.ngrok_returned)
    return [
        _row(
            "1",
            "warm start, ours: fresh `python -c \"...start_ssh(tunnel='none')\"` to SSH banner",
            ms(figures.ours),
            f"call returns at {ms(ours_returned)}, process exits at {ms(median(s.ours_exit))}",
            "",
            "",
        ),
        _row(
            "1",
            "seed recipe, `bash seed.sh` (apt-get no-op, chpasswd, 2 config lines, `sshd -D &`) to banner",
            ms(figures.recipe),
            f"recipe / ours = **{figures.recipe_ratio:.2f}x** ({figures.recipe / ours_returned:.2f}x by the"
            " call's return)",
            f">= {RECIPE_TARGET:g}x",
            at_least(figures.recipe_ratio, RECIPE_TARGET),
        ),
        _row(
            "1",
            "floor: `python -c pass` + bare `sshd -D` (1 host key) to banner",
            f"{ms(figures.floor)} ({ms(median(s.floor_python))} + {ms(median(s.floor_sshd))})",
            f"ours / floor = **{figures.floor_ratio:.2f}x** ({ours_returned / figures.floor:.2f}x by the"
            " call's return)",
            f"<= {FLOOR_TARGET:g}x",
            f"met ({figures.floor_ratio:.2f}x)"
            if figures.floor_ratio <= FLOOR_TARGET
            else at_most(figures.floor_ratio, FLOOR_TARGET, "x"),
        ),
        _row(
            "1",
            "... of which `import colab_ssh` (timed inside the process)",
            ms(median(s.ours_import)),
            f"{ms(report.components.import_after_ipython)} with IPython loaded first (a notebook kernel);"
            f" Python's start-up {ms(median(s.floor_python))} (`python -c pass`), the `start_ssh()` call"
            f" {ms(median(s.ours_call))}",
            "",
            "",
        ),
        _row(
            "2",
            "re-run: second `start_ssh(tunnel='none')` on a healthy connection, same process",
            ms(figures.rerun),
            f"later calls {ms(median(report.rerun_none[1]))}",
            f"< {RERUN_TARGET * 1000:g} ms",
            at_most(figures.rerun * 1000, RERUN_TARGET * 1000, " ms"),
        ),
        _row(
            "2",
            "re-run with `tunnel='ngrok'` (stand-in agent)",
            ms(median(report.rerun_ngrok[0])),
            f"later calls {ms(median(report.rerun_ngrok[1]))}",
            "",
            "",
        ),
        _row(
            "3",
            "warm start through the stand-in ngrok agent: `start_ssh(tunnel='ngrok')` returns, tunnel open",
            ms(ngrok_returned),
            f"the agent adds **{ms(ngrok_returned - ours_returned)}** to the call's return;"
            f" sshd's banner at {ms(median(s.ngrok_local_banner))}, the tunnel's at"
            f" {ms(median(s.ngrok_public))}",
            "shown",
            "",
        ),
    ]


def _ssh_rows(report: Report, figures: Figures) -> list[str]:
    ssh, local, rtt = report.ssh, report.ssh_local, report.rtt_s
    rows = [
        _row(
            "4",
            f"slow link: round trip through the relay ({report.settings['delay']} each way)",
            ms(rtt),
            "1 RTT",
            "",
            "",
        )
    ]
    variants = (
        ("printed `ssh -p P user@host true`", ssh.plain_first, ssh.plain_second, local.plain_first,
         local.plain_second, False),
        (f"`ssh colab true` with the printed config block ({ssh.sharing or 'no connection sharing'})",
         ssh.config_first, ssh.config_second, local.config_first, local.config_second, True),
    )  # fmt: skip
    for label, first, second, local_first, local_second, shared in variants:
        for which, times, local_times in (
            ("first", first, local_first),
            ("second in a row", second, local_second),
        ):
            target_row = shared and which != "first"
            wall = median(times)
            rows.append(
                _row(
                    "4a",
                    f"{label}, {which}",
                    ms(wall),
                    f"**{wall / rtt:.1f} RTT**; {(wall - median(local_times)) / rtt:.1f} RTT without the"
                    f" {ms(median(local_times))} it takes on loopback",
                    f"< {SHARED_LOGIN_TARGET:g} RTT" if target_row else "",
                    at_most(figures.shared_second_rtt, SHARED_LOGIN_TARGET, " RTT") if target_row else "",
                )
            )
    rows += [
        _row(
            "4b",
            f"sshfs editing workload ({report.files} files), seed's plain `sshfs -p P user@host:path mnt`",
            sec(figures.sshfs_plain),
            f"{figures.sshfs_plain / rtt:.0f} RTT",
            "",
            "",
        ),
        _row(
            "4b",
            "sshfs editing workload, printed recommended command",
            sec(figures.sshfs_recommended),
            f"plain / recommended = **{figures.sshfs_ratio:.2f}x**",
            f">= {SSHFS_TARGET:g}x",
            at_least(figures.sshfs_ratio, SSHFS_TARGET),
        ),
    ]
    return rows


def _memory_rows(report: Report) -> list[str]:
    memory = report.memory
    bare, notebook = memory.rows["bare Python"], memory.rows["IPython loaded first"]

    def delta(later: str, earlier: str) -> str:
        return f"{mib(bare[later] - bare[earlier])} / {mib(notebook[later] - notebook[earlier])}"

    rows = [
        _row(
            "5",
            "resident memory `import colab_ssh` adds (bare Python / IPython loaded first)",
            delta("import", "before"),
            "",
            "",
            "",
        )
    ]
    if memory.monitor:
        rows += [
            _row(
                "5",
                "... then `start_ssh(tunnel='none', monitor_interval=None)` adds",
                delta("none_without_monitor", "import"),
                "",
                "",
                "",
            ),
            _row(
                "5",
                "... then the monitor thread adds (`start_ssh()` again, default `monitor_interval`)",
                delta("none", "none_without_monitor"),
                f"{memory.threads_none} threads in the process;"
                f" {memory.monitor_cpu_process * 1000:.1f} ms CPU per round",
                "",
                "",
            ),
        ]
    else:
        rows.append(
            _row(
                "5",
                "... then `start_ssh(tunnel='none')` adds",
                delta("none", "import"),
                "no monitor yet",
                "",
                "",
            )
        )
    rows += [
        _row(
            "5",
            "... then `start_ssh(tunnel='ngrok')` adds (pyngrok's log thread)",
            delta("ngrok", "none"),
            f"{memory.threads_ngrok} threads in the process",
            "",
            "",
        ),
        _row(
            "5",
            "beside the notebook: our sshd listener / the stand-in agent",
            f"{mib(bare['sshd'])} / {mib(bare['agent'])}",
            "separate processes",
            "",
            "",
        ),
    ]
    return rows


def _parts_table(report: Report) -> list[str]:
    s, c = report.startup, report.components
    return [
        "## Where the warm start's time goes",
        "",
        _row("part", "median", "how it was measured"),
        _row("---", "---:", "---"),
        _row("Python start-up (`python -c pass`)", ms(median(s.floor_python)), "whole process"),
        _row("`import colab_ssh`", ms(median(s.ours_import)), "inside the timed process"),
        _row(
            "... the same with IPython loaded first, as a notebook kernel has it (logging, json, ... loaded)",
            ms(c.import_after_ipython),
            "alone, new process",
        ),
        _row(
            "... of which pyngrok (imported for every tunnel)"
            if c.pyngrok_on_import
            else "pyngrok, imported only for `tunnel='ngrok'` (not part of the above)",
            ms(c.import_pyngrok),
            "alone, new process",
        ),
        _row("`start_ssh()` call, until it returns", ms(median(s.ours_call)), "inside the timed process"),
        _row("... `chpasswd` (may run beside the next two)", ms(c.chpasswd), "alone"),
        _row("... `sshd -t` (config check)", ms(c.sshd_t), "alone"),
        _row("... `hostname -I` (tunnel='none' looks up the address)", ms(c.hostname_i), "alone"),
        _row("... sshd to banner (floor's minimal config)", ms(median(s.floor_sshd)), "alone"),
        _row("seed recipe: `apt-get install -y openssh-server` (no-op)", ms(c.apt_noop), "alone"),
        "",
    ]


def _freshness(name: str, runs: list[SshfsRun]) -> str:
    first = "current" if all(run.server_edit_first for run in runs) else "stale"
    second = "current" if all(run.server_edit_second for run in runs) else "stale"
    return f"{name} reads it {first} at the next open, {second} at the one after"


def _sshfs_table(report: Report) -> list[str]:
    plain_runs, rec_runs = report.sshfs["plain"], report.sshfs["recommended"]
    rtt, files = report.rtt_s, report.files
    saved = saved_count(files)
    lines = [
        f"## sshfs workload phases (median seconds; RTT = {ms(rtt)})",
        "",
        "Recommended options (from `conn.sshfs_command`): `" + ",".join(report.sshfs_options) + "`",
        "",
        _row("phase", "plain", "recommended", "plain RTT/file", "recommended RTT/file"),
        _row("---", "---:", "---:", "---:", "---:"),
    ]
    for phase, label, count in (
        ("mount", "mount (login, sftp start; not in the workload)", 0),
        ("list", f"list and stat the tree (`os.walk`, {files} files)", files),
        ("read", "read every file", files),
        ("reread", "read every file again", files),
        ("save", f"save {saved} files (write, close)", saved),
        ("workload", "**workload (list + read + read again + save)**", files),
    ):
        plain, rec = phase_median(plain_runs, phase), phase_median(rec_runs, phase)
        per_file = [
            f"{value / rtt / count:.2f}" if count else f"{value / rtt:.0f} RTT" for value in (plain, rec)
        ]
        lines.append(_row(label, sec(plain), sec(rec), *per_file))
    visible = all(run.saves_visible for run in plain_runs + rec_runs)
    lines += [
        "",
        f"Saves visible on the server as soon as `close()` returned: {'yes' if visible else '**no**'}"
        " (checked for every saved file, both variants). A file the client had read, then changed on"
        f" the server (not timed): {_freshness('plain', plain_runs)}; {_freshness('recommended', rec_runs)}.",
        "",
    ]
    return lines


def _memory_table(report: Report) -> list[str]:
    columns = ("before", "import", "none_without_monitor", "none", "ngrok")
    lines = [
        "## Memory (median KiB of VmRSS)",
        "",
        _row(
            "baseline", "before import", "after import", "start_ssh('none'), no monitor", "with it", "'ngrok'"
        ),
        _row("---", *(["---:"] * len(columns))),
    ]
    lines += [_row(name, *(f"{row[key]:.0f}" for key in columns)) for name, row in report.memory.rows.items()]
    return [*lines, ""]


def render(report: Report) -> str:
    figures = Figures.of(report)
    lines = _header(report)
    lines += [
        "## Results",
        "",
        _row("#", "measurement", "median", "ratio, or in round trips", "target", "verdict"),
        _row("---", "---", "---:", "---", "---", "---"),
        *_startup_rows(report, figures),
        *_ssh_rows(report, figures),
        *_memory_rows(report),
        *cold_rows(report.cold),
        "",
        "## Why the missed targets are missed",
        "",
        *(
            explain_misses(report, figures)
            + cold_misses(
                report.cold, median(report.startup.floor_python), median(report.startup.ours_import)
            )
            or ["Every target is met."]
        ),
        "",
    ]
    lines += _parts_table(report) + cold_table(report.cold) + cold_timeline(report.cold)
    lines += _sshfs_table(report) + _memory_table(report)
    lines += ["## Notes", "", *(f"- {note}" for note in report.notes), ""]
    return "\n".join(lines)
