"""Where we run: Google Colab, a Kaggle notebook, or plain Linux; and whether a notebook shows our output.

Detection never imports IPython or google.colab just to look: importing IPython costs a few
hundred milliseconds, and every kernel has imported it already, so its absence answers "no".
"""

from __future__ import annotations

import enum
import importlib.util
import os
import pwd
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "Platform",
    "default_workdir",
    "detect_platform",
    "in_notebook",
    "notebook_display",
    "running_shell",
]

KAGGLE_WORKDIR = Path("/kaggle/working")
COLAB_WORKDIR = Path("/content")


class Platform(enum.Enum):
    """The kinds of machine colab_ssh knows apart."""

    COLAB = "Google Colab"
    KAGGLE = "Kaggle"
    LINUX = "Linux"


def _colab_importable() -> bool:
    """Whether ``google.colab`` can be imported, without importing it (tests put None in sys.modules)."""
    if "google.colab" in sys.modules:
        return sys.modules["google.colab"] is not None
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):  # no `google` package at all, or a stub without __spec__
        return False


def detect_platform(
    environ: Mapping[str, str] | None = None,
    *,
    colab_importable: Callable[[], bool] = _colab_importable,
    kaggle_workdir: Path = KAGGLE_WORKDIR,
) -> Platform:
    """Colab first (its runtime image could also carry Kaggle's variables in a custom container).

    Colab: ``google.colab`` importable, or ``COLAB_RELEASE_TAG`` set (also in Colab's terminal).
    Kaggle: ``KAGGLE_KERNEL_RUN_TYPE`` set (kernels and their ``!`` shells), or /kaggle/working.
    """
    environ = os.environ if environ is None else environ
    if environ.get("COLAB_RELEASE_TAG") or colab_importable():
        return Platform.COLAB
    if environ.get("KAGGLE_KERNEL_RUN_TYPE") or kaggle_workdir.is_dir():
        return Platform.KAGGLE
    return Platform.LINUX


def default_workdir(platform: Platform, user: str = "root") -> str:
    """The folder worth mounting or opening remotely: where the notebook's files live."""
    if platform is Platform.COLAB and COLAB_WORKDIR.is_dir():
        return str(COLAB_WORKDIR)
    if platform is Platform.KAGGLE and KAGGLE_WORKDIR.is_dir():
        return str(KAGGLE_WORKDIR)
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return "/"


def running_shell() -> Any:
    """The running IPython shell, if IPython is loaded at all (never imported just to look)."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython() if callable(get_ipython) else None


def in_notebook() -> bool:
    """Whether a notebook front end renders our output (an IPython *kernel*, not a terminal IPython)."""
    return getattr(running_shell(), "kernel", None) is not None


def notebook_display(bundle: dict[str, str], *, display_id: bool = False) -> Any:
    """IPython's display() of a raw MIME bundle; returns the handle when ``display_id`` (for updates)."""
    from IPython.display import display

    return display(bundle, raw=True, display_id=display_id)  # type: ignore[no-untyped-call]
