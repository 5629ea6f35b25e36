"""Which cloudflared colab_ssh runs, and with which environment.

The pinned release and its digests, the asset for this CPU, and the environment cloudflared is
started in (without the variables its flags read, so that only our flags count).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

from ..cloudflared_pins import RELEASES, SHA256, VERSION
from .cloudflared_download import BINARY_ENV, CloudflaredDownloadError

__all__ = ["RELEASES", "SHA256", "VERSION", "agent_environment", "asset_for_machine"]

# The release we run and its digests live in cloudflared_pins.py, which the laptop's download
# (laptop/client_program.py) reads too.

# platform.machine() spellings of the CPUs Cloudflare builds Linux binaries for.
_ASSETS = {
    "x86_64": "cloudflared-linux-amd64",
    "amd64": "cloudflared-linux-amd64",
    "aarch64": "cloudflared-linux-arm64",
    "arm64": "cloudflared-linux-arm64",
}

# Flags of `cloudflared tunnel` read from the environment (urfave/cli EnvVars in
# cmd/cloudflared/tunnel/cmd.go and cliutil/logger.go): every TUNNEL_* one, and these.
_FLAG_ENV_PREFIX = "TUNNEL_"
_FLAG_ENV_NAMES = frozenset(
    {
        "NO_AUTOUPDATE", "DIAL_EDGE_TIMEOUT", "STDIN_CONTROL", "NO_TLS_VERIFY", "LOCAL_SSH_PORT",
        "SSH_IDLE_TIMEOUT", "SSH_MAX_TIMEOUT", "BUCKET_ID", "REGION_ID", "SECRET_ID",
        "ACCESS_CLIENT_ID", "SESSION_TOKEN_ID", "S3_URL", "HOST_KEY_PATH",
    }
)  # fmt: skip


def agent_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables cloudflared's flags read, so that only our flags count."""
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith(_FLAG_ENV_PREFIX) and name not in _FLAG_ENV_NAMES
    }


def asset_for_machine(machine: str | None = None) -> str:
    """The release asset for this CPU; an error naming the way out for CPUs without one."""
    machine = platform.machine() if machine is None else machine
    asset = _ASSETS.get(machine.lower())
    if asset is None:
        raise CloudflaredDownloadError(
            f"There is no pinned cloudflared build for this CPU ({machine!r}); colab_ssh downloads"
            f" the Linux amd64 and arm64 builds. Install cloudflared yourself and set {BINARY_ENV} to"
            " its path, or use tunnel='ngrok'."
        )
    return asset
