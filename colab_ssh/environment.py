"""Which of the notebook kernel's environment variables SSH sessions should see (pure functions).

sshd gives every session a minimal environment, so over plain SSH ``nvidia-smi`` cannot find
``/usr/lib64-nvidia`` and the kernel's PATH (CUDA, gcloud, node) is gone. We pass the kernel's
environment on, minus what only makes sense inside the kernel process, what sshd sets per
session anyway, and anything that looks like a secret (it would land in a file on disk).

The values reach the login user's sessions two ways: sshd's ``SetEnv`` (in our sshd_config,
readable by root only; only that user can log in) and, for login shells (Debian's /etc/profile
resets PATH), a hook in /etc/profile.d that holds no values: it runs only for that user's uid
and sources a file that only that user and root can read.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "CALLER_PYTHONPATH",
    "MAX_COPIED",
    "NVIDIA_LIBRARY_DIR",
    "caller_environment",
    "cap_environment",
    "render_environment_script",
    "render_profile_hook",
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

# Set by `colab-ssh start` for the supervisor it spawns: the PYTHONPATH its caller had ("" for
# none), because the one the supervisor runs with has our package folder added for our own use.
CALLER_PYTHONPATH = "COLAB_SSH_CALLER_PYTHONPATH"

# Never copied: names that usually hold credentials. The rule, on the name's words (split at "_",
# any case): a word containing TOKEN, SECRET, PASSW (PASSWORD, PASSWD), PASSPHRASE, PRIVATE,
# CREDENTIAL, AUTH, COOKIE or KEY (API_KEY, KAGGLE_KEY, AWS_ACCESS_KEY_ID, KEYFILE), a word ending
# in PASS or PWD (SSHPASS, DB_PASS, MYSQL_PWD), or the word DSN (Sentry's DSN holds its key).
_SECRET_WORD = re.compile(r"TOKEN|SECRET|PASSW|PASSPHRASE|PRIVATE|CREDENTIAL|AUTH|COOKIE|KEY")
_SECRET_WORD_END = ("PASS", "PWD")
_SECRET_WORDS = frozenset({"DSN"})
# ...and values that carry credentials whatever the name: a URL with a user part
# (postgres://user:password@host/db, https://TOKEN@github.com/...).
# (No scheme before "://" in the pattern: a search starting at every letter of a long value
# would take quadratic time.)
_URL_WITH_CREDENTIALS = re.compile(r"://[^/?#\s@]+@")

# A name sshd and every shell accept.
_VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# sshd builds each session's environment in an array that may not grow past 1000 slots:
# child_set_env() in OpenSSH's misc.c ends the session with "child_set_env: too many env vars"
# (openssh-portable commit 0ef0f5a8, misc.c lines 2444-2450). Into it go sshd's own ~20
# (USER, HOME, PATH, MAIL, SHELL, TZ, TERM, SSH_CLIENT, SSH_CONNECTION, SSH_TTY, ...: do_setup_env
# in session.c), up to 129 the client sends (session_env_req() ignores more than 128), ours and
# the terminating NULL. 800 of ours leaves room for all of those.
MAX_COPIED = 800
# The kernel refuses to exec a process whose environment holds a string over MAX_ARG_STRLEN
# (32 pages, 128 KiB, include/uapi/linux/binfmts.h), and argv plus environment must fit in
# ARG_MAX (a quarter of the stack limit, 2 MiB by default): keep ours well inside both, leaving
# room for the commands people run.
_MAX_ENTRY_BYTES = 128 * 1024
_MAX_TOTAL_BYTES = 256 * 1024
# Kept first when the cap applies: what makes the runtime work over SSH (tools, GPUs, locale).
_ESSENTIAL = frozenset({"PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "LANG", "LANGUAGE", "TZ"})
_ESSENTIAL_PREFIXES = ("LC_", "CUDA", "NVIDIA", "COLAB_", "KAGGLE_", "TF_", "XLA_", "TPU_", "PYTHON")


def _looks_secret(name: str) -> bool:
    words = [word for word in name.upper().split("_") if word]
    return any(
        _SECRET_WORD.search(word) or word.endswith(_SECRET_WORD_END) or word in _SECRET_WORDS
        for word in words
    )


def _is_excluded(name: str) -> bool:
    return (
        name in _PER_SESSION
        or name in _KERNEL_ONLY
        or name == CALLER_PYTHONPATH
        or name.startswith(_KERNEL_ONLY_PREFIXES)
        or not _VALID_NAME.match(name)
        or _looks_secret(name)
    )


def _is_carriable(value: str) -> bool:
    """sshd's config is line-based: a value with a control character cannot be carried.

    Nor can one that is not UTF-8 (os.environ holds such bytes as lone surrogates).
    """
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return all(ch == "\t" or ch >= " " for ch in value) and "\x7f" not in value


def caller_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of whoever asked for SSH, without what we added for our own processes.

    `colab-ssh start` puts our package on the supervisor's PYTHONPATH and records the caller's
    own in CALLER_PYTHONPATH; sessions get the caller's.
    """
    environment = dict(environ)
    if CALLER_PYTHONPATH in environment:
        caller = environment.pop(CALLER_PYTHONPATH)
        if caller:
            environment["PYTHONPATH"] = caller
        else:
            environment.pop("PYTHONPATH", None)
    return environment


def session_environment(kernel_environ: Mapping[str, str]) -> dict[str, str]:
    """The variables SSH sessions get, sorted by name, with the NVIDIA libraries on LD_LIBRARY_PATH."""
    selected = {
        name: value
        for name, value in kernel_environ.items()
        if not _is_excluded(name) and _is_carriable(value) and not _URL_WITH_CREDENTIALS.search(value)
    }
    library_path = [part for part in selected.get("LD_LIBRARY_PATH", "").split(":") if part]
    if NVIDIA_LIBRARY_DIR not in library_path:
        library_path.append(NVIDIA_LIBRARY_DIR)
    selected["LD_LIBRARY_PATH"] = ":".join(library_path)
    return dict(sorted(selected.items()))


def _usefulness(item: tuple[str, str]) -> tuple[int, int, str]:
    name, value = item
    essential = name in _ESSENTIAL or name.startswith(_ESSENTIAL_PREFIXES)
    return (0 if essential else 1, len(name) + len(value), name)


def cap_environment(environment: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """At most MAX_COPIED variables in at most _MAX_TOTAL_BYTES, so sshd can still start sessions.

    The essential ones (PATH, LD_LIBRARY_PATH, CUDA_*, ...) are kept first, then the rest from
    the shortest; an entry too long for any exec is never kept. Returns what is kept (sorted by
    name) and the names dropped, for one warning.
    """
    kept: dict[str, str] = {}
    dropped: list[str] = []
    total = 0
    for name, value in sorted(environment.items(), key=_usefulness):
        size = len(f"{name}={value}".encode()) + 1
        if len(kept) >= MAX_COPIED or size > _MAX_ENTRY_BYTES or total + size > _MAX_TOTAL_BYTES:
            dropped.append(name)
            continue
        kept[name] = value
        total += size
    return dict(sorted(kept.items())), sorted(dropped)


def render_environment_script(environment: Mapping[str, str]) -> str:
    """The values file the profile hook sources: ``export NAME='value'`` lines for a login shell.

    sshd's SetEnv reaches every session, but Debian's /etc/profile then resets PATH for
    login shells; profile.d scripts run after that reset, so this puts it back.
    """
    lines = [
        "# Written by colab_ssh: the notebook kernel's environment for this account's SSH login shells.",
        "# Rewritten by every start_ssh(), removed by stop_ssh(); edits here are lost.",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in environment.items()]
    return "\n".join(lines) + "\n"


def render_profile_hook(uid: int, values_file: Path) -> str:
    """The /etc/profile.d script: no values, only "if this is the login user, source their file".

    Every account's login shell runs it; another account's skips the file (and could not read it).
    """
    quoted = shlex.quote(str(values_file))
    return (
        "# Written by colab_ssh for the SSH login shells of one account (uid check below).\n"
        f"# No values here: they are in {values_file}, which only that account and root can read.\n"
        "# Removed by stop_ssh().\n"
        f'if [ "$(id -u)" = {uid} ] && [ -r {quoted} ]; then\n'
        f"    . {quoted}\n"
        "fi\n"
    )
