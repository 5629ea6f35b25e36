"""The connection details handed to the user, and their text forms (pure functions)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["Connection", "HostKey", "render_details"]

SSH_CONFIG_ALIAS = "colab"
DRIVE_PATH = "/content/drive/MyDrive"

# Client-side keep-alive: notice a dead tunnel within a minute instead of hanging.
_SERVER_ALIVE_INTERVAL = 15
_SERVER_ALIVE_COUNT_MAX = 4


@dataclass(frozen=True)
class HostKey:
    """One host key of the sshd we run: ``kind`` is e.g. ``ssh-ed25519``."""

    kind: str
    fingerprint: str  # "SHA256:..." as ssh prints it


@dataclass(frozen=True)
class Connection:
    """How to reach the SSH server that start_ssh() set up."""

    host: str
    port: int
    user: str
    password: str | None
    local_port: int
    tunnel: str
    host_keys: tuple[HostKey, ...] = ()
    sshfs_path: str = "/content"

    @property
    def ssh_command(self) -> str:
        port = [] if self.port == 22 else ["-p", str(self.port)]
        return shlex.join(["ssh", *port, f"{self.user}@{self.host}"])

    @property
    def sshfs_command(self) -> str:
        """Mounts ``sshfs_path`` on the client; reconnects and keeps the link alive."""
        options = ",".join(
            [
                "reconnect",
                f"ServerAliveInterval={_SERVER_ALIVE_INTERVAL}",
                f"ServerAliveCountMax={_SERVER_ALIVE_COUNT_MAX}",
            ]
        )
        mount_point = "~/colab-drive" if self.sshfs_path == DRIVE_PATH else "~/colab"
        port = [] if self.port == 22 else ["-p", str(self.port)]
        remote = shlex.quote(f"{self.user}@{self.host}:{self.sshfs_path}")
        return " ".join(["mkdir -p", mount_point, "&&", "sshfs", *port, "-o", options, remote, mount_point])

    @property
    def ssh_config(self) -> str:
        """A ``~/.ssh/config`` block: ``ssh colab`` and VS Code Remote-SSH's host list."""
        return "\n".join(
            [
                f"Host {SSH_CONFIG_ALIAS}",
                f"    HostName {self.host}",
                f"    Port {self.port}",
                f"    User {self.user}",
                f"    ServerAliveInterval {_SERVER_ALIVE_INTERVAL}",
                f"    ServerAliveCountMax {_SERVER_ALIVE_COUNT_MAX}",
            ]
        )


def render_details(connection: Connection) -> str:
    """The plain-text block start_ssh() prints."""
    lines = [
        "SSH server is up.",
        "",
        f"  ssh:      {connection.ssh_command}",
    ]
    if connection.password is not None:
        lines.append(f"  password: {connection.password}")
    lines += [
        f"  sshfs:    {connection.sshfs_command}",
        "",
        "Host-key fingerprints (compare with what ssh shows on first connect):",
        *(f"  {key.kind:<20} {key.fingerprint}" for key in connection.host_keys),
        "",
        f"~/.ssh/config block (then `ssh {SSH_CONFIG_ALIAS}`, or pick '{SSH_CONFIG_ALIAS}' in VS Code's"
        " Remote-SSH: Connect to Host...):",
        "",
        *(f"  {line}" for line in connection.ssh_config.splitlines()),
    ]
    return "\n".join(lines) + "\n"
