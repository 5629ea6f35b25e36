"""Refusing every way Python starts a program, for the unit layer (tests/unit/conftest.py).

subprocess starts every child through Popen._execute_child (CPython Lib/subprocess.py); os.system,
the os.fork* and os.posix_spawn* calls and os.exec* are the other ways in.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import NoReturn

import pytest

OS_CALLS = ("system", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve")


class ProcessStarted(AssertionError):
    """Raised where a unit test would have started a process."""


def _refuse(what: str) -> Callable[..., NoReturn]:
    def refuse(*_args: object, **_kwargs: object) -> NoReturn:
        raise ProcessStarted(f"a unit test started a process ({what}): move it to tests/integration")

    return refuse


def refuse_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _refuse("subprocess"))
    for name in OS_CALLS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse(f"os.{name}"))
