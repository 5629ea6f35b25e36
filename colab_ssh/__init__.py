"""colab_ssh: turn a Google Colab runtime (or any Linux machine where you are root) into an SSH host.

from colab_ssh import start_ssh
conn = start_ssh()          # prints how to connect; conn.ssh_command, conn.password, ...

The names below are imported when first used (a module ``__getattr__``): ``import colab_ssh``
alone loads none of the runtime, so the laptop's commands (``colab-ssh connect``) run where the
runtime cannot (Windows, macOS, no root).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names are, for the type checker; at run time see __getattr__
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

# Each public name and the module that defines it.
_HOMES = {
    "AuthtokenMissingError": ".errors",
    "CloudflaredDownloadError": ".tunnels.cloudflared",
    "CloudflaredIntegrityError": ".tunnels.cloudflared",
    "CloudflaredStartError": ".tunnels.cloudflared",
    "CloudflaredTunnel": ".tunnels.cloudflared",
    "ColabOnlyError": ".errors",
    "ColabSSHError": ".errors",
    "Connection": ".connection",
    "DriveNotMountedError": ".errors",
    "Endpoint": ".tunnels",
    "HostKey": ".connection",
    "InvalidArgumentError": ".errors",
    "KeySourceError": ".errors",
    "NgrokAgentVersionError": ".errors",
    "NgrokAuthtokenError": ".errors",
    "NgrokDownloadError": ".errors",
    "NgrokSessionLimitError": ".errors",
    "NgrokTcpNeedsCardError": ".errors",
    "PackageInstallError": ".errors",
    "SessionLostError": ".errors",
    "SshStatus": ".core",
    "SshdConfigError": ".errors",
    "SshdStartError": ".errors",
    "StateDirBusyError": ".errors",
    "Tunnel": ".tunnels",
    "TunnelError": ".errors",
    "UnsupportedSystemError": ".errors",
    "ssh_status": ".core",
    "start_ssh": ".core",
    "stop_ssh": ".core",
}

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # the next use finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
