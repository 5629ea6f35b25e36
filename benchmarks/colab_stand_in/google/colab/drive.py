"""google.colab.drive.mount, as the user experiences it: it returns once they have clicked through.

Real Colab sends a consent request to the notebook's front end and waits for the user's answer
(googlecolab/colabtools google/colab/drive.py:133-143), then starts Drive's file system. Here
that whole wait is a fixed delay, BENCH_DRIVE_CONSENT_S seconds, and nothing is mounted: nothing
in start_ssh() reads the mounted folder.
"""

from __future__ import annotations

import os
import time


def mount(
    mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False
) -> None:
    del mountpoint, force_remount, timeout_ms, readonly
    time.sleep(float(os.environ.get("BENCH_DRIVE_CONSENT_S", "0")))
