"""The interpreter the benchmarks time: a new virtual environment with this checkout pip-installed.

A global environment with many packages makes every Python start slower (its site-packages and
.pth files are read at start-up), which inflates the floor and flatters the ratio to it. So by
default the benchmarks create ``python -m venv`` in their scratch folder and ``pip install`` this
checkout into it, as a user's ``pip install colab-ssh-host`` would: not editable, its bytecode
compiled by pip, its dependencies from the package index (or pip's cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .support import REPO

__all__ = ["SOURCES", "clean_venv", "venv_env"]

# What the distribution is built from (pyproject.toml names README.md as its readme).
SOURCES = ("pyproject.toml", "README.md", "colab_ssh")


def clean_venv(folder: Path, base_python: str) -> str:
    """A new venv at ``folder`` holding colab-ssh-host built from this checkout; its python's path.

    The sources are copied first, so that pip's build leaves nothing in the checkout.
    """
    source = folder.parent / f"{folder.name}-source"
    source.mkdir(parents=True)
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(REPO / name, source / name)
    subprocess.run([base_python, "-m", "venv", str(folder)], check=True, capture_output=True, text=True)
    python = folder / "bin" / "python"
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(source)],
        capture_output=True,
        text=True,
        check=False,
        env={key: value for key, value in os.environ.items() if not key.startswith("PYTHON")},
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip could not install colab-ssh-host into {folder}: {result.stderr[-2000:]}")
    shutil.rmtree(source)
    return str(python)


def venv_env(python: str, **extra: str) -> dict[str, str]:
    """The environment of every timed Python in the venv: nothing that points it elsewhere.

    No PYTHONPATH (the installed package, not the checkout), no bytecode cache prefix (pip
    compiled the package's bytecode next to it), and its ``bin`` first on PATH, so that
    ``python3`` (the stand-in agent's shebang) is the venv's interpreter too.
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["PATH"] = f"{Path(python).parent}:{env.get('PATH', '')}"
    env.update(extra)
    return env
