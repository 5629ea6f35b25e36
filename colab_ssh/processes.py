"""Our processes, known by more than a number: the one pid-file format, and the one reader of /proc.

A pid alone names a process only until it exits; a command-line substring matches anyone's
program that mentions our paths. A pid file of ours therefore records three things:

- the pid;
- the process's start time, field 22 of ``/proc/<pid>/stat`` (clock ticks after boot): with the
  pid it names one process for good, since a recycled pid starts later;
- the exact argv we launched.

Before anything is signalled, ``same_process()`` checks all three against the live process, and
the caller's ``ours`` check says whether that argv is one of our programs at all (so a pid file
naming, say, an editor with its real start time and argv still gets nothing killed). The live
command line must end with the arguments we launched; only its program words may differ, since
a launcher script, ``#!/usr/bin/env python3`` or the ngrok launcher's ``exec`` replaces them;
or, for a program that retitles itself as sshd does, that one title must hold the whole argv.

Plain ``/proc`` reads, no psutil: this module needs three fields of two files, psutil is not in
every Python this runs under (the supervisor, a bare VM), and /proc is what psutil reads anyway.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import UnsafePathError
from .safe_files import trusted_dir
from .system import remove_file

__all__ = [
    "ProcessRecord",
    "cloudflared_is_ours",
    "command_line",
    "descendants",
    "holds_open",
    "interrupts_held",
    "ngrok_agent_is_ours",
    "option_value",
    "read_record",
    "record_process",
    "running_record",
    "same_process",
    "session_members",
    "sshd_is_ours",
    "start_time",
    "stop_recorded",
    "stop_tree",
    "supervisor_is_ours",
]

_POLL_SECONDS = 0.005
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on; the name in field 2 may hold spaces and ')'."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def start_time(pid: int) -> int | None:
    """When the process started, in clock ticks after boot; None if it is gone (a zombie counts as gone)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 of stat(5); fields[0] is field 3


def command_line(pid: int) -> tuple[str, ...] | None:
    """The process's argv; None if it is gone (or a kernel thread, which has none)."""
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return tuple(part.decode(errors="surrogateescape") for part in raw[:-1].split(b"\0"))


@dataclass(frozen=True)
class ProcessRecord:
    """One process, for good: what our pid files hold."""

    pid: int
    start_time: int
    argv: tuple[str, ...]

    @classmethod
    def of(cls, pid: int, argv: Sequence[str]) -> ProcessRecord | None:
        """The record of a process we launched with ``argv``; None if it is gone already."""
        started = start_time(pid)
        return None if started is None else cls(pid, started, tuple(argv))

    def to_text(self) -> str:
        return json.dumps({"pid": self.pid, "start_time": self.start_time, "argv": list(self.argv)}) + "\n"

    @classmethod
    def from_text(cls, text: str) -> ProcessRecord | None:
        """The record in ``text``; None for anything else (an older bare pid, a torn or foreign file)."""
        try:
            content = json.loads(text)
            pid, started, argv = content["pid"], content["start_time"], content["argv"]
        except (ValueError, TypeError, KeyError):
            return None
        if not (
            type(pid) is int
            and pid > 0
            and type(started) is int
            and isinstance(argv, list)
            and argv
            and all(isinstance(part, str) for part in argv)
        ):
            return None
        return cls(pid, started, tuple(argv))


def option_value(argv: Sequence[str], option: str) -> str | None:
    """The word after ``option`` in ``argv`` (``-f CONFIG``), or after ``option=`` in one word."""
    for index, word in enumerate(argv):
        if word == option and index + 1 < len(argv):
            return argv[index + 1]
        if word.startswith(option + "="):
            return word[len(option) + 1 :]
    return None


def record_process(pid_file: Path, pid: int, argv: Sequence[str]) -> ProcessRecord | None:
    """Write the pid file for a process we just started with ``argv``; None, and no file, if it exited.

    Through safe_files: 0600, a new file renamed into place, never written through a link.
    """
    record = ProcessRecord.of(pid, argv)
    if record is not None:
        with trusted_dir(pid_file.parent, create_mode=0o755) as folder:
            folder.replace(pid_file.name, record.to_text(), mode=0o600)
    return record


def read_record(pid_file: Path) -> ProcessRecord | None:
    """The record in a pid file; None if there is none, or it is not a record (never read through a link)."""
    try:
        with trusted_dir(pid_file.parent) as folder:
            data = folder.read(pid_file.name)
    except (OSError, UnsafePathError):
        return None  # a missing folder, or a link or another account's file: no record of ours
    return None if data is None else ProcessRecord.from_text(data.decode(errors="surrogateescape"))


def same_process(record: ProcessRecord) -> bool:
    """Whether the recorded process still runs: same pid, same start time, the arguments we launched."""
    if start_time(record.pid) != record.start_time:
        return False
    live = command_line(record.pid)
    if live is None:
        return False
    if len(live) == 1 and " ".join(record.argv) in live[0]:
        # Retitled: sshd's listener shows "sshd: /usr/sbin/sshd -D -f ... [listener] 0 of 100-200
        # startups" as one word (setproctitle() in OpenSSH's openbsd-compat/setproctitle.c).
        return True
    arguments = record.argv[1:]
    return len(live) > len(arguments) and live[len(live) - len(arguments) :] == arguments


def holds_open(pid: int, path: Path) -> bool:
    """Whether the process has ``path`` open (the same file: device and inode, not just its name)."""
    try:
        wanted = path.stat()
        descriptors = list((_PROC / str(pid) / "fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        with contextlib.suppress(OSError):
            st = descriptor.stat()  # follows /proc's magic link to the open file itself
            if (st.st_dev, st.st_ino) == (wanted.st_dev, wanted.st_ino):
                return True
    return False


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] == "Z"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if _is_zombie(pid):
            return True
        time.sleep(_POLL_SECONDS)
    return False


def _process_table() -> list[tuple[int, int, int]]:
    """(pid, parent pid, session id) of every process."""
    table = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            table.append((int(entry.name), int(fields[1]), int(fields[3])))
    return table


def descendants(*roots: int) -> list[int]:
    """Every process below the given ones."""
    children: dict[int, list[int]] = {}
    for pid, parent, _session in _process_table():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    pending = list(roots)
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def session_members(session_id: int) -> list[int]:
    """Processes still in a session, e.g. a dead sshd listener's connection handlers."""
    return [pid for pid, _parent, session in _process_table() if session == session_id and pid != session_id]


def _signal_until_gone(pid: int, started: int | None, timeout: float, sigterms: int) -> None:
    """SIGTERM ``sigterms`` times (sharing ``timeout``), then SIGKILL; reaped if it is our child.

    Every signal goes only to the process that had ``pid`` and ``started`` when it was listed:
    one that got the number since is never touched.
    """
    for number in [signal.SIGTERM] * sigterms + [signal.SIGKILL]:
        if started is None or start_time(pid) != started:
            return
        try:
            os.kill(pid, number)
        except ProcessLookupError:
            return
        if _wait_gone(pid, timeout / sigterms if number == signal.SIGTERM else timeout):
            return


def stop_tree(pid: int, *, timeout: float = 3.0, sigterms: int = 1, children_timeout: float = 1.0) -> None:
    """Stop a process and everything it started: the one way colab_ssh ends a process.

    SIGTERM (``sigterms`` times: cloudflared finishes open connections on the first one and
    only stops at once on the second), then SIGKILL after ``timeout``. Its descendants are
    listed first, since they are reparented (and harder to find) once it is gone; then the
    members of its session (e.g. the connection handlers of a dead sshd listener, accepted
    while we looked) and theirs get the same, with ``children_timeout``. Each process is
    known by its pid and start time, so a recycled pid is never signalled.
    """
    root = (pid, start_time(pid))
    below = [(child, start_time(child)) for child in descendants(pid)]
    _signal_until_gone(*root, timeout, sigterms)
    late = session_members(pid)
    late_below = [(child, start_time(child)) for child in [*late, *descendants(*late)]]
    for child, started in dict.fromkeys([*below, *late_below]):
        _signal_until_gone(child, started, children_timeout, 1)


def stop_recorded(pid_file: Path, ours: Callable[[Sequence[str]], bool]) -> bool:
    """Stop the process a pid file of ours names, and what it started; remove the file. True if one ran.

    Only when the live process is the recorded one (pid, start time, argv) and ``ours`` accepts
    its argv as one of our programs: anything else (a recycled pid, a file naming someone
    else's process, an older bare-pid file) is left alone and only the file goes.
    """
    record = read_record(pid_file)
    stopped = False
    if record is not None and record.pid != os.getpid() and ours(record.argv) and same_process(record):
        stop_tree(record.pid)
        stopped = True
    remove_file(pid_file)
    return stopped


def running_record(pid_file: Path, ours: Callable[[Sequence[str]], bool]) -> ProcessRecord | None:
    """The recorded process if it is still that same process and one of ours; else None."""
    record = read_record(pid_file)
    if record is None or not ours(record.argv) or not same_process(record):
        return None
    return record


# --- which of our programs an argv is: checked before anything is signalled ------------------


def sshd_is_ours(config: Path) -> Callable[[Sequence[str]], bool]:
    """An sshd we run: ``sshd -D -f <our sshd_config> ...``."""
    return lambda argv: "-D" in argv and option_value(argv, "-f") == str(config)


def ngrok_agent_is_ours(config: Path) -> Callable[[Sequence[str]], bool]:
    """The ngrok agent pyngrok starts for us: ``ngrok start ... --config <our ngrok.yml>``."""
    return lambda argv: "start" in argv and option_value(argv, "--config") == str(config)


def cloudflared_is_ours(agent_pid_file: Path) -> Callable[[Sequence[str]], bool]:
    """A quick tunnel as we start them: ``cloudflared tunnel ... --pidfile <ours> --url ssh://localhost:P``."""

    def check(argv: Sequence[str]) -> bool:
        url = option_value(argv, "--url") or ""
        return (
            "tunnel" in argv
            and option_value(argv, "--pidfile") == str(agent_pid_file)
            and (url.startswith("ssh://localhost:"))
        )

    return check


def supervisor_is_ours(state_dir: Path) -> Callable[[Sequence[str]], bool]:
    """``colab-ssh serve`` (or ``start --foreground``) for this state folder, by its command line.

    Run as ``python -m colab_ssh`` or as the ``colab-ssh`` script (``python3 /usr/bin/colab-ssh``).
    A relative --state-dir cannot be compared from here, so it is accepted. (A script that calls
    ``colab_ssh.cli.main(["start", "--foreground"])`` has its own command line: the supervisor
    module knows it by the file it keeps open instead.)
    """

    def check(argv: Sequence[str]) -> bool:
        words = list(argv)
        program = next(
            (
                index
                for index, word in enumerate(words[:3])
                if Path(word).name == "colab-ssh"
                or (word == "colab_ssh" and words[index - 1 : index] == ["-m"])
            ),
            None,
        )
        if program is None or words[program + 1 : program + 2] not in (["serve"], ["start"]):
            return False
        state = option_value(words, "--state-dir")
        return state is None or not Path(state).is_absolute() or Path(state) == state_dir

    return check


@contextlib.contextmanager
def interrupts_held() -> Iterator[list[bool]]:
    """Hold back Ctrl-C for a moment that must not be cut in two: starting a process and noting it
    (a Ctrl-C inside Popen leaves a child nobody knows), stopping and undoing a failed start.
    Yields a list that is non-empty if one came; the caller acts on it afterwards. Main thread
    only: a signal handler can be set there alone, and only there does Python deliver SIGINT."""
    interrupted: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:  # a handler not set from Python: it could not be put back
        yield interrupted
        return
    signal.signal(signal.SIGINT, lambda _signum, _frame: interrupted.append(True))
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
