"""Where colab_ssh keeps its files. Tests point these at temporary folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidArgumentError
from .safe_files import check_folder, check_path_text

__all__ = ["STATE_DIR_MODE", "Paths", "canonical_folder"]

# The state folder is created root-owned and 0755: nobody else can change what is in it, and the
# login user may still reach a file made readable for them; everything secret inside is 0600.
STATE_DIR_MODE = 0o755


def canonical_folder(value: str | os.PathLike[str], name: str, *, trusted: bool = True) -> Path:
    """The one form of a folder argument used everywhere: ``~`` expanded, absolute, links resolved.

    start_ssh(), stop_ssh() and the command line all go through here, so a folder reached through
    a link, relative to the current directory or under ``~`` names the same state everywhere (the
    supervisor runs in ``/``). With ``trusted`` (every folder root will write in), the path must be
    one sshd_config token, and it and every folder above it must be root's and closed to others
    (links on the way only root's): checked before the links are resolved, and nothing is created.
    """
    text = os.fspath(value)
    if "\0" in text:
        raise InvalidArgumentError(f"{name} {text!r} contains a NUL character; pass a real folder path.")
    path = Path(text).expanduser().absolute()
    if trusted:
        check_path_text(str(path), name)
        check_folder(path)
    real = Path(os.path.realpath(path))
    if trusted:
        check_path_text(str(real), name)
    return real


@dataclass(frozen=True)
class Paths:
    """Every path colab_ssh writes to or reads from, in one place."""

    state_dir: Path = Path("/var/lib/colab_ssh")
    # Downloaded tunnel agents (cloudflared), kept across sessions of the same runtime.
    cache_dir: Path = Path("/var/cache/colab_ssh")
    host_keys_dir: Path = Path("/etc/ssh")
    profile_dir: Path = Path("/etc/profile.d")
    # The kernel's environment for the login user's login shells: a root-owned folder others can
    # pass through but not list, holding one file per state folder that only that user can read.
    session_env_dir: Path = Path("/run/colab_ssh")
    shadow_file: Path = Path("/etc/shadow")
    # sshd refuses to start without its privilege-separation directory, which only the
    # distribution's service script creates; the path is compiled into sshd.
    privsep_dir: Path = Path("/run/sshd")

    @property
    def _session_name(self) -> str:
        """colab_ssh for the default state folder; another one gets its own name, so two never clash."""
        if self.state_dir == Paths.state_dir:
            return "colab_ssh"
        import hashlib  # here: it loads OpenSSL (~2 ms), and the default folder does without

        return "colab_ssh-" + hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]

    @property
    def profile_script(self) -> Path:
        """The login-shell hook in /etc/profile.d (it holds no values)."""
        return self.profile_dir / f"{self._session_name}.sh"

    @property
    def legacy_profile_script(self) -> Path:
        """Where versions before the values file kept them, world-readable (removed when seen)."""
        return self.profile_dir / "colab_ssh.sh"

    @property
    def session_env_file(self) -> Path:
        return self.session_env_dir / f"{self._session_name}.env"

    @property
    def password_record(self) -> Path:
        """The login user's password hash from before start_ssh() changed it, for stop_ssh() to put back."""
        return self.state_dir / "password-restore.json"

    @property
    def sshd_host_keys_dir(self) -> Path:
        """Private copies of host keys kept in host_keys_dir (Drive keeps no file modes)."""
        return self.state_dir / "host_keys"

    @property
    def sshd_config(self) -> Path:
        return self.state_dir / "sshd_config"

    @property
    def sshd_pid(self) -> Path:
        return self.state_dir / "sshd.pid"

    @property
    def sshd_log(self) -> Path:
        return self.state_dir / "sshd.log"

    @property
    def ngrok_config(self) -> Path:
        return self.state_dir / "ngrok.yml"

    @property
    def ngrok_log(self) -> Path:
        return self.state_dir / "ngrok.log"

    @property
    def ngrok_launcher(self) -> Path:
        return self.state_dir / "ngrok-agent"

    @property
    def ngrok_pid(self) -> Path:
        return self.state_dir / "ngrok.pid"

    @property
    def cloudflared_pid(self) -> Path:
        """Ours, in processes.py's format: how a later kernel recognises an agent an earlier one left."""
        return self.state_dir / "cloudflared.pid"

    @property
    def cloudflared_agent_pid(self) -> Path:
        """Where cloudflared writes its own pid (--pidfile, a bare number); we never read it."""
        return self.state_dir / "cloudflared-agent.pid"

    @property
    def cloudflared_log(self) -> Path:
        return self.state_dir / "cloudflared.log"

    @property
    def cloudflared_config(self) -> Path:
        """Our empty config file, so that cloudflared reads none of its usual ones."""
        return self.state_dir / "cloudflared.yml"

    @property
    def lock_file(self) -> Path:
        """Held (flock) by whoever starts or stops from this folder, so that one does at a time."""
        return self.state_dir / "state.lock"

    @property
    def owner_pid(self) -> Path:
        """The process whose session runs from this folder (processes.py's pid-file format)."""
        return self.state_dir / "owner.pid"

    # The command line's supervisor (supervisor_state.StateFiles reads these names).

    @property
    def supervisor_pid(self) -> Path:
        return self.state_dir / "supervisor.pid"

    @property
    def supervisor_log(self) -> Path:
        return self.state_dir / "supervisor.log"

    @property
    def connection_json(self) -> Path:
        """The supervisor's session, for `start` and `status` in other processes (0600: the password)."""
        return self.state_dir / "connection.json"

    @property
    def error_json(self) -> Path:
        """Why the supervisor could not start, for `start` to show."""
        return self.state_dir / "error.json"

    @property
    def cli_lock(self) -> Path:
        """Held (flock) by a command-line start or stop, so that one does at a time."""
        return self.state_dir / "cli.lock"

    @property
    def serving_lock(self) -> Path:
        """Kept open by the process serving this folder (the supervisor, or ``start --foreground``)."""
        return self.state_dir / "serving.lock"

    @property
    def apt_log(self) -> Path:
        return self.state_dir / "apt.log"
