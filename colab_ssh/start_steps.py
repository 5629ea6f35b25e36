"""The start steps: everything start_ssh() changes on the machine, in an order that can be undone.

bring_up() writes sshd's config, the session environment, the password or authorized_keys,
starts sshd and opens the tunnel, the slow steps side by side (parallel_steps.Steps); if a step
fails, the others are stopped and every change is put back (undo callbacks, newest first), so a
failed start leaves the machine as it was. core.py owns the
live session built from what it returns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from . import colab, session_files
from . import password_record as password_record
from .connection import DRIVE_PATH, Connection, alias_of_keys
from .errors import ColabSSHError, SshdStartError
from .host_keys import host_key_fingerprints, prepare_host_keys, save_address, system_host_keys
from .keys import PublicKey, fetch_github_keys, install_authorized_keys, parse_public_key
from .parallel_steps import Step, Steps
from .platform import default_workdir, detect_platform
from .processes import interrupts_held
from .progress import Progress
from .published import endpoint_metadata
from .request import Request
from .safe_files import trusted_dir
from .secret_text import conceal, reveal
from .sshd import SshdProcess, require_free_port, sshd_version, stop_stale_sshd, validate_config
from .sshd_config import SshdSettings, render_sshd_config
from .system import (
    PasswordChange,
    ensure_package,
    find_program,
    generate_password,
    read_password_hash,
    remove_file,
    restore_file,
    set_password_hash,
    write_file,
)
from .tunnels import Endpoint, Tunnel, can_prepare, open_checked, tag_endpoint
from .tunnels import prepare as prepare_tunnel
from .tunnels.direct import DirectTunnel
from .tunnels.registry import find_kind

__all__ = ["KEY_SECRET", "Started", "bring_up", "collect_keys", "listen_addresses"]

KEY_SECRET = "SSH_PUBLIC_KEY"  # noqa: S105 - a secret's name


@dataclass(frozen=True)
class Started:
    """What bring_up() started: the session is built from it (and revives sshd with the same config)."""

    sshd: SshdProcess
    tunnel: Tunnel
    connection: Connection
    sshd_binary: str
    sshd_config_text: str  # what a revived sshd must run, byte for byte


def _sshfs_path(request: Request) -> str:
    if request.mount_drive:
        return DRIVE_PATH
    return default_workdir(detect_platform(), request.user)  # /content, /kaggle/working, or home


def collect_keys(request: Request) -> list[PublicKey]:
    """Keys from the argument, GitHub and the Colab secret SSH_PUBLIC_KEY (unless password= was given)."""
    keys = list(request.public_keys)
    if request.github_user is not None:
        keys += fetch_github_keys(request.github_user)
    if request.password is None:
        secret, _status = colab.read_colab_secret(KEY_SECRET)
        if secret is not None:
            source = f"the Colab secret {KEY_SECRET}"
            keys += [parse_public_key(line, source) for line in secret.splitlines() if line.strip()]
    return list(dict.fromkeys(keys))


def _open_tunnel(steps: Steps, agent: Step[None], tunnel: Tunnel, port: int) -> Endpoint:
    steps.result(agent)  # its agent ready (downloaded beside apt)
    return open_checked(tunnel, port)


def _canceller(tunnel: Tunnel) -> Callable[[], None] | None:
    """How to end the tunnel's open() early from another thread, if the tunnel has a way."""
    cancel = getattr(tunnel, "cancel", None)
    return cancel if callable(cancel) else None


def _restore_password(change: PasswordChange, old_hash: str | None) -> None:
    """Undo a password change: let chpasswd finish, then put the old hash back."""
    with contextlib.suppress(ColabSSHError):
        change.wait()
    if old_hash is not None:
        set_password_hash(change.user, old_hash)


def listen_addresses(request: Request) -> tuple[str, ...]:
    """All interfaces for tunnel="none" (clients come to this machine's address); else loopback only."""
    if isinstance(request.tunnel, str) and find_kind(request.tunnel).direct:
        return ()
    if isinstance(request.tunnel, DirectTunnel):
        return ()
    return ("127.0.0.1", "::1") if _has_ipv6_loopback() else ("127.0.0.1",)


def _has_ipv6_loopback() -> bool:
    """sshd logs an error for a ListenAddress it cannot bind: leave ::1 out where IPv6 is off."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def _install_sshd(log_path: Path, progress: Progress) -> str:
    with progress.step("Installing openssh-server (first run only)"):
        return ensure_package("sshd", "openssh-server", log_path=log_path)


def _mount_drive(progress: Progress) -> None:
    with progress.step("Mounting Google Drive"):
        colab.mount_drive()


def bring_up(request: Request, progress: Progress, tunnel: Tunnel, keys: list[PublicKey]) -> Started:
    """Bring sshd and the tunnel up, slow steps side by side; every change is undone if a step fails.

    What waits for what (``Steps`` runs a step beside this thread; parallel_steps.CONCURRENT
    False runs them one after another, in this order):

        apt installs openssh-server ----+                    +-- sshd -t --------+
        the tunnel's prepare() (agent   +-- password, config +-- sshd starts -----+-- up
          download; ngrok: agent start) |  (chpasswd hashes  +-- the tunnel opens -+
        Drive's consent (this thread) --+   meanwhile)

    The tunnel's prepare() does what needs no port: ngrok's starts its agent there, so the agent's
    login to its cloud (about a second) happens while apt installs and the user answers Drive's
    consent; what is left for open() is the endpoint, which needs the host keys' alias (its
    metadata; with host_keys_dir on Drive, after the mount). The tunnel opens while sshd starts:
    it needs only the port number, and sshd answers on it long before a first client can come
    through the tunnel.
    """
    paths = request.paths
    stop_stale_sshd(paths.sshd_pid, paths.sshd_config)
    require_free_port(request.port)
    environment = session_files.session_variables(os.environ)
    password = None if keys else conceal(request.password or generate_password())
    account = pwd.getpwnam(request.user)

    with Steps() as steps:
        found = find_program("sshd")
        install = Step.ready(found) if found else steps.start(lambda: _install_sshd(paths.apt_log, progress))
        # Undone by close(): prepare() wrote files (ngrok.yml holds the token). Not if it never
        # ran: close() would forget (remove the pid file of) an agent an earlier kernel left.
        agent = (
            steps.start(lambda: prepare_tunnel(tunnel), undo=tunnel.close)
            if can_prepare(tunnel)
            else Step.ready(None)
        )
        if request.mount_drive:
            steps.run_here(lambda: _mount_drive(progress))  # here: the consent talks to the notebook
        sshd_binary = steps.result(install)
        addresses = listen_addresses(request)
        behind_tunnel = bool(addresses)
        version = steps.start(lambda: sshd_version(sshd_binary)) if behind_tunnel else None

        # The password first: chpasswd is the slowest command of a warm start (it hashes on
        # purpose) and works while the rest is written. What an earlier start (maybe in another
        # process) changed is put back first, so that the hash recorded is the account's own.
        password_record.restore(paths.password_record, paths.shadow_file)
        old_hash = read_password_hash(paths.shadow_file, request.user)
        record = None
        if old_hash is not None and (password is not None or old_hash.startswith("!")):
            record = password_record.PasswordRecord(request.user, old_hash)
            password_record.save(paths.password_record, record)
            steps.undo(password_record.forget, paths.password_record)
        password_change = None
        if password is None:
            if old_hash is not None and old_hash.startswith("!"):
                # Without PAM, sshd refuses even key logins to a locked account ("!" hash, as
                # useradd leaves it); "*" unlocks it while no password can match.
                with interrupts_held() as interrupted:  # the change and its undo are one
                    set_password_hash(request.user, "*")
                    steps.undo(set_password_hash, request.user, old_hash)
                if interrupted:
                    raise KeyboardInterrupt
            home = Path(account.pw_dir)
            installed = install_authorized_keys(home, account.pw_uid, account.pw_gid, keys)
            steps.undo(installed.undo)
        else:
            # The change and its undo are one: Ctrl-C is held in between (inside Popen it would
            # also leave chpasswd running, unknown, to change the password with no undo).
            with interrupts_held() as interrupted:
                password_change = PasswordChange(request.user, password)  # hashes while sshd starts
                steps.undo(_restore_password, password_change, old_hash)
            if interrupted:
                raise KeyboardInterrupt

        if request.host_keys_dir is None:
            host_keys = system_host_keys(paths.host_keys_dir)
        else:
            try:
                host_keys, saved = prepare_host_keys(request.host_keys_dir, paths.sshd_host_keys_dir)
            except OSError as error:
                raise ColabSSHError(
                    f"Could not keep the host keys in host_keys_dir {request.host_keys_dir}: {error}."
                    " Pick a folder you can write to (is Drive mounted?)."
                ) from error
            for path in saved:
                steps.undo(remove_file, path)
        settings = SshdSettings(
            disable_per_source_penalties=version is not None and steps.result(version) >= (9, 8),
            host_keys=host_keys,
            user=request.user,
            password_login=password is not None,
            listen_addresses=addresses,
            environment=environment,
        )
        config_text = render_sshd_config(settings)
        previous = write_file(paths.sshd_config, config_text, mode=0o600)
        steps.undo(restore_file, paths.sshd_config, previous, mode=0o600)
        steps.undo(session_files.remove_session_environment, paths)
        session_files.write_session_environment(paths, account, environment)
        trusted_dir(paths.privsep_dir, create_mode=0o755).close()  # sshd checks it is root's too

        # `sshd -t` checks the config while sshd starts from it: a config it rejects also stops
        # sshd -D, and then the check's error (which names the bad line) is the one raised.
        checked = steps.start(lambda: validate_config(sshd_binary, paths.sshd_config, request.port))
        if not steps.concurrent:
            steps.result(checked)  # one after another: the check first, as before
        fingerprints = host_key_fingerprints(host_keys)
        tag_endpoint(tunnel, endpoint_metadata(alias_of_keys(fingerprints)))  # ngrok's API lists it
        opened = steps.start(
            lambda: _open_tunnel(steps, agent, tunnel, request.port),
            cancel=_canceller(tunnel),
            undo=tunnel.close,
        )
        try:
            sshd = SshdProcess.launch(
                sshd_binary,
                paths.sshd_config,
                request.port,
                paths.sshd_log,
                pid_file=paths.sshd_pid,
                config_text=config_text,
            )
        except SshdStartError:
            steps.result(checked)  # a rejected config is the better error
            raise
        steps.undo(sshd.stop)
        steps.result(checked)
        if password_change is not None:
            password_change.wait()
        if record is not None:
            ours = read_password_hash(paths.shadow_file, request.user)
            password_record.save(paths.password_record, replace(record, ours=ours))
        endpoint = steps.result(opened)
        connection = Connection(
            host=endpoint.host,
            port=endpoint.port,
            user=request.user,
            password=reveal(password),  # the caller's to print: a plain string again
            local_port=request.port,
            tunnel=tunnel.name,
            host_keys=fingerprints,
            sshfs_path=_sshfs_path(request),
            proxy_command=endpoint.proxy_command,
            client_hints=endpoint.client_hints,
        )
        if request.host_keys_dir is not None:
            save_address(request.host_keys_dir, connection)  # last: if it fails, the start is undone
    # Up: the world-readable script an earlier version left (not before: a failed start changes nothing).
    session_files.remove_legacy_profile(paths)
    return Started(sshd, tunnel, connection, sshd_binary, config_text)
