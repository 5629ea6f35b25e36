"""Progress on slow steps (package install, agent download, Drive mount): what runs, how long it took.

A first run in a fresh runtime can take a minute (apt, the ngrok download, Drive's consent
pop-up); without a word the user cannot tell working from hung. A warm run has no slow step
and says one line. Steps run side by side (parallel_steps.py), so each says when it started
(seconds after the start) as well as how long it took: summing the durations would overstate
the wait. In a notebook the lines live in one output that is updated in place, each with a bar
on a shared time line; in a terminal or a log they are plain lines, one when a step starts and
one when it ends. Steps report from several threads: a lock keeps records and output in order.
"""

from __future__ import annotations

import contextlib
import html
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from .platform import in_notebook, notebook_display

__all__ = ["Progress", "StepRecord"]

DONE_MESSAGE = "SSH server up"


@dataclass
class StepRecord:
    """One slow step, ``start`` seconds after the Progress began; running while ``elapsed`` is None."""

    title: str
    start: float = 0.0
    elapsed: float | None = None
    failed: bool = False

    @property
    def end(self) -> float | None:
        return None if self.elapsed is None else self.start + self.elapsed

    def text(self) -> str:
        if self.elapsed is None:
            return f"{self.title} ... (at +{self.start:.1f} s)"
        outcome = "failed after" if self.failed else "done in"
        return f"{self.title}: {outcome} {self.elapsed:.1f} s (started at +{self.start:.1f} s)"

    def html(self, now: float) -> str:
        """A row: mark, title, times, and a bar from its start to its end (or ``now``) on a
        time line from 0 to ``now`` seconds, so steps that overlap show it."""
        if self.elapsed is None:
            mark, note = "&#9675;", f"from +{self.start:.1f} s &hellip;"  # an open circle: under way
        elif self.failed:
            mark, note = "&#10007;", f"failed after {self.elapsed:.1f} s, from +{self.start:.1f} s"
        else:
            mark, note = "&#10003;", f"{self.elapsed:.1f} s, from +{self.start:.1f} s"
        scale = max(now, self.end or 0.0, 1e-9)
        left = 100 * self.start / scale
        width = max(100 * ((self.end if self.end is not None else now) - self.start) / scale, 0.5)
        bar = (
            '<span class="cs-bar" style="display:inline-block;position:relative;width:8em;height:.6em;'
            'vertical-align:middle;background:rgba(127,127,127,.15)"><span style="position:absolute;'
            f"top:0;bottom:0;left:{left:.1f}%;width:{min(width, 100 - left):.1f}%;background:currentColor;"
            'opacity:.5"></span></span>'
        )
        return (
            f'<div class="cs-step"><span class="cs-mark">{mark}</span> {bar} {html.escape(self.title)}'
            f' <span style="opacity:.65">{note}</span></div>'
        )


class _View(Protocol):
    def show(self, lines: list[StepRecord], final: str | None, now: float) -> None: ...


class _TextView:
    """Terminals and logs: print each line once, as it happens (no cursor tricks in a log)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._printed: set[tuple[int, str]] = set()

    def show(self, lines: list[StepRecord], final: str | None, now: float) -> None:
        keyed = [(index, line.text()) for index, line in enumerate(lines)]
        for key in [*keyed, *([(len(lines), final)] if final else [])]:
            if key not in self._printed:
                self._printed.add(key)
                print(key[1], file=self._stream or sys.stdout, flush=True)


class _NotebookView:
    """One output area, updated in place (IPython's display_id), with a plain-text twin."""

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, lines: list[StepRecord], final: str | None, now: float) -> None:
        texts = [line.text() for line in lines] + ([final] if final else [])
        final_html = f'<div class="cs-step"><b>{html.escape(final)}</b></div>' if final else ""
        bundle = {
            "text/plain": "\n".join(texts),
            "text/html": (
                '<div class="colab-ssh-progress" style="font-family:ui-monospace,Menlo,Consolas,'
                'monospace;font-size:13px;line-height:1.5">'
                + "".join(line.html(now) for line in lines)
                + final_html
                + "</div>"
            ),
        }
        if self._handle is None:
            self._handle = notebook_display(bundle, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


class Progress:
    """Announces each slow step as it starts and says when it started and how long it took;
    silent when quiet. Steps may run on several threads at once.

    ``finish()`` ends it with one line, "SSH server up in 0.3 s": the only line of a warm run.
    """

    def __init__(
        self,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        notebook: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self.stream = stream
        self._clock = clock
        self.started = clock()
        self.records: list[StepRecord] = []
        self._lock = threading.Lock()  # records and output, shared by the steps' threads
        if notebook is None:
            notebook = stream is None and in_notebook()
        self._view: _View = _NotebookView() if notebook else _TextView(stream)

    @property
    def steps(self) -> list[tuple[str, float]]:
        """Finished steps and their durations in seconds."""
        with self._lock:
            return [(record.title, record.elapsed) for record in self.records if record.elapsed is not None]

    def _show(self, final: str | None = None) -> None:
        """Render (callers hold the lock): one thread at a time, so lines come out whole and in order."""
        if not self.quiet:
            self._view.show(self.records, final, self._clock() - self.started)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        with self._lock:
            record = StepRecord(title, start=self._clock() - self.started)
            self.records.append(record)
            self._show()
        try:
            yield
        except BaseException:
            record.failed = True
            raise
        finally:
            with self._lock:
                record.elapsed = self._clock() - self.started - record.start
                self._show()

    def finish(self, message: str = DONE_MESSAGE) -> None:
        """The closing line, with the time since this Progress was made (the start of start_ssh)."""
        with self._lock:
            self._show(f"{message} in {self._clock() - self.started:.1f} s")
