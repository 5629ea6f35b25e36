"""Running our own sshd: validate its config, launch it detached, wait for its banner, stop it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

from .errors import ColabSSHError, SshdConfigError, SshdStartError
from .processes import interrupts_held, read_record, record_process, sshd_is_ours, stop_recorded, stop_tree
from .system import open_log, read_file, remove_file, tail, tool_environment, write_file

__all__ = [
    "SshdProcess",
    "answers_banner",
    "ensure_config",
    "port_in_use",
    "require_free_port",
    "sshd_version",
    "stop_stale_sshd",
    "validate_config",
]

_POLL_SECONDS = 0.001  # between banner probes: sshd is up within milliseconds, a probe costs microseconds


def validate_config(sshd: str, config: Path, port: int) -> None:
    """``sshd -t``: the config must parse and the host keys must load."""
    result = subprocess.run(
        [sshd, "-t", "-f", str(config), "-p", str(port)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env=tool_environment(),  # the caller's may be too big to exec
    )
    if result.returncode != 0:
        raise SshdConfigError(
            f"sshd rejected the configuration colab_ssh generated ({config}); the previous one was"
            " restored and nothing was started.",
            sshd_message=(result.stderr or result.stdout).strip(),
        )


def sshd_version(sshd: str) -> tuple[int, int]:
    """(major, minor) of the installed sshd; (0, 0) if it does not say."""
    # `-V` exists from OpenSSH 9.1; older ones print the version with their usage message.
    result = subprocess.run(
        [sshd, "-V"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        env=tool_environment(),
    )
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def port_in_use(port: int) -> bool:
    """Whether some program already listens on ``port`` (sshd would fail to bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - the address sshd itself binds
        except OSError:
            return True
    return False


def answers_banner(port: int, timeout: float = 1.0) -> bool:
    """Whether an SSH server answers on the loopback port with its version banner."""
    # A plain connect to the address, not create_connection(): its getaddrinfo() loads the idna
    # codec on first use (~3 ms of a warm start) to look up a name that is already an address.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(("127.0.0.1", port))
            return connection.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def stop_stale_sshd(pid_file: Path, config: Path) -> bool:
    """Stop an sshd a previous kernel of ours left running (a notebook restart keeps it); True if one ran.

    Only the very process our pid file records (pid, start time, argv), and only if it is an
    sshd with our config: a recycled pid or a file naming another program kills nothing.
    """
    return stop_recorded(pid_file, sshd_is_ours(config))


def ensure_config(config: Path, text: str) -> None:
    """Make ``config`` hold exactly ``text``: read without following a link, rewritten if it differs.

    sshd is only ever started from a config we just wrote or checked byte for byte, so a file
    changed behind our back (by anyone, through any bug) is never what a restarted sshd runs.
    """
    wanted = text.encode()
    if read_file(config) != wanted:
        write_file(config, wanted, mode=0o600)


class SshdProcess:
    """An sshd started by us, in its own session so that interrupting a cell does not kill it."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log_path: Path, pid_file: Path) -> None:
        self.process = process
        self.port = port
        self.log_path = log_path
        self.pid_file = pid_file

    @property
    def pid(self) -> int:
        return self.process.pid

    @classmethod
    def launch(
        cls,
        sshd: str,
        config: Path,
        port: int,
        log_path: Path,
        *,
        pid_file: Path,
        config_text: str,
        timeout: float = 10.0,
    ) -> SshdProcess:
        """Start sshd from ``config`` holding ``config_text``; return once it answers with its banner.

        We write its pid file (processes.py's format), not sshd: the config says ``PidFile none``.
        Its log goes to a descriptor we opened (``-e``, 0600, never through a link), so sshd never
        opens a path of the state folder itself.
        """
        ensure_config(config, config_text)
        log = open_log(log_path)
        # Ctrl-C is held while sshd is started and noted: inside Popen it would leave an sshd
        # running that nobody knows (Popen does not stop a child it started when interrupted).
        with interrupts_held() as interrupted:
            try:
                # Its own session, and a log file instead of our stdout/stderr: a daemon holding
                # the caller's pipes would make anyone reading them wait forever.
                argv = [sshd, "-D", "-e", "-f", str(config), "-p", str(port)]
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                    env=tool_environment(),  # the caller's may be too big to exec; sshd passes on TZ
                )
            finally:
                os.close(log)
            started = cls(process, port, log_path, pid_file)
        try:
            if interrupted:
                raise KeyboardInterrupt
            record_process(pid_file, process.pid, argv)
            started._wait_for_banner(timeout)
        except SshdStartError:
            raise  # it exited, or the wait stopped it
        except BaseException:  # Ctrl-C while it comes up: no sshd is left running
            started.stop()
            raise
        return started

    def _log_tail(self) -> str:
        try:
            data = read_file(self.log_path)
        except (OSError, ColabSSHError):
            data = None
        return "(no log)" if data is None else tail(data.decode(errors="replace"))

    def _wait_for_banner(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._forget_pid_file()
                raise SshdStartError(
                    f"sshd exited with code {self.process.returncode} right after starting on port"
                    f" {self.port}.",
                    log_tail=self._log_tail(),
                )
            if answers_banner(self.port, timeout=0.5):
                return
            time.sleep(_POLL_SECONDS)
        self.stop()
        raise SshdStartError(
            f"sshd did not answer on port {self.port} within {timeout:.0f} s; it was stopped.",
            log_tail=self._log_tail(),
        )

    def alive(self) -> bool:
        return self.process.poll() is None

    def healthy(self) -> bool:
        return self.alive() and answers_banner(self.port)

    def stop(self) -> None:
        """Stop the listener and every session it started (they would outlive it otherwise)."""
        stop_tree(self.process.pid)
        self.process.wait()  # already reaped by stop_tree(): this only records that it ended
        self._forget_pid_file()

    def _forget_pid_file(self) -> None:
        """Remove the pid file if it still names this sshd (never a successor's)."""
        record = read_record(self.pid_file)
        if record is not None and record.pid == self.process.pid:
            remove_file(self.pid_file)


def require_free_port(port: int) -> None:
    if port_in_use(port):
        raise ColabSSHError(
            f"Port {port} is already in use on this machine (often the system's own sshd, on 22)."
            f" Pass another port, e.g. start_ssh(port=2222), or stop the program using it."
        )
