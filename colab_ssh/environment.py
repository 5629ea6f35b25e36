"""Which of the notebook kernel's environment variables SSH sessions should see (pure functions).

sshd gives every session a minimal environment, so over plain SSH ``nvidia-smi`` cannot find
``/usr/lib64-nvidia`` and the kernel's PATH (CUDA, gcloud, node) is gone. We pass the kernel's
environment on, minus what only makes sense inside the kernel process, what sshd sets per
session anyway, and anything that looks like a secret (it would land in a config file).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

__all__ = [
    "NVIDIA_LIBRARY_DIR",
    "render_profile_script",
    "session_environment",
]

NVIDIA_LIBRARY_DIR = "/usr/lib64-nvidia"

# Set by sshd or the login shell for each session; copying the kernel's value would be wrong
# (another user, another terminal, another working directory).
_PER_SESSION = frozenset(
    {
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "MAIL",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "TERM",
        "COLUMNS",
        "LINES",
        "HOSTNAME",
        "DISPLAY",
        "SSH_AUTH_SOCK",
    }
)

# Only meaningful inside the Jupyter kernel process.
_KERNEL_ONLY = frozenset(
    {
        "MPLBACKEND",  # inline matplotlib backend: breaks plotting in a terminal
        "PAGER",
        "GIT_PAGER",  # "cat": set so pagers don't block the kernel; a terminal wants less
        "CLICOLOR",  # set for the notebook's output renderer
        "KMP_LISTEN_PORT",
        "KMP_TARGET_PORT",
        "KMP_EXTRA_ARGS",  # Colab's kernel-manager proxy
        "_PYVIZ_COMMS_INSTALLED",
    }
)
_KERNEL_ONLY_PREFIXES = (
    "JPY_",  # Jupyter session bookkeeping
    "PYDEVD_",  # the notebook debugger
    "COLAB_KERNEL_MANAGER_",  # kernel-manager proxy
    "COLAB_JUPYTER_",  # the kernel's own transport, address and token
    "COLAB_LANGUAGE_SERVER_",  # the notebook editor's language server
    "SSH_",  # the session's own SSH_CLIENT, SSH_CONNECTION, ...
    "XDG_",  # per-login runtime directories
)

# Never copied into a config file: these names usually hold credentials.
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|API_?KEY|PRIVATE|CREDENTIAL|AUTH", re.IGNORECASE)

# A name sshd and every shell accept.
_VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _is_excluded(name: str) -> bool:
    return (
        name in _PER_SESSION
        or name in _KERNEL_ONLY
        or name.startswith(_KERNEL_ONLY_PREFIXES)
        or bool(_SECRET_NAME.search(name))
        or not _VALID_NAME.match(name)
    )


def _is_carriable(value: str) -> bool:
    """sshd's config is line-based: a value with a control character cannot be carried."""
    return all(ch == "\t" or ch >= " " for ch in value) and "\x7f" not in value


def session_environment(kernel_environ: Mapping[str, str]) -> dict[str, str]:
    """The variables SSH sessions get, sorted by name, with the NVIDIA libraries on LD_LIBRARY_PATH."""
    selected = {
        name: value
        for name, value in kernel_environ.items()
        if not _is_excluded(name) and _is_carriable(value)
    }
    library_path = [part for part in selected.get("LD_LIBRARY_PATH", "").split(":") if part]
    if NVIDIA_LIBRARY_DIR not in library_path:
        library_path.append(NVIDIA_LIBRARY_DIR)
    selected["LD_LIBRARY_PATH"] = ":".join(library_path)
    return dict(sorted(selected.items()))


def render_profile_script(environment: Mapping[str, str]) -> str:
    """A /etc/profile.d script re-exporting the variables for login shells.

    sshd's SetEnv reaches every session, but Debian's /etc/profile then resets PATH for
    login shells; profile.d scripts run after that reset, so this puts it back.
    """
    lines = [
        "# Written by colab_ssh: the notebook kernel's environment for SSH login shells.",
        "# Rewritten by every start_ssh(); edits here are lost.",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]
    return "\n".join(lines) + "\n"
