"""tunnel="cloudflared": a Cloudflare quick tunnel, with no account and no card.

How it differs from ngrok, and why the code looks the way it does:
- The public side is not raw TCP. ``https://<words>.trycloudflare.com`` speaks HTTPS and
  WebSocket only, so the client's ssh reaches it through ``cloudflared access ssh --hostname %h``
  as its ProxyCommand; the client needs cloudflared installed (the endpoint carries the
  ProxyCommand and one-line install hints, which the printed details show).
- The agent is one static binary from Cloudflare's GitHub releases, fetched on first use into
  ``Paths.cache_dir``. It is pinned to ``VERSION`` and checked against the release's SHA-256
  before every start (cloudflared_download.py: the cache's rules, the download's bounds).
- cloudflared has no local API: its address appears only in its log, boxed, so we read the
  log file it writes (never a pipe, which a detached agent would block on once nobody reads it).
- The address is printed before the tunnel connects to Cloudflare's edge; we also wait for the
  "Registered tunnel connection" line, and then until the address answers with sshd's banner
  through ``cloudflared access ssh`` (the very path the user's ProxyCommand takes): the box says
  "it may take some time to be reachable", and a first login that races the new name's DNS fails.
  Waiting here, not retrying in the user's ProxyCommand, because that command runs on the user's
  computer (Windows has no shell loop to retry in), and because a resolver that was asked too
  early caches the "no such host" answer; the runtime can ask the same way and wait for a yes.
- Quick tunnels use QUIC (UDP to port 7844) and never fall back to HTTP/2 by themselves
  (quick_tunnel.go:85-87 sets ``quic``; an explicit protocol has no fallback, protocol.go:109-120).
  When no connection registers, we start once more with ``--protocol http2`` (TCP), and only then
  fail, naming both.
- cloudflared reads settings from places we do not control: ``~/.cloudflared/config.yml`` (whose
  ``ingress:`` rules win over ``--url``, and whose ``tunnel:`` turns the quick tunnel into an error)
  and ``TUNNEL_*`` variables (``TUNNEL_LOGLEVEL=warn`` hides the lines we wait for,
  ``TUNNEL_NAME`` runs a named tunnel instead). We pass our own empty config file, ``--loglevel
  info``, and an environment without the variables its flags read.
- A registered tunnel that loses its edge connection is not given up at the first error line:
  cloudflared retries, even "Unauthorized", which it treats as transient (supervisor.go:274-278).
  We give up when cloudflared exits, or when no connection is registered for ``reconnect_timeout``.
- Our pid file, ``cloudflared.pid``, is in processes.py's format (pid, start time, argv): that is
  how a later kernel recognises (and stops) an agent an earlier kernel left running, and nothing
  else. cloudflared's own ``--pidfile`` (a bare pid, written once connected) goes to another
  name, ``cloudflared-agent.pid``, never read: it only puts our state folder on its command line.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

from ..errors import InvalidArgumentError
from ..paths import Paths
from ..processes import cloudflared_is_ours, record_process, stop_recorded, stop_tree
from ..progress import Progress
from ..safe_files import trusted_dir
from ..system import open_log, remove_file, retry_while_text_busy, write_file
from . import Endpoint
from .cloudflared_download import (
    BINARY_ENV,
    CloudflaredDownloadError,
    CloudflaredIntegrityError,
    cached_is_verified,
    check_download_url,
    download_verified,
)
from .cloudflared_release import RELEASES, SHA256, VERSION, agent_environment, asset_for_machine
from .cloudflared_watch import CloudflaredStartError, EdgeUnreachable, LogFollower, StartWatch, probe

__all__ = [
    "BINARY_ENV",
    "PROXY_COMMAND",
    "SHA256",
    "VERSION",
    "CloudflaredDownloadError",
    "CloudflaredIntegrityError",
    "CloudflaredStartError",
    "CloudflaredTunnel",
    "asset_for_machine",
    "stop_stale_cloudflared",
]

# What the client's ssh runs to reach the tunnel (%h: the trycloudflare hostname).
PROXY_COMMAND = "cloudflared access ssh --hostname %h"
CLIENT_HINTS = (
    "Linux:   sudo curl -fsSLo /usr/local/bin/cloudflared https://github.com/cloudflare/cloudflared"
    "/releases/latest/download/cloudflared-linux-amd64 && sudo chmod +x /usr/local/bin/cloudflared"
    " (ARM: cloudflared-linux-arm64)",
    "macOS:   brew install cloudflared",
    "Windows: winget install --id Cloudflare.cloudflared",
)
# ssh's port on the trycloudflare side: 22 keeps "-p" out of the printed commands (the
# ProxyCommand does the connecting, so the number is never dialled).
PUBLIC_PORT = 22

# Our config file: a YAML document with nothing in it ("{}": a file with no document at all is
# logged as an error, config/configuration.go:403-407), so no other config file is searched for.
CONFIG_TEXT = (
    "# colab_ssh's own cloudflared config, empty on purpose: with --config naming this file,\n"
    "# cloudflared does not read ~/.cloudflared/config.yml or /etc/cloudflared/config.yml.\n"
    "{}\n"
)
_STOP_SECONDS = 3.0
_PROBE_SECONDS = 5.0  # one reachability probe: time for the banner through the tunnel


def stop_stale_cloudflared(paths: Paths) -> None:
    """Stop a cloudflared an earlier kernel of this runtime started (stop_ssh() calls this).

    Only the process our pid file records (pid, start time, argv), and only if that argv is a
    quick tunnel as we start them: a recycled pid never makes us stop someone else's program.
    """
    stop_recorded(paths.cloudflared_pid, cloudflared_is_ours(paths.cloudflared_agent_pid))
    remove_file(paths.cloudflared_agent_pid)


class CloudflaredTunnel:
    """A Cloudflare quick tunnel to the local sshd: ``cloudflared tunnel --url ssh://localhost:PORT``."""

    name = "cloudflared"

    def __init__(
        self,
        paths: Paths | None = None,
        progress: Progress | None = None,
        *,
        download_url: str | None = None,
        sha256: str | None = None,
        start_timeout: float = 30.0,
        reconnect_timeout: float = 60.0,
    ) -> None:
        """``start_timeout``: seconds for each start (address, edge connection, reachability);
        ``reconnect_timeout``: seconds a registered tunnel may stay without an edge connection
        (cloudflared reconnecting) before alive() says no and a new tunnel replaces it."""
        if download_url is not None:
            if sha256 is None:
                raise InvalidArgumentError(
                    "download_url needs the file's sha256 too: colab_ssh runs nothing it cannot verify."
                )
            check_download_url(download_url)
        if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
            raise InvalidArgumentError(f"sha256 must be 64 hex digits, not {sha256!r}.")
        for name, value in (("start_timeout", start_timeout), ("reconnect_timeout", reconnect_timeout)):
            if not value > 0:
                raise InvalidArgumentError(f"{name} must be a positive number of seconds, not {value!r}.")
        self._paths = paths or Paths()
        self._progress = progress or Progress(quiet=True)
        self._download_url = download_url
        self._sha256 = sha256.lower() if sha256 else None
        self._start_timeout = start_timeout
        self._reconnect_timeout = reconnect_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: LogFollower | None = None
        self._host: str | None = None
        self._start: StartWatch | None = None
        self._prepared: Path | None = None  # the binary prepare() verified for the next open()
        self._cancelled = False  # cancel() was called while open() ran on another thread

    def __repr__(self) -> str:
        return f"<CloudflaredTunnel {self._host or 'closed'}>"

    @property
    def _pid_file(self) -> Path:
        return self._paths.cloudflared_pid

    @property
    def _log_path(self) -> Path:
        return self._paths.cloudflared_log

    # --- the binary ---------------------------------------------------------------------

    def _source(self) -> tuple[str, str, str]:
        """(URL, SHA-256, name in the cache): the pinned release asset unless the caller gave others."""
        if self._sha256 is not None:  # another file than the pinned one: cached under its digest
            asset = None if self._download_url is not None else asset_for_machine()
            url = self._download_url or f"{RELEASES}/{VERSION}/{asset}"
            return url, self._sha256, f"cloudflared-sha256-{self._sha256[:16]}"
        asset = asset_for_machine()
        return f"{RELEASES}/{VERSION}/{asset}", SHA256[asset], f"cloudflared-{VERSION}"

    def binary(self) -> Path:
        """The cloudflared to run: $COLAB_SSH_CLOUDFLARED, else the cached download, whose digest
        is checked on every call (fetched again if it differs)."""
        configured = os.environ.get(BINARY_ENV)
        if configured:
            path = Path(configured)
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise CloudflaredDownloadError(
                    f"{BINARY_ENV} is set to {configured!r}, which is not an executable file. Point it"
                    f" at a cloudflared program, or unset it and colab_ssh downloads cloudflared {VERSION}."
                )
            return path
        url, sha256, name = self._source()
        # Root's and closed to others (created 0700), else refused: whoever can write there could
        # swap the file root runs.
        with trusted_dir(self._paths.cache_dir, create_mode=0o700) as cache:
            if not cached_is_verified(cache, name, sha256):
                with self._progress.step(f"Downloading cloudflared {VERSION} (first run only)"):
                    download_verified(url, sha256, cache, name)
            return cache.path / name

    # --- running it -----------------------------------------------------------------------

    def prepare(self) -> None:
        """The binary, downloaded and verified: the slow part that needs no port. start_ssh()
        runs it while openssh-server installs; open() does it if it was not done."""
        self._cancelled = False
        self._prepared = self.binary()

    def cancel(self) -> None:
        """End an open() running on another thread early (another start step failed): its agent
        is stopped and no new one starts, so open() fails soon; close() then cleans up."""
        self._cancelled = True
        process = self._process
        if process is not None:
            stop_tree(process.pid, timeout=_STOP_SECONDS, sigterms=2)

    def open(self, local_port: int) -> Endpoint:
        binary, self._prepared = self._prepared, None
        if self._process is not None:
            self.close()
        if binary is None:
            self._cancelled = False
            binary = self.binary()
        stop_stale_cloudflared(self._paths)
        with self._progress.step("Opening a Cloudflare quick tunnel"):
            try:
                host = self._open_reachable(binary, local_port)
            except BaseException:
                self.close()
                raise
        self._host = host
        return Endpoint(host, PUBLIC_PORT, proxy_command=PROXY_COMMAND, client_hints=CLIENT_HINTS)

    def _open_reachable(self, binary: Path, local_port: int) -> str:
        """QUIC first, as cloudflared does; if no connection registers, once more over HTTP/2."""
        try:
            host = self._start_once(binary, local_port, "quic")
        except EdgeUnreachable as over_quic:
            self.close()
            try:
                host = self._start_once(binary, local_port, "http2")
            except EdgeUnreachable as over_http2:
                raise CloudflaredStartError(
                    f"cloudflared could not connect to Cloudflare's edge. {over_quic.message_head}"
                    f" Then, started again with --protocol http2: {over_http2.message_head} The runtime"
                    " reached api.trycloudflare.com over HTTPS (TCP 443) but not the edge's port 7844,"
                    " neither over UDP (QUIC) nor over TCP (HTTP/2); a firewall blocking it is the usual"
                    " cause. Allow outbound UDP and TCP to port 7844, or use tunnel='ngrok'.",
                    log_tail=over_http2.log_tail,
                ) from None
        self._wait_reachable(binary, host)
        return host

    def _start_once(self, binary: Path, local_port: int, protocol: str) -> str:
        process, log = self._launch(binary, local_port, protocol)
        self._start = StartWatch(process, log, self._start_timeout, protocol)
        return self._start.wait()

    def _wait_reachable(self, binary: Path, host: str) -> None:
        """Until sshd's banner comes back through ``cloudflared access ssh --hostname HOST``."""
        argv = [str(binary), "access", "ssh", "--hostname", host]
        env = agent_environment(os.environ)
        deadline = time.monotonic() + self._start_timeout
        pause = 0.2
        while True:
            answered, last_error = probe(argv, env, min(_PROBE_SECONDS, self._start_timeout))
            if answered:
                return
            process = self._process
            if process is None or process.poll() is not None:
                raise CloudflaredStartError(
                    f"cloudflared exited after it connected {host} to Cloudflare's edge.",
                    log_tail=self._log.tail() if self._log else "",
                )
            if time.monotonic() + pause >= deadline:
                raise CloudflaredStartError(
                    f"cloudflared connected {host} to Cloudflare's edge, but the address did not answer"
                    f" within {self._start_timeout:g} s (the last try: {last_error}); it was stopped."
                    " New quick-tunnel names sometimes take a while: run start_ssh() again, or use"
                    " tunnel='ngrok'.",
                    log_tail=self._log.tail() if self._log else "",
                )
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _launch(
        self, binary: Path, local_port: int, protocol: str
    ) -> tuple[subprocess.Popen[bytes], LogFollower]:
        """Start cloudflared detached: own session, no stdin, its output appended to our log."""
        if self._cancelled:
            raise CloudflaredStartError("The start was cancelled: another start step failed.", log_tail="")
        log_path = self._log_path
        config = self._paths.cloudflared_config
        write_file(config, CONFIG_TEXT, mode=0o600)
        argv = [
            str(binary),
            "tunnel",
            "--no-autoupdate",  # a pinned, verified binary must not replace itself
            "--config",
            str(config),
            "--loglevel",
            "info",  # the address box and "Registered tunnel connection" are info lines
            *(["--protocol", protocol] if protocol != "quic" else []),
            "--pidfile",
            str(self._paths.cloudflared_agent_pid),
            "--url",
            f"ssh://localhost:{local_port}",
        ]
        log = open_log(log_path)  # 0600, never through a link
        with os.fdopen(log, "ab") as log_file:
            offset = os.fstat(log).st_size
            # Its own session: Ctrl-C in the notebook must not reach it. A file, not a pipe:
            # nobody reads a detached agent's pipe, and a full pipe would stall it.
            try:
                process = retry_while_text_busy(  # a download just written on another thread
                    lambda: subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=log_file,
                        env=agent_environment(os.environ),
                        start_new_session=True,
                    )
                )
            except OSError as error:  # not executable, a folder, a noexec mount, a wrong format
                raise CloudflaredDownloadError(
                    f"{binary} cannot be run ({error.strerror or error}). Make it an executable"
                    f" cloudflared (chmod 755), point {BINARY_ENV} at one, or remove it so that"
                    f" colab_ssh downloads cloudflared {VERSION} again."
                ) from None
        self._process, self._log = process, LogFollower(log_path, offset)
        record_process(self._pid_file, process.pid, argv)
        return process, self._log

    # --- health and stopping ------------------------------------------------------------

    def alive(self) -> bool:
        """Running, and not without an edge connection for longer than ``reconnect_timeout``.

        A dropped edge connection is not death, nor is one "Unauthorized" while re-registering:
        cloudflared reconnects by itself and the address stays the same, whereas a restart would
        hand out a new address. Only a tunnel that stays unregistered is given up.
        """
        if self._process is None or self._host is None or self._start is None:
            return False
        if self._process.poll() is not None:
            return False
        self._start.read()
        return not self._start.link.given_up(time.monotonic(), self._reconnect_timeout)

    def close(self) -> None:
        """Stop cloudflared and anything it started; harmless when nothing runs."""
        process, self._process = self._process, None
        self._host, self._start, self._prepared = None, None, None
        if process is None:
            return
        # On SIGTERM cloudflared stops taking connections but waits for open ones (an SSH session
        # can last hours) up to its 30 s grace period, or until a second SIGTERM.
        stop_tree(process.pid, timeout=_STOP_SECONDS, sigterms=2)
        process.wait()  # already reaped by stop_tree(): this only records that it ended
        remove_file(self._pid_file)
        remove_file(self._paths.cloudflared_agent_pid)
