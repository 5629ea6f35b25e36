"""Progress on slow steps (package install, agent download, Drive mount): what runs, how long it took."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Announces each slow step as it starts and says how long it took; silent when quiet."""

    def __init__(self, *, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream
        self.steps: list[tuple[str, float]] = []

    def _write(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream or sys.stdout, flush=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self._write(f"{title} ...")
        started = time.monotonic()
        yield
        elapsed = time.monotonic() - started
        self.steps.append((title, elapsed))
        self._write(f"{title}: done in {elapsed:.1f} s")
