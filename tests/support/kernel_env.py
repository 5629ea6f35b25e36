"""A real Colab kernel's environment (recorded in tests/data) and values that are hard to quote."""

from __future__ import annotations

from pathlib import Path

from colab_ssh.environment import NVIDIA_LIBRARY_DIR

KERNEL_ENV_FILE = Path(__file__).resolve().parent.parent / "data" / "colab-kernel-env.txt"
# Tricky values a kernel environment can hold; sshd's config quoting must carry them unchanged.
TRICKY = {
    "CS_QUOTES": "say \"hi\" and 'bye'",
    "CS_BACKSLASH": "C:\\path\\to\\thing\\",
    "CS_HASH": "#not a comment = still # value",
    "CS_DOLLAR": "$HOME and `date` stay literal",
    "CS_EMPTY": "",
}


def colab_kernel_environment() -> dict[str, str]:
    """A real Colab kernel's environment (from tests/data), as a GPU runtime would have it."""
    environ = {}
    for line in KERNEL_ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            environ[name] = value
    environ["COLAB_GPU"] = "1"
    environ["LD_LIBRARY_PATH"] = f"{NVIDIA_LIBRARY_DIR}:{environ['LD_LIBRARY_PATH']}"
    return environ
