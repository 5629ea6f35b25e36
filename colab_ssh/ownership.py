"""One start or stop at a time per state folder, and one owner of the session that runs from it.

Two start_ssh() calls on one folder (two notebooks, or the CLI and a notebook) used to kill each
other's sshd and change the password under each other. Two things prevent that now:

- ``state_lock()``: an ``flock`` on ``state.lock`` in the folder, held for a whole start, stop or
  monitor repair. A second caller waits up to ``LOCK_WAIT`` seconds, then fails naming the holder.
  The kernel drops the lock when its holder dies, so a killed process never leaves it stuck.
- ``owner.pid``: the process whose session runs from the folder (processes.py's record). A start
  from another process fails with ``StateDirBusyError`` naming it while it lives; once it is gone
  (a restarted kernel, a killed supervisor) the next start takes over what it left.
  ``stop_ssh()`` from anywhere ends the session and removes the record; the owner's monitor
  then sees the session is no longer its own and stops instead of fighting for the port.

The owner record is only ever read to refuse or to name someone: nothing signals the process it
names (a kernel must never be killed by us).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ColabSSHError, StateDirBusyError, UnsafePathError
from .paths import Paths
from .processes import ProcessRecord, command_line, read_record, same_process
from .safe_files import trusted_dir

__all__ = [
    "LOCK_WAIT",
    "Claim",
    "claim",
    "describe",
    "open_lock_file",
    "owned_by_us",
    "release",
    "require_no_other_owner",
    "state_lock",
]

LOCK_WAIT = 30.0  # a start takes about a second warm; a first one that installs sshd can take longer
_POLL = 0.05


def describe(argv: Sequence[str]) -> str:
    """What kind of process an argv is, for messages: a notebook kernel, the supervisor, ..."""
    words = list(argv)
    if any("ipykernel" in word or "colab_kernel_launcher" in word for word in words):
        return "a notebook kernel"
    ours = "colab_ssh" in words or any(Path(word).name == "colab-ssh" for word in words[:2])
    if ours and "serve" in words:
        return "the colab-ssh supervisor"
    if ours and "--foreground" in words:
        return "`colab-ssh start --foreground`"
    return f"a process running {' '.join(words)[:120]!r}"


def _me() -> ProcessRecord | None:
    return ProcessRecord.of(os.getpid(), command_line(os.getpid()) or ("?",))


def _holder_text(record: ProcessRecord | None) -> str:
    if record is None or not same_process(record):
        return "another process"
    return f"pid {record.pid}, {describe(record.argv)}"


def open_lock_file(path: Path) -> int:
    """A descriptor of the lock file ``path`` (created 0600), in a folder root owns and others cannot write.

    Never through a link, and only a plain file of root's with one name: its holder writes its
    record into it, which must not land in a FIFO, a device or another name of some file.
    """
    with trusted_dir(path.parent, create_mode=0o755) as folder:
        try:
            fd = folder.open_private(path.name, os.O_RDWR)
        except UnsafePathError:
            raise
        except OSError as error:
            raise ColabSSHError(
                f"Cannot open the lock file {path}: {error.strerror}. The state folder must be on a"
                " disk root can write to (not read-only, not full); pass state_dir= another folder."
            ) from None
    return fd


@contextlib.contextmanager
def state_lock(paths: Paths, *, timeout: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the folder's lock; StateDirBusyError if someone else holds it for ``timeout`` seconds.

    A folder it had to create is removed again if what ran under the lock failed and left
    nothing else there: a start refused at once leaves the machine as it was.
    """
    created = not paths.state_dir.is_dir()
    fd = open_lock_file(paths.lock_file)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = ProcessRecord.from_text(os.pread(fd, 4096, 0).decode(errors="replace"))
                    raise StateDirBusyError(
                        f"Another start or stop in {paths.state_dir} is still under way"
                        f" ({_holder_text(holder)}) after {timeout:.0f} s. Wait for it to finish"
                        " and try again, or use another state_dir= (and port=).",
                        owner_pid=holder.pid if holder is not None else 0,
                        owner=describe(holder.argv) if holder is not None else "unknown",
                    ) from None
                time.sleep(_POLL)
        me = _me()
        if me is not None:  # who holds it, for the message a waiter gives up with
            os.ftruncate(fd, 0)
            os.pwrite(fd, me.to_text().encode(errors="surrogateescape"), 0)
        yield
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                paths.lock_file.unlink()
                paths.state_dir.rmdir()  # only if empty
        raise
    finally:
        os.close(fd)  # releases the lock


def _live_owner(paths: Paths) -> ProcessRecord | None:
    record = read_record(paths.owner_pid)
    return record if record is not None and same_process(record) else None


def owned_by_us(paths: Paths) -> bool:
    """Whether this process owns the session of the folder (call it under state_lock())."""
    owner = _live_owner(paths)
    return owner is not None and owner.pid == os.getpid()


def require_no_other_owner(paths: Paths) -> None:
    """StateDirBusyError if another live process owns the folder's session (call it under state_lock())."""
    owner = _live_owner(paths)
    if owner is None or owner.pid == os.getpid():
        return
    kind = describe(owner.argv)
    if kind == "the colab-ssh supervisor":
        fix = "Run `colab-ssh stop` (or stop_ssh() here) first"
    elif kind == "a notebook kernel":
        fix = "Run stop_ssh() in that notebook first (or stop_ssh(state_dir=...) here)"
    else:
        fix = "Stop it first with stop_ssh(state_dir=...) or `colab-ssh stop`"
    raise StateDirBusyError(
        f"SSH already runs from {paths.state_dir}, started by pid {owner.pid} ({kind}); a second"
        f" start would take its port and change its password. {fix}, or pass another state_dir="
        " and port= to run a second server.",
        owner_pid=owner.pid,
        owner=kind,
    )


@dataclass(frozen=True)
class Claim:
    """The owner.pid that claim() wrote, as lstat() saw it: device, inode and change time.

    While lstat() still gives the same three, nobody has released the folder (stop_ssh() removes
    the file) or claimed it (that writes a new file: another inode, or a reused inode number with
    a later change time, which the kernel sets on every write, rename and chmod). One lstat(), so
    a re-run can tell without the folder's lock that its session is still the folder's.
    """

    owner_pid: Path
    device: int
    inode: int
    changed_ns: int

    def unchanged(self) -> bool:
        try:
            now = os.lstat(self.owner_pid)
        except OSError:
            return False
        return (now.st_dev, now.st_ino, now.st_ctime_ns) == (self.device, self.inode, self.changed_ns)


def claim(paths: Paths) -> Claim | None:
    """Record this process as the folder's owner (under state_lock(), once its session is up)."""
    me = _me()
    if me is None:
        return None
    with trusted_dir(paths.state_dir) as folder:
        folder.replace(paths.owner_pid.name, me.to_text(), mode=0o600)
        written = os.stat(paths.owner_pid.name, dir_fd=folder.fd, follow_symlinks=False)
    return Claim(paths.owner_pid, written.st_dev, written.st_ino, written.st_ctime_ns)


def release(paths: Paths) -> None:
    """Forget the owner, whoever it is: stop_ssh() stops the session from any process."""
    paths.owner_pid.unlink(missing_ok=True)
