"""The kernel's environment on disk for the login user's sessions: the values file and the profile hook.

environment.py decides what is copied (pure); this writes it where only the login user can read
it, and takes it away again.
"""

from __future__ import annotations

import contextlib
import logging
import pwd
from collections.abc import Mapping

from .environment import (
    caller_environment,
    cap_environment,
    render_environment_script,
    render_profile_hook,
    session_environment,
)
from .paths import Paths
from .safe_files import trusted_dir

__all__ = [
    "remove_legacy_profile",
    "remove_session_environment",
    "session_variables",
    "write_session_environment",
]

logger = logging.getLogger("colab_ssh")


def session_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """What sessions get of the caller's environment; a warning when the cap leaves some out."""
    environment, dropped = cap_environment(session_environment(caller_environment(environ)))
    if dropped:
        shown = ", ".join(dropped[:10]) + (", ..." if len(dropped) > 10 else "")
        logger.warning(
            "SSH sessions get %d of the kernel's environment variables; %d more were left out so that"
            " sshd can still start sessions (it allows about 1000 in all, 128 KiB per variable): %s",
            len(environment),
            len(dropped),
            shown,
        )
    return environment


def write_session_environment(paths: Paths, account: pwd.struct_passwd, environment: dict[str, str]) -> None:
    """The values file (the login user's, 0600) in a root folder others cannot list, then the hook."""
    values = paths.session_env_file
    with trusted_dir(values.parent, create_mode=0o711) as folder:
        folder.replace(
            values.name,
            render_environment_script(environment),
            mode=0o600,
            uid=account.pw_uid,
            gid=account.pw_gid,
        )
    with trusted_dir(paths.profile_script.parent, create_mode=0o755) as folder:
        folder.replace(paths.profile_script.name, render_profile_hook(account.pw_uid, values), mode=0o644)


# How the profile script of earlier versions began: it held the values and was readable by all.
_LEGACY_PROFILE_HEADER = b"# Written by colab_ssh: the notebook kernel's environment for SSH login shells.\n"


def remove_legacy_profile(paths: Paths) -> None:
    """An earlier colab_ssh left the kernel's environment in a world-readable /etc/profile.d script."""
    legacy = paths.legacy_profile_script
    with contextlib.suppress(OSError), trusted_dir(legacy.parent) as folder:
        content = folder.read(legacy.name)
        if content is not None and content.startswith(_LEGACY_PROFILE_HEADER):
            folder.remove(legacy.name)


def remove_session_environment(paths: Paths) -> None:
    """Take the hook and the values file away (stop_ssh(), a failed start)."""
    for path in (paths.profile_script, paths.session_env_file):
        if path.parent.is_dir():
            with trusted_dir(path.parent) as folder:
                folder.remove(path.name)
