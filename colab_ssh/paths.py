"""Where colab_ssh keeps its files. Tests point these at temporary folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Paths"]


@dataclass(frozen=True)
class Paths:
    """Every path colab_ssh writes to or reads from, in one place."""

    state_dir: Path = Path("/var/lib/colab_ssh")
    # Downloaded tunnel agents (cloudflared), kept across sessions of the same runtime.
    cache_dir: Path = Path("/var/cache/colab_ssh")
    host_keys_dir: Path = Path("/etc/ssh")
    profile_script: Path = Path("/etc/profile.d/colab_ssh.sh")
    shadow_file: Path = Path("/etc/shadow")
    # sshd refuses to start without its privilege-separation directory, which only the
    # distribution's service script creates; the path is compiled into sshd.
    privsep_dir: Path = Path("/run/sshd")

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
    def apt_log(self) -> Path:
        return self.state_dir / "apt.log"
