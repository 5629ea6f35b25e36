"""Watching one start of cloudflared through its log, and probing the address it got.

cloudflared has no local API: its address appears only in its log, boxed, and whether its edge
connection is registered only in the lines after it. This module reads those lines (from the file
cloudflared appends to, never a pipe), turns them into a state (address, registered or down since
when), and into the error a user can act on when the start fails.
"""

from __future__ import annotations

import os
import re
import selectors
import subprocess
import time
from pathlib import Path
from typing import IO, cast

from ..errors import CloudflaredStartError
from ..system import tail

__all__ = [
    "ADDRESS",
    "CloudflaredStartError",
    "EdgeUnreachable",
    "Link",
    "LogFollower",
    "StartWatch",
    "probe",
]

# The boxed address. api.trycloudflare.com is where cloudflared asks for a tunnel and appears
# in its error lines ("failed to request quick Tunnel: Post https://api.trycloudflare.com/...").
ADDRESS = re.compile(r"https://((?!api\.)[a-z0-9]+(?:-[a-z0-9]+)*\.trycloudflare\.com)(?![a-z0-9.-])")
# connection/observer.go:58-67 (INF). "Unregistered tunnel connection" (control.go:145) must not match.
_REGISTERED = re.compile(r"(?<![A-Za-z])Registered tunnel connection")
# Lines that mean the edge connection is down and being retried (supervisor/tunnel.go:264, 412,
# 487, 610; supervisor.go:158; http2.go:94; control.go:145).
_DOWN = re.compile(
    r"Retrying connection in up to|Register tunnel error from server side|Serve tunnel error"
    r"|Connection terminated|Unable to establish connection with Cloudflare edge"
    r"|Failed to dial a quic connection|Lost connection with the edge|Unregistered tunnel connection"
)

_RATE_LIMITED = ("429 Too Many Requests", "error code: 1015")
_NO_API = "failed to request quick Tunnel"
_POLL_SECONDS = 0.02
_PROBE_SECONDS = 5.0  # one reachability probe: time for the banner through the tunnel


class LogFollower:
    """Reads the lines cloudflared appends to its log, from where this start began."""

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.offset = offset
        self.lines: list[str] = []
        self._partial = b""

    def read_new(self) -> list[str]:
        """The complete lines written since the last call."""
        try:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
        except OSError:
            return []
        self.offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        new = [line.decode(errors="replace").rstrip("\r") for line in complete]
        self.lines += new
        return new

    def tail(self) -> str:
        self.read_new()
        pending = [self._partial.decode(errors="replace")] if self._partial else []
        return tail("\n".join(self.lines + pending)) or "(cloudflared wrote nothing)"


class Link:
    """Whether the edge connection is registered, from cloudflared's log lines."""

    def __init__(self) -> None:
        self.registered = False
        self.down_since: float | None = None  # when a registered connection went down

    def note(self, line: str, now: float) -> None:
        if _REGISTERED.search(line):
            self.registered, self.down_since = True, None
        elif _DOWN.search(line) and self.registered:
            self.registered, self.down_since = False, now

    def given_up(self, now: float, bound: float) -> bool:
        """Down for longer than ``bound`` seconds (cloudflared may still be retrying)."""
        return self.down_since is not None and now - self.down_since > bound


class StartWatch:
    """One start of cloudflared, watched through its log until it works, fails, or times out."""

    def __init__(
        self, process: subprocess.Popen[bytes], log: LogFollower, timeout: float, protocol: str
    ) -> None:
        self._process = process
        self._log = log
        self._timeout = timeout
        self._protocol = protocol
        self.host: str | None = None
        self.link = Link()

    def wait(self) -> str:
        """Read the log until the address is printed and the edge registered the connection."""
        deadline = time.monotonic() + self._timeout
        while True:
            self.read()
            if self.host is not None and self.link.registered:
                return self.host
            if self._process.poll() is not None:
                self.read()
                raise self._exited_error()
            if time.monotonic() >= deadline:
                raise self._timeout_error()
            time.sleep(_POLL_SECONDS)

    def read(self) -> None:
        now = time.monotonic()
        for line in self._log.read_new():
            if self.host is None:
                if found := ADDRESS.search(line):
                    self.host = found.group(1)
            else:
                self.link.note(line, now)

    def _exited_error(self) -> CloudflaredStartError:
        text = "\n".join(self._log.lines)
        code = self._process.returncode
        if any(sign in text for sign in _RATE_LIMITED):
            return CloudflaredStartError(
                "Cloudflare refused a new quick tunnel: too many were requested from this machine's"
                " address (HTTP 429, error code 1015). Wait a few minutes and run start_ssh() again,"
                " or use tunnel='ngrok'.",
                log_tail=self._log.tail(),
                code="1015",
            )
        if _NO_API in text:
            return CloudflaredStartError(
                "cloudflared could not ask Cloudflare for a quick tunnel: api.trycloudflare.com did not"
                " answer. The runtime needs outbound HTTPS (port 443) to Cloudflare; check its internet"
                " access, or use tunnel='ngrok'.",
                log_tail=self._log.tail(),
            )
        if self.host is None:
            return CloudflaredStartError(
                f"cloudflared exited with code {code} before it printed a quick-tunnel address.",
                log_tail=self._log.tail(),
            )
        return EdgeUnreachable(
            f"cloudflared exited with code {code} after it got the address {self.host}, before a"
            f" connection to Cloudflare's edge registered over {self._protocol}.",
            log_tail=self._log.tail(),
        )

    def _timeout_error(self) -> CloudflaredStartError:
        seconds = f"{self._timeout:g} s"
        if self.host is None:
            return CloudflaredStartError(
                f"cloudflared printed no quick-tunnel address within {seconds}; it was stopped."
                " Cloudflare's quick-tunnel service may be slow or down: run start_ssh() again later,"
                " or use tunnel='ngrok'.",
                log_tail=self._log.tail(),
            )
        return EdgeUnreachable(
            f"cloudflared got the address {self.host} but no connection to Cloudflare's edge"
            f" registered over {self._protocol} within {seconds}.",
            log_tail=self._log.tail(),
        )


class EdgeUnreachable(CloudflaredStartError):
    """An address, but no edge connection: worth one more try over the other protocol."""


def probe(argv: list[str], env: dict[str, str], timeout: float) -> tuple[bool, str]:
    """Run ``cloudflared access ssh`` once: (whether sshd's banner came back, its last error line)."""
    process = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    stdout = cast("IO[bytes]", process.stdout)  # stdout=PIPE
    received = b""
    deadline = time.monotonic() + timeout
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while len(received) < 4 and (left := deadline - time.monotonic()) > 0:
                if not selector.select(left):
                    break
                chunk = os.read(stdout.fileno(), 256)
                if not chunk:
                    break
                received += chunk
    finally:
        process.kill()
        _out, err = process.communicate()
    lines = err.decode(errors="replace").strip().splitlines()
    return received.startswith(b"SSH-"), lines[-1] if lines else "no answer"
