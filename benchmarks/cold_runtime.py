"""A fresh runtime's system, without touching this machine's: openssh-server absent, apt local only.

Run only through ``unshare --mount --propagation private`` (benchmarks/cold.py does): it refuses
to do anything in the machine's own mount namespace. There it lays a copy-on-write overlay
(upper layer on a tmpfs) over /etc, /usr and /var, so that everything below changes only the
overlay, seen by this namespace alone and gone with it:

- ``dpkg --purge openssh-server openssh-sftp-server`` (with a policy-rc.d that keeps the
  maintainer scripts from stopping any service): no sshd, no sftp-server, no host keys, as in a
  new Colab runtime. The machine's /usr/sbin/sshd stays where it is for everyone else;
- apt's sources become the benchmark's local repository only (``deb [trusted=yes] URL ./``),
  and its lists are read anew from there, so an install never reaches the internet.

Then it prints ``READY`` and holds the namespace until its stdin closes; the benchmark runs its
processes inside with ``nsenter --mount=/proc/<pid>/ns/mnt``. Standard library only.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

OVERLAID = ("/etc", "/usr", "/var")
REMOVED = ("openssh-server", "openssh-sftp-server")
_POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
_DPKG_LOCK = "/var/lib/dpkg/lock"
_DPKG_UPDATES = Path("/var/lib/dpkg/updates")
_FLOCK = "hhqqi"  # struct flock: l_type, l_whence, l_start, l_len, l_pid
_QUIET_WAIT = 300.0
_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, env=_ENV, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} failed ({result.returncode}): {(result.stdout + result.stderr)[-2000:]}"
        )


def _require_private_namespace(machines: str) -> None:
    if str(Path("/proc/self/ns/mnt").readlink()) == machines:
        raise SystemExit("cold_runtime.py changes /etc, /usr and /var: run it only under `unshare --mount`.")


def _dpkg_busy() -> bool:
    """Whether a dpkg on the machine holds its database's lock now (asked with F_GETLK, not taken)."""
    fd = os.open(_DPKG_LOCK, os.O_RDWR)
    try:
        asked = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer: bytes = fcntl.fcntl(fd, fcntl.F_GETLK, asked)
        return bool(struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK)
    finally:
        os.close(fd)


def _dpkg_quiet() -> object | None:
    """None while a dpkg works on its database (its lock held, or its journal not empty), else
    what its status file is now: a copy is whole if this is the same before and after."""
    if _dpkg_busy() or any(_DPKG_UPDATES.iterdir()):
        return None
    status = Path("/var/lib/dpkg/status").stat()
    return status.st_ino, status.st_mtime_ns, status.st_size


def _copy(folder: str, copy: Path, quiet: Callable[[], object | None] = lambda: True) -> None:
    """``cp -a folder copy`` at a quiet moment: again if a file vanished under it (another
    account's useradd finishing) or if ``quiet`` says something changed it meanwhile."""
    deadline = time.monotonic() + _QUIET_WAIT
    while True:
        before = quiet()
        copied = (
            before is not None
            and subprocess.run(
                ["cp", "-a", folder, str(copy)], capture_output=True, env=_ENV, check=False
            ).returncode
            == 0
        )
        if copied and quiet() == before:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"no quiet moment to copy {folder} in {_QUIET_WAIT:.0f} s")
        shutil.rmtree(copy, ignore_errors=True)
        time.sleep(0.2)


def _overlay(scratch: Path) -> None:
    _run("mount", "-t", "tmpfs", "-o", "mode=0700", "cold-runtime", str(scratch))
    # /etc is a copy, not an overlay: an overlay shows later changes of the machine's files, and
    # other accounts are added and removed there all the time (a useradd's passwd.lock would
    # show through and make the package's own `adduser sshd` fail).
    _copy("/etc", scratch / "etc")
    # dpkg's database likewise (other engineers' tests install and remove packages meanwhile),
    # copied while no dpkg holds its lock, with no update journal half written.
    _copy("/var/lib/dpkg", scratch / "dpkg", _dpkg_quiet)
    _run("mount", "--bind", str(scratch / "etc"), "/etc")
    for lock in Path("/etc").glob("*.lock"):  # their holders are outside: not ours to wait for
        lock.unlink()
    for folder in OVERLAID[1:]:
        name = folder.strip("/")
        upper, work = scratch / name / "upper", scratch / name / "work"
        upper.mkdir(parents=True)
        work.mkdir()
        _run(
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={folder},upperdir={upper},workdir={work}",
            folder,
        )
    _run("mount", "--bind", str(scratch / "dpkg"), "/var/lib/dpkg")
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    mounted = {line.split()[4]: line.split(" - ")[1].split()[0] for line in lines}  # mount point: type
    expected = {"/etc": "tmpfs", "/var/lib/dpkg": "tmpfs", **dict.fromkeys(OVERLAID[1:], "overlay")}
    if any(mounted.get(folder) != kind for folder, kind in expected.items()):
        raise SystemExit(f"the overlays did not mount: {mounted}")


def _remove_openssh_server() -> None:
    _POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
    _POLICY_RC_D.chmod(0o755)
    try:
        _run("dpkg", "--purge", *REMOVED)
    finally:
        _POLICY_RC_D.unlink()
    if shutil.which("sshd", path=_ENV["PATH"]) is not None:
        raise SystemExit("sshd is still there after dpkg --purge")


def _local_apt(repository: str) -> None:
    sources = Path("/etc/apt/sources.list.d")
    shutil.rmtree(sources)
    sources.mkdir()
    Path("/etc/apt/sources.list").write_text(f"deb [trusted=yes] {repository} ./\n")
    lists = Path("/var/lib/apt/lists")
    for entry in lists.iterdir():
        if entry.is_file():
            entry.unlink()
    _run("apt-get", "update", "-q")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", type=Path, required=True, help="an empty folder for the overlays' tmpfs")
    parser.add_argument("--repository", required=True, help="the local apt repository's URL")
    parser.add_argument("--machine-namespace", required=True, help="readlink /proc/self/ns/mnt outside")
    args = parser.parse_args(argv)
    _require_private_namespace(args.machine_namespace)
    _overlay(args.scratch)
    _remove_openssh_server()
    _local_apt(args.repository)
    print("READY", flush=True)
    sys.stdin.read()  # hold the namespace until the benchmark is done with it
    return 0


if __name__ == "__main__":
    sys.exit(main())
