"""colab_ssh: turn a Google Colab runtime (or any Linux machine where you are root) into an SSH host.

from colab_ssh import start_ssh
conn = start_ssh()          # prints how to connect; conn.ssh_command, conn.password, ...
"""

from __future__ import annotations

from .connection import Connection, HostKey
from .core import SshStatus, ssh_status, start_ssh, stop_ssh
from .errors import (
    AuthtokenMissingError,
    ColabOnlyError,
    ColabSSHError,
    DriveNotMountedError,
    InvalidArgumentError,
    KeySourceError,
    NgrokAgentVersionError,
    NgrokAuthtokenError,
    NgrokDownloadError,
    NgrokSessionLimitError,
    NgrokTcpNeedsCardError,
    PackageInstallError,
    SessionLostError,
    SshdConfigError,
    SshdStartError,
    StateDirBusyError,
    TunnelError,
    UnsupportedSystemError,
)
from .tunnels import Endpoint, Tunnel
from .tunnels.cloudflared import (
    CloudflaredDownloadError,
    CloudflaredIntegrityError,
    CloudflaredStartError,
    CloudflaredTunnel,
)

__all__ = [
    "AuthtokenMissingError",
    "CloudflaredDownloadError",
    "CloudflaredIntegrityError",
    "CloudflaredStartError",
    "CloudflaredTunnel",
    "ColabOnlyError",
    "ColabSSHError",
    "Connection",
    "DriveNotMountedError",
    "Endpoint",
    "HostKey",
    "InvalidArgumentError",
    "KeySourceError",
    "NgrokAgentVersionError",
    "NgrokAuthtokenError",
    "NgrokDownloadError",
    "NgrokSessionLimitError",
    "NgrokTcpNeedsCardError",
    "PackageInstallError",
    "SessionLostError",
    "SshStatus",
    "SshdConfigError",
    "SshdStartError",
    "StateDirBusyError",
    "Tunnel",
    "TunnelError",
    "UnsupportedSystemError",
    "ssh_status",
    "start_ssh",
    "stop_ssh",
]

__version__ = "0.1.0"
