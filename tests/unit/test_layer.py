"""The unit layer's own rules hold: no process can be started from it, and nothing here needs root."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ..support.no_processes import ProcessStarted


def test_starting_a_process_fails_the_test():
    with pytest.raises(ProcessStarted, match="tests/integration"):
        subprocess.run(["true"], check=False)
    with pytest.raises(ProcessStarted, match="tests/integration"):
        subprocess.Popen([sys.executable, "-c", "pass"])
    with pytest.raises(ProcessStarted, match=r"os\.system"):
        os.system("true")  # noqa: S605
    with pytest.raises(ProcessStarted, match=r"os\.fork"):
        os.fork()
