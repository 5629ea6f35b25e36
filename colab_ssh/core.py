"""start_ssh() and stop_ssh(): the steps, in an order that can be undone, and the one live session."""

from __future__ import annotations

import contextlib
import os
import pwd
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from . import colab
from .authtoken import check_authtoken, resolve_authtoken
from .connection import DRIVE_PATH, Connection
from .display import show_connection
from .environment import render_profile_script, session_environment
from .errors import InvalidArgumentError
from .paths import Paths
from .progress import Progress
from .sshd import SshdProcess, require_free_port, stop_stale_process, validate_config
from .sshd_config import SshdSettings, render_sshd_config
from .system import (
    check_system,
    ensure_host_keys,
    ensure_package,
    find_program,
    generate_password,
    host_key_fingerprints,
    read_password_hash,
    restore_file,
    set_password,
    set_password_hash,
    write_file,
)
from .tunnels import Tunnel
from .tunnels.direct import DirectTunnel
from .tunnels.ngrok import NgrokTunnel

__all__ = ["SshStatus", "ssh_status", "start_ssh", "stop_ssh"]

TUNNEL_NAMES = ("ngrok", "none")
NGROK_REGIONS = ("us", "eu", "ap", "au", "sa", "jp", "in")
MIN_PASSWORD_LENGTH = 8


@dataclass(frozen=True)
class _Request:
    """What the caller asked for; a re-run asking for the same thing reuses the running session."""

    authtoken: str | None
    password: str | None
    tunnel: str | Tunnel
    port: int
    region: str | None
    mount_drive: bool
    user: str
    paths: Paths


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

    @property
    def restarts(self) -> int:
        return self.sshd_restarts + self.tunnel_restarts


class _Session:
    """The sshd and tunnel this process runs, and the connection details they give."""

    def __init__(
        self, request: _Request, sshd: SshdProcess, tunnel: Tunnel, connection: Connection, sshd_binary: str
    ) -> None:
        self.request = request
        self.sshd = sshd
        self.tunnel = tunnel
        self.connection = connection
        self.sshd_binary = sshd_binary
        self.since = datetime.now(timezone.utc)
        self.sshd_restarts = 0
        self.tunnel_restarts = 0

    def status(self) -> SshStatus:
        return SshStatus(
            running=True,
            connection=self.connection,
            sshd_alive=self.sshd.healthy(),
            tunnel_alive=self.tunnel.alive(),
            since=self.since,
            sshd_restarts=self.sshd_restarts,
            tunnel_restarts=self.tunnel_restarts,
        )

    def revive(self) -> bool:
        """Bring back whatever died; True if the connection details changed."""
        paths = self.request.paths
        if not self.sshd.healthy():
            self.sshd.stop()
            self.sshd = SshdProcess.launch(
                self.sshd_binary, paths.sshd_config, self.request.port, paths.sshd_log
            )
            self.sshd_restarts += 1
        if self.tunnel.alive():
            return False
        self.tunnel.close()
        self.tunnel_restarts += 1
        endpoint = self.tunnel.open(self.request.port)
        changed = (endpoint.host, endpoint.port) != (self.connection.host, self.connection.port)
        self.connection = replace(
            self.connection,
            host=endpoint.host,
            port=endpoint.port,
            proxy_command=endpoint.proxy_command,
            client_hints=endpoint.client_hints,
        )
        return changed

    def stop(self) -> None:
        self.tunnel.close()
        self.sshd.stop()


_session: _Session | None = None
_lock = threading.Lock()


def _check_password(password: str | None) -> str | None:
    if password is None:
        return None
    if not isinstance(password, str):
        raise InvalidArgumentError(f"password must be a string, not {type(password).__name__}.")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidArgumentError(
            f"password is too short ({len(password)} characters); the SSH port is public, so use at"
            f" least {MIN_PASSWORD_LENGTH}, or leave password out and one is generated."
        )
    if any(not ch.isprintable() for ch in password):
        raise InvalidArgumentError(
            "password contains a line break or another control character, which chpasswd cannot take;"
            " use printable characters only."
        )
    return password


def _check_request(
    authtoken: str | None,
    password: str | None,
    tunnel: str | Tunnel,
    port: int,
    region: str | None,
    mount_drive: bool,
    user: str,
    state_dir: str | os.PathLike[str] | None,
) -> _Request:
    """Every argument checked before anything on the machine changes."""
    if isinstance(tunnel, str):
        if tunnel not in TUNNEL_NAMES:
            raise InvalidArgumentError(
                f"Unknown tunnel {tunnel!r}; choose one of {', '.join(map(repr, TUNNEL_NAMES))},"
                " or pass an object with open(port), alive() and close()."
            )
    elif not isinstance(tunnel, Tunnel):
        raise InvalidArgumentError(
            f"tunnel must be a name ({', '.join(TUNNEL_NAMES)}) or a tunnel object with open(port),"
            f" alive() and close(); got {type(tunnel).__name__}."
        )
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidArgumentError(f"port must be a whole number from 1 to 65535, not {port!r}.")
    if region is not None and region not in NGROK_REGIONS:
        raise InvalidArgumentError(
            f"Unknown ngrok region {region!r}; choose one of {', '.join(NGROK_REGIONS)}, or leave it out"
            " and ngrok picks the nearest."
        )
    if not isinstance(mount_drive, bool):
        raise InvalidArgumentError(f"mount_drive must be True or False, not {mount_drive!r}.")
    if authtoken is not None:
        if not isinstance(authtoken, str):
            raise InvalidArgumentError(f"authtoken must be a string, not {type(authtoken).__name__}.")
        authtoken = check_authtoken(authtoken, "the authtoken argument")
    try:
        pwd.getpwnam(user)
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"There is no user {user!r} on this machine; leave user as 'root'."
        ) from None
    paths = Paths() if state_dir is None else Paths(state_dir=Path(state_dir).absolute())
    return _Request(authtoken, _check_password(password), tunnel, port, region, mount_drive, user, paths)


def _sshfs_path(request: _Request) -> str:
    if request.mount_drive:
        return DRIVE_PATH
    if Path("/content").is_dir():
        return "/content"
    return pwd.getpwnam(request.user).pw_dir


def _make_tunnel(request: _Request, progress: Progress) -> Tunnel:
    if not isinstance(request.tunnel, str):
        return request.tunnel
    if request.tunnel == "none":
        return DirectTunnel()
    token = resolve_authtoken(request.authtoken, os.environ)
    return NgrokTunnel(token, region=request.region, paths=request.paths, progress=progress)


def _start(request: _Request, progress: Progress) -> _Session:
    paths = request.paths
    tunnel = _make_tunnel(request, progress)  # finds the authtoken: fails before any change
    stop_stale_process(paths.sshd_pid, marker=str(paths.sshd_config))
    require_free_port(request.port)
    if request.mount_drive:
        with progress.step("Mounting Google Drive"):
            colab.mount_drive()
    sshd_binary = find_program("sshd")
    if sshd_binary is None:
        with progress.step("Installing openssh-server (first run only)"):
            sshd_binary = ensure_package("sshd", "openssh-server", log_path=paths.apt_log)
    host_keys = ensure_host_keys(paths.host_keys_dir)
    environment = session_environment(os.environ)
    password = request.password or generate_password()
    settings = SshdSettings(host_keys=host_keys, pid_file=paths.sshd_pid, environment=environment)

    with contextlib.ExitStack() as undo:
        previous = write_file(paths.sshd_config, render_sshd_config(settings), mode=0o600)
        undo.callback(restore_file, paths.sshd_config, previous)
        previous_profile = write_file(paths.profile_script, render_profile_script(environment), mode=0o644)
        undo.callback(restore_file, paths.profile_script, previous_profile)
        paths.privsep_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        validate_config(sshd_binary, paths.sshd_config, request.port)

        old_hash = read_password_hash(paths.shadow_file, request.user)
        set_password(request.user, password)
        if old_hash is not None:
            undo.callback(set_password_hash, request.user, old_hash)

        sshd = SshdProcess.launch(sshd_binary, paths.sshd_config, request.port, paths.sshd_log)
        undo.callback(sshd.stop)
        endpoint = tunnel.open(request.port)
        undo.pop_all()

    connection = Connection(
        host=endpoint.host,
        port=endpoint.port,
        user=request.user,
        password=password,
        local_port=request.port,
        tunnel=tunnel.name,
        host_keys=host_key_fingerprints(host_keys),
        sshfs_path=_sshfs_path(request),
        proxy_command=endpoint.proxy_command,
        client_hints=endpoint.client_hints,
    )
    return _Session(request, sshd, tunnel, connection, sshd_binary)


def start_ssh(
    authtoken: str | None = None,
    *,
    password: str | None = None,
    tunnel: str | Tunnel = "ngrok",
    port: int = 22,
    region: str | None = None,
    mount_drive: bool = False,
    quiet: bool = False,
    user: str = "root",
    state_dir: str | os.PathLike[str] | None = None,
) -> Connection:
    """Make this machine an SSH host and return how to connect.

    Calling it again while everything runs returns the same connection; if sshd or the
    tunnel died, it brings back what died. Errors are ColabSSHError subclasses, raised
    with the machine left as it was.
    """
    global _session
    check_system()
    request = _check_request(authtoken, password, tunnel, port, region, mount_drive, user, state_dir)
    with _lock:
        if _session is not None and _session.request == request:
            changed = _session.revive()
            if changed and not quiet:
                show_connection(_session.connection)
            return _session.connection
        if _session is not None:
            _session.stop()
            _session = None
        _session = _start(request, Progress(quiet=quiet))
    if not quiet:
        show_connection(_session.connection)
    return _session.connection


def ssh_status() -> SshStatus:
    """Whether sshd and the tunnel run, since when, where, and how often they were brought back."""
    with _lock:
        return SshStatus(running=False) if _session is None else _session.status()


def stop_ssh(*, state_dir: str | os.PathLike[str] | None = None) -> None:
    """Close the tunnel and stop the sshd started by start_ssh(); harmless when nothing runs.

    Also stops what an earlier kernel of this runtime left running (a notebook restart keeps
    processes alive but forgets them).
    """
    global _session
    with _lock:
        if _session is not None:
            paths = _session.request.paths
            _session.stop()
            _session = None
        else:
            paths = Paths() if state_dir is None else Paths(state_dir=Path(state_dir).absolute())
        stop_stale_process(paths.sshd_pid, marker=str(paths.sshd_config))
        stop_stale_process(paths.ngrok_pid, marker=str(paths.ngrok_config))
