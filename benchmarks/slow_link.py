"""Working over a slow link: the printed ssh command and config block, and sshfs, through a relay.

sshd sits behind a DelayRelay (a fixed latency each way), and the benchmark runs what
start_ssh() printed for it: ``conn.ssh_command``, ``conn.ssh_config`` (with its connection
sharing) and ``conn.sshfs_command`` (with its caching options), against the seed's plain
commands. Times are also given in round trips of the relay, measured with a TCP ping-pong.

Both ssh variants read one ``-F`` file and nothing else (no ``~/.ssh/config``, no
``/etc/ssh/ssh_config``), holding the same client options: trust the new host key into a
temporary known_hosts, and log in by password (sshpass, the password in ``SSHPASS``), so
they differ only by the printed block.
"""

from __future__ import annotations

import itertools
import os
import random
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from colab_ssh import Connection

from .support import home_of, pids_mentioning, stop_pid

__all__ = [
    "SshResults",
    "SshfsRun",
    "SshfsVariant",
    "make_tree",
    "measure_ssh",
    "measure_sshfs",
    "saved_count",
    "sshfs_variants",
]

CLIENT_OPTIONS = (
    "StrictHostKeyChecking no",
    "PubkeyAuthentication no",  # the printed password is the login; no key offers to refuse
    "LogLevel ERROR",
    "ConnectTimeout 30",
)
FILES_PER_DIR = 10
SAVED_FILES = 20
EDIT = b"# saved through sshfs\n"


def _ssh_env(connection: Connection) -> dict[str, str]:
    return {**os.environ, "SSHPASS": connection.password or ""}


def _timed(argv: list[str], env: dict[str, str], timeout: float = 120) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return elapsed


def _block_with_control_path(connection: Connection, control_dir: Path) -> str:
    """The printed block, with its ControlPath moved from ~/.ssh to a folder the benchmark owns."""
    lines = []
    for line in connection.ssh_config.splitlines():
        if line.strip().startswith("ControlPath "):
            line = f"    ControlPath {control_dir}/colab-%C"
        lines.append(line)
    return "\n".join(lines)


@dataclass
class SshResults:
    """Seconds per round for the first and the second ``ssh ... true`` of each variant."""

    plain_first: list[float] = field(default_factory=list)
    plain_second: list[float] = field(default_factory=list)
    config_first: list[float] = field(default_factory=list)
    config_second: list[float] = field(default_factory=list)
    sharing: str = ""  # the block's connection-sharing lines, as printed


def measure_ssh(connection: Connection, work: Path, repeat: int) -> SshResults:
    """``ssh host true`` twice in a row: the printed command, then ``ssh colab`` with the block."""
    results = SshResults()
    results.sharing = ", ".join(
        line.strip()
        for line in connection.ssh_config.splitlines()
        if line.strip().startswith(("ControlMaster", "ControlPersist"))
    )
    work.mkdir(parents=True, exist_ok=True)
    # A short folder of our own: a socket path must stay under 108 bytes, and %C alone is 40.
    control_dir = Path(tempfile.mkdtemp(prefix="cs-cm."))
    try:
        _measure_ssh(connection, work, control_dir, repeat, results)
    finally:
        # A master that `ssh -O exit` missed names its socket in its process title.
        for pid in pids_mentioning(str(control_dir)):
            stop_pid(pid)
        shutil.rmtree(control_dir, ignore_errors=True)
    return results


def _measure_ssh(
    connection: Connection, work: Path, control_dir: Path, repeat: int, results: SshResults
) -> None:
    """Each round: a fresh known_hosts, plain twice, a fresh known_hosts, shared twice, master ended."""
    known_hosts = work / "known_hosts"
    common = "Host *\n" + "".join(f"    {option}\n" for option in CLIENT_OPTIONS)
    common += f"    UserKnownHostsFile {known_hosts}\n"
    plain_config = work / "ssh_config_plain"
    plain_config.write_text(common)
    block_config = work / "ssh_config_block"
    block_config.write_text(_block_with_control_path(connection, control_dir) + "\n\n" + common)
    printed = shlex.split(connection.ssh_command)  # ["ssh", "-p", PORT, "user@host"]
    plain = ["sshpass", "-e", printed[0], "-F", str(plain_config), *printed[1:], "true"]
    shared = ["sshpass", "-e", "ssh", "-F", str(block_config), "colab", "true"]
    env = _ssh_env(connection)
    for _ in range(repeat):
        known_hosts.unlink(missing_ok=True)
        results.plain_first.append(_timed(plain, env))
        results.plain_second.append(_timed(plain, env))
        known_hosts.unlink(missing_ok=True)
        try:
            results.config_first.append(_timed(shared, env))
            results.config_second.append(_timed(shared, env))
        finally:
            # The ControlPersist master outlives both commands: end it.
            subprocess.run(
                ["ssh", "-F", str(block_config), "-O", "exit", "colab"],
                capture_output=True,
                timeout=30,
                check=False,
            )


def make_tree(root: Path, files: int, user: str, seed: int = 6) -> list[Path]:
    """``files`` small source-like files (1-4 KB), ``FILES_PER_DIR`` per folder, owned by ``user``."""
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    made = []
    for index in range(files):
        folder = root / f"pkg{index // FILES_PER_DIR:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"module{index % FILES_PER_DIR}.py"
        size = rng.randint(1024, 4096)
        line = f"value_{index} = {index}  # generated for the sshfs benchmark\n".encode()
        path.write_bytes((line * (size // len(line) + 1))[:size])
        made.append(path)
    shutil.chown(root, user, user)
    for path in root.rglob("*"):
        shutil.chown(path, user, user)
    return made


@dataclass(frozen=True)
class SshfsVariant:
    name: str
    options: tuple[str, ...]  # the -o options, without the benchmark's own (password, host key)


def sshfs_variants(connection: Connection) -> list[SshfsVariant]:
    """The seed's plain ``sshfs -p P user@host:path mnt`` and the printed command's options."""
    command = connection.sshfs_command.split("&&")[-1]
    words = shlex.split(command)
    options: list[str] = []
    for flag, value in itertools.pairwise(words):
        if flag == "-o":
            options.extend(value.split(","))
    return [SshfsVariant("plain", ()), SshfsVariant("recommended", tuple(options))]


@dataclass
class SshfsRun:
    """Seconds of each phase of one workload run, and whether saves reached the server at once."""

    mount: float
    list: float
    read: float
    reread: float
    save: float
    saves_visible: bool
    server_edit_first: bool  # a file changed on the server: current at the next open?
    server_edit_second: bool  # ... and at the one after?

    @property
    def workload(self) -> float:
        return self.list + self.read + self.reread + self.save


def _workload(mount_point: Path, tree: Path) -> tuple[float, float, float, float, bool, bool, bool]:
    """Like an editor opening a project: list and stat it, read it, read it again, save some files."""
    started = time.perf_counter()
    files = []
    for folder, _dirs, names in os.walk(mount_point):
        for name in sorted(names):
            path = Path(folder) / name
            path.stat()
            files.append(path)
    listed = time.perf_counter()
    contents = {path: path.read_bytes() for path in files}
    read = time.perf_counter()
    for path in files:
        path.read_bytes()
    reread = time.perf_counter()
    count = saved_count(len(files))
    saved = files[:: max(1, len(files) // count)][:count]
    visible = True
    for path in saved:
        new = contents[path] + EDIT
        path.write_bytes(new)
        # An editor's save must reach the server when write() returns and the file is closed.
        visible = visible and (tree / path.relative_to(mount_point)).read_bytes() == new
    done = time.perf_counter()
    # Not timed: a file the client read, then changed on the server (a notebook, a formatter, git)
    # a few seconds later, as its mtime says; is it current when the client opens it again?
    target = next((path for path in files if path not in saved), files[0])
    server_copy = tree / target.relative_to(mount_point)
    server_copy.write_bytes(server_copy.read_bytes() + b"# changed on the server\n")
    stat = server_copy.stat()
    os.utime(server_copy, (stat.st_atime, stat.st_mtime + 2))
    first = target.read_bytes() == server_copy.read_bytes()
    second = target.read_bytes() == server_copy.read_bytes()
    return listed - started, read - listed, reread - read, done - reread, visible, first, second


def saved_count(files: int) -> int:
    """How many files the workload saves: 20, and always one fewer than the tree holds."""
    return max(1, min(SAVED_FILES, files - 1))


def _unmount(mount_point: Path) -> None:
    for attempt in (["fusermount3", "-u"], ["fusermount3", "-u", "-z"]):
        if subprocess.run([*attempt, str(mount_point)], capture_output=True, check=False).returncode == 0:
            return


def measure_sshfs(
    connection: Connection, work: Path, files: int, repeat: int, progress: Callable[[str], None] | None = None
) -> dict[str, list[SshfsRun]]:
    """The workload ``repeat`` times per variant, variants alternating, each on a fresh tree and mount."""
    tree = home_of(connection.user) / "sshfs-bench"
    mount_point = work / "mnt"
    mount_point.mkdir(exist_ok=True)
    known_hosts = work / "sshfs_known_hosts"
    results: dict[str, list[SshfsRun]] = {}
    for _ in range(repeat):
        for variant in sshfs_variants(connection):
            make_tree(tree, files, connection.user)
            known_hosts.unlink(missing_ok=True)
            ours = ["password_stdin", "StrictHostKeyChecking=no", f"UserKnownHostsFile={known_hosts}"]
            argv = [
                "sshfs",
                "-p",
                str(connection.port),
                "-o",
                ",".join([*variant.options, *ours]),
                f"{connection.user}@{connection.host}:{tree}",
                str(mount_point),
            ]
            started = time.perf_counter()
            mounted = subprocess.run(
                argv, input=(connection.password or "") + "\n", capture_output=True, text=True, timeout=120
            )
            mount_s = time.perf_counter() - started
            if mounted.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed: {mounted.stderr.strip()}")
            try:
                phases = _workload(mount_point, tree)
            finally:
                _unmount(mount_point)
            run = SshfsRun(mount_s, *phases)
            results.setdefault(variant.name, []).append(run)
            if progress is not None:
                progress(f"  sshfs {variant.name}: workload {run.workload:.1f} s")
    shutil.rmtree(tree, ignore_errors=True)
    return results
