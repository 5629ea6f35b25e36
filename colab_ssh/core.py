"""start_ssh() and stop_ssh(): the steps, in an order that can be undone, and the one live session."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from . import password_record as password_record
from . import session_files
from .connection import Connection
from .display import notebook_view
from .errors import ColabSSHError, SessionLostError, SshdStartError
from .events import EventKind, SessionEvent, Subscriber, publish
from .host_keys import save_address
from .monitor import Monitor
from .options import check_request
from .ownership import Claim, claim, owned_by_us, release, require_no_other_owner, state_lock
from .paths import Paths, canonical_folder
from .progress import Progress
from .request import Request
from .secret_text import conceal
from .sshd import SshdProcess, port_in_use, stop_stale_sshd
from .start_steps import Started, bring_up, collect_keys
from .supervisor_state import stop_supervisor
from .system import check_system, remove_file
from .tunnels import Tunnel, open_checked
from .tunnels.registry import DEFAULT_TUNNEL, TunnelSettings, find_kind, stop_leftovers

__all__ = ["SshStatus", "ssh_status", "start_ssh", "stop_ssh"]

logger = logging.getLogger("colab_ssh")


@dataclass(frozen=True)
class SshStatus:
    """What ssh_status() reports."""

    running: bool
    connection: Connection | None = None
    sshd_alive: bool = False
    tunnel_alive: bool = False
    since: datetime | None = None  # when start_ssh() brought this session up
    sshd_restarts: int = 0
    tunnel_restarts: int = 0
    address_changed: datetime | None = None  # when the tunnel last came back at a new address
    monitoring: bool = False
    # Why the last attempt to bring something back failed; with monitoring False, why the monitor
    # stopped for good (sshd's port taken by another program, or the session stopped elsewhere).
    monitor_error: str | None = None

    @property
    def restarts(self) -> int:
        return self.sshd_restarts + self.tunnel_restarts


class _Session:
    """The sshd and tunnel this process runs, and the connection details they give."""

    def __init__(self, request: Request, started: Started) -> None:
        self.request = request
        self.sshd_config_text = started.sshd_config_text  # what a revived sshd must run, byte for byte
        self.sshd = started.sshd
        self.tunnel = started.tunnel
        self.connection = started.connection
        self.sshd_binary = started.sshd_binary
        self.since = datetime.now(timezone.utc)
        self.sshd_restarts = 0
        self.tunnel_restarts = 0
        self.address_changed: datetime | None = None
        self.view: Subscriber | None = None  # start_ssh()'s: shows events unless quiet
        self._events: list[SessionEvent] = []  # emitted under _lock, published once it is free
        self.monitor: Monitor | None = None
        self.claim: Claim | None = None  # owner.pid as claim() wrote it, for the lock-free re-run

    def watch(self, interval: float | None) -> None:
        """(Re)start the background monitor; None switches it off."""
        if self.monitor is not None and self.monitor.running and self.monitor.interval == interval:
            return
        if self.monitor is not None:
            self.monitor.stop(wait=False)
            self.monitor = None
        if interval is not None:
            self.monitor = Monitor(self._monitor_round, interval, give_up_on=(SessionLostError,))
            self.monitor.start()

    def emit(self, kind: EventKind, detail: str = "") -> None:
        """Report an event (callers hold _lock); flush() delivers it once the lock is free."""
        self._events.append(SessionEvent(kind, self.connection, detail))

    def flush(self) -> None:
        """Deliver the emitted events, outside _lock: a subscriber may call ssh_status()."""
        with _lock:
            events, self._events = self._events, []
        for event in events:
            publish(event, self.view)

    def _monitor_round(self) -> None:
        try:
            self._check_and_revive()
        finally:
            self.flush()

    def _check_and_revive(self) -> None:
        global _session, _lost
        with _lock:
            if _session is not self:
                return  # stopped or replaced while this round waited for the lock
            # A repair takes the folder's lock like a start; busy means a start or stop elsewhere:
            # this round is skipped (StateDirBusyError), the next one sees what it left.
            with state_lock(self.request.paths, timeout=_MONITOR_LOCK_WAIT):
                if not owned_by_us(self.request.paths):
                    # stop_ssh() from another process ended this session: its processes are
                    # gone and the folder may be someone else's now, so nothing here is touched.
                    _session = None
                    _lost = (
                        f"stop_ssh() or `colab-ssh stop` from another process stopped this session"
                        f" ({self.request.paths.state_dir}); call start_ssh() again to start one."
                    )
                    raise SessionLostError(_lost)
                try:
                    if self.revive():
                        self.emit(EventKind.ADDRESS_CHANGED)
                except ColabSSHError as error:
                    self.emit(EventKind.ERROR, (str(error).splitlines() or [type(error).__name__])[0])
                    raise

    def status(self) -> SshStatus:
        return SshStatus(
            running=True,
            connection=self.connection,
            sshd_alive=self.sshd.healthy(),
            tunnel_alive=self.tunnel.alive(),
            since=self.since,
            sshd_restarts=self.sshd_restarts,
            tunnel_restarts=self.tunnel_restarts,
            address_changed=self.address_changed,
            monitoring=self.monitor is not None and self.monitor.running,
            monitor_error=None if self.monitor is None else self.monitor.last_error,
        )

    def _sshd_port_taken(self) -> SessionLostError:
        port = self.request.port
        return SessionLostError(
            f"sshd stopped and port {port} is now used by another program, so it cannot be brought"
            f" back; colab_ssh stopped trying. Free port {port} (or stop_ssh() and start on another"
            " port), then call start_ssh() again."
        )

    def revive(self) -> bool:
        """Bring back whatever died; True if the connection details changed."""
        paths = self.request.paths
        # Only a dead listener is replaced: one that is merely slow to answer (busy with
        # scanners) keeps running, and sessions it started outlive it either way.
        if not self.sshd.alive():
            # Someone else listening there (another sshd, a second server on our port) would make
            # every attempt fail with "Bind to port failed": say so once instead of looping.
            if port_in_use(self.request.port):
                raise self._sshd_port_taken()
            self.emit(EventKind.RESTART, "sshd")
            try:
                self.sshd = SshdProcess.launch(
                    self.sshd_binary,
                    paths.sshd_config,
                    self.request.port,
                    paths.sshd_log,
                    pid_file=paths.sshd_pid,
                    config_text=self.sshd_config_text,
                )
            except SshdStartError:
                if port_in_use(self.request.port):  # taken between the check and the bind
                    raise self._sshd_port_taken() from None
                raise
            self.sshd_restarts += 1
        if self.tunnel.alive():
            return False
        self.emit(EventKind.RESTART, "the tunnel")
        self.tunnel.close()
        self.tunnel_restarts += 1
        endpoint = open_checked(self.tunnel, self.request.port)
        changed = (endpoint.host, endpoint.port) != (self.connection.host, self.connection.port)
        if changed:
            self.address_changed = datetime.now(timezone.utc)
        self.connection = replace(
            self.connection,
            host=endpoint.host,
            port=endpoint.port,
            proxy_command=endpoint.proxy_command,
            client_hints=endpoint.client_hints,
        )
        if changed and self.request.host_keys_dir is not None:
            self._save_address(self.request.host_keys_dir)
        return changed

    def _save_address(self, folder: Path) -> None:
        """The new address next to the host keys, for `colab-ssh proxy --from`.

        A failure is logged, not raised: the tunnel is back, and the laptop falls back to the
        address its ssh config has (or a new `colab-ssh connect`).
        """
        try:
            save_address(folder, self.connection)
        except ColabSSHError as error:
            logger.warning("%s", error)

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop(wait=False)  # our caller holds _lock, which a round may be waiting for
        self.tunnel.close()
        self.sshd.stop()


_session: _Session | None = None
_lost: str | None = None  # why this process's session ended without stop_ssh() here (ssh_status says)
_lock = threading.Lock()  # this process's threads; state_lock() is the one across processes
_MONITOR_LOCK_WAIT = 5.0


def _make_tunnel(request: Request, progress: Progress) -> Tunnel:
    if not isinstance(request.tunnel, str):
        return request.tunnel
    settings = TunnelSettings(
        paths=request.paths, progress=progress, authtoken=request.authtoken, region=request.region
    )
    return find_kind(request.tunnel).build(settings)


def start_ssh(
    authtoken: str | None = None,
    *,
    password: str | None = None,
    tunnel: str | Tunnel = DEFAULT_TUNNEL,
    port: int = 22,
    region: str | None = None,
    mount_drive: bool = False,
    quiet: bool = False,
    user: str = "root",
    state_dir: str | os.PathLike[str] | None = None,
    public_key: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    github_user: str | None = None,
    host_keys_dir: str | os.PathLike[str] | None = None,
    on_change: Callable[[Connection], None] | None = None,
    monitor_interval: float | None = 5.0,
) -> Connection:
    """Make this machine an SSH host and return how to connect.

    With ``public_key`` (key lines, .pub paths, or a list), ``github_user`` or the Colab
    secret SSH_PUBLIC_KEY, login is by key only and no password is set. ``host_keys_dir``
    (e.g. a folder on the mounted Drive) keeps the host keys across sessions.

    A background monitor checks sshd and the tunnel every ``monitor_interval`` seconds
    (None: no monitor) and brings back what died; when the tunnel comes back at a new
    address it prints the new details (unless quiet), logs it, and calls ``on_change``.

    Calling it again while everything runs returns the same connection; if sshd or the
    tunnel died, it brings back what died. Errors are ColabSSHError subclasses, raised
    with the machine left as it was.
    """
    global _session
    # From here on, a traceback printed with its locals shows '<hidden>' for these.
    authtoken, password = conceal(authtoken), conceal(password)
    # Exactly the parameters, by the names options.OPTIONS gives them (a test holds them equal).
    arguments = dict(locals())
    check_system()
    request = check_request(**arguments)
    with _lock:
        session = _running_as_started(request)
        if session is not None:
            session.view = notebook_view(quiet=quiet, on_change=on_change)
            session.watch(monitor_interval)
    if session is not None:
        session.flush()
        return session.connection
    # One start at a time per state folder, across processes; the lock is held until the new
    # session is up and recorded as the folder's owner, so a second start never sees half of it.
    with _lock, state_lock(request.paths):
        if (
            _session is not None
            and _session.request.paths == request.paths
            and not owned_by_us(request.paths)
        ):
            _session = None  # stopped by another process (its monitor may not have noticed yet)
        view = notebook_view(quiet=quiet, on_change=on_change)
        progress: Progress | None = None
        if _session is not None and _session.request == request:
            session = _session
            session.view = view
            if session.revive():
                session.emit(EventKind.UP)  # back at a new address: the details again
        else:
            progress = Progress(quiet=quiet)
            session = _replace_session(request, progress)
            session.view = view
            session.emit(EventKind.UP)
        session.watch(monitor_interval)
    if progress is not None:
        progress.finish()  # "SSH server up in 0.3 s": all a warm run shows (nothing when quiet)
    session.flush()
    return session.connection


def _running_as_started(request: Request) -> _Session | None:
    """This process's session for ``request`` if nothing needs doing: a re-run's fast path.

    Without the folder's lock or reading a file (callers hold _lock): owner.pid is still the
    file this session's claim() wrote, so no other process has stopped it or taken the folder
    over since (ownership.Claim), and sshd and the tunnel are alive. Otherwise None, and the
    locked path looks again, brings back what died, or starts anew.
    """
    session = _session
    if session is None or session.request != request:
        return None
    if session.claim is None or not session.claim.unchanged():
        return None
    return session if session.sshd.alive() and session.tunnel.alive() else None


def _replace_session(request: Request, progress: Progress) -> _Session:
    """Start a session for ``request`` in place of this process's one; callers hold both locks."""
    global _session, _lost
    # Before anything changes: another live process's session in this folder is refused
    # (naming it); one whose owner is gone (a restarted kernel) is taken over by bring_up().
    require_no_other_owner(request.paths)
    # What can fail without changing anything (the token, the keys) comes before the
    # running session, if any, is replaced.
    tunnel_to_open = _make_tunnel(request, progress)
    keys = collect_keys(request)
    if _session is not None:
        _session.stop()
        if owned_by_us(_session.request.paths):
            release(_session.request.paths)
        _session = None
    started = bring_up(request, progress, tunnel_to_open, keys)
    session = _Session(request, started)
    session.claim = claim(request.paths)
    _session, _lost = session, None
    return session


def ssh_status() -> SshStatus:
    """Whether sshd and the tunnel run, since when, where, and how often they were brought back."""
    with _lock:
        if _session is None:
            return SshStatus(running=False, monitor_error=_lost)
        return _session.status()


def stop_ssh(*, state_dir: str | os.PathLike[str] | None = None) -> None:
    """Close the tunnel and stop the sshd started by start_ssh(); harmless when nothing runs.

    With ``state_dir``, stops what runs from that folder: this process's session if it uses
    it, and whatever an earlier kernel or ``colab-ssh start`` left running there (a notebook
    restart keeps processes alive but forgets them). Without it: this process's session, or
    what runs from the default folder.
    """
    global _session, _lost
    asked = None if state_dir is None else canonical_folder(state_dir, "state_dir", trusted=False)
    with _lock:
        ours = (
            _session if _session is not None and asked in (None, _session.request.paths.state_dir) else None
        )
        paths = (
            ours.request.paths if ours is not None else Paths() if asked is None else Paths(state_dir=asked)
        )
    stop_supervisor(paths.state_dir)  # else `colab-ssh start`'s supervisor brings it all back
    if not paths.state_dir.is_dir():
        return  # nothing ever ran from there (and the lock must not create the folder)
    with _lock, state_lock(paths):
        if ours is not None and _session is ours:
            ours.stop()
            _session = None
        _lost = None
        stop_stale_sshd(paths.sshd_pid, paths.sshd_config)
        # Each tunnel kind's recorded agents, and files holding a secret that a dead owner (a
        # restarted kernel, a supervisor killed with SIGKILL) could not remove: the ngrok token,
        # and the password in connection.json.
        stop_leftovers(paths)
        remove_file(paths.connection_json)
        session_files.remove_session_environment(paths)
        password_record.restore(paths.password_record, paths.shadow_file)
        release(paths)  # a live owner elsewhere finds its session gone and stops its monitor
    if ours is not None and ours.monitor is not None:
        ours.monitor.stop()  # now that _lock is free, wait for its thread to end
