"""Progress on slow steps (package install, agent download, Drive mount): what runs, how long it took.

A first run in a fresh runtime can take a minute (apt, the ngrok download, Drive's consent
pop-up); without a word the user cannot tell working from hung. A warm run has no slow step
and says one line. In a notebook the lines live in one output that is updated in place; in a
terminal or a log they are plain lines, one when a step starts and one when it ends.
"""

from __future__ import annotations

import contextlib
import html
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from .platform import in_notebook, notebook_display

__all__ = ["Progress", "StepRecord"]

DONE_MESSAGE = "SSH server up"


@dataclass
class StepRecord:
    """One slow step: running while ``elapsed`` is None."""

    title: str
    elapsed: float | None = None
    failed: bool = False

    def text(self) -> str:
        if self.elapsed is None:
            return f"{self.title} ..."
        outcome = "failed after" if self.failed else "done in"
        return f"{self.title}: {outcome} {self.elapsed:.1f} s"

    def html(self) -> str:
        if self.elapsed is None:
            mark, note = "&#9675;", "&hellip;"  # an open circle: under way
        elif self.failed:
            mark, note = "&#10007;", f"failed after {self.elapsed:.1f} s"
        else:
            mark, note = "&#10003;", f"{self.elapsed:.1f} s"
        return (
            f'<div class="cs-step"><span class="cs-mark">{mark}</span> {html.escape(self.title)}'
            f' <span style="opacity:.65">{note}</span></div>'
        )


class _View(Protocol):
    def show(self, lines: list[StepRecord], final: str | None) -> None: ...


class _TextView:
    """Terminals and logs: print each line once, as it happens (no cursor tricks in a log)."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._printed: set[tuple[int, str]] = set()

    def show(self, lines: list[StepRecord], final: str | None) -> None:
        keyed = [(index, line.text()) for index, line in enumerate(lines)]
        for key in [*keyed, *([(len(lines), final)] if final else [])]:
            if key not in self._printed:
                self._printed.add(key)
                print(key[1], file=self._stream or sys.stdout, flush=True)


class _NotebookView:
    """One output area, updated in place (IPython's display_id), with a plain-text twin."""

    def __init__(self) -> None:
        self._handle: Any = None

    def show(self, lines: list[StepRecord], final: str | None) -> None:
        texts = [line.text() for line in lines] + ([final] if final else [])
        final_html = f'<div class="cs-step"><b>{html.escape(final)}</b></div>' if final else ""
        bundle = {
            "text/plain": "\n".join(texts),
            "text/html": (
                '<div class="colab-ssh-progress" style="font-family:ui-monospace,Menlo,Consolas,'
                'monospace;font-size:13px;line-height:1.5">'
                + "".join(line.html() for line in lines)
                + final_html
                + "</div>"
            ),
        }
        if self._handle is None:
            self._handle = notebook_display(bundle, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


class Progress:
    """Announces each slow step as it starts and says how long it took; silent when quiet.

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
        if notebook is None:
            notebook = stream is None and in_notebook()
        self._view: _View = _NotebookView() if notebook else _TextView(stream)

    @property
    def steps(self) -> list[tuple[str, float]]:
        """Finished steps and their durations in seconds."""
        return [(record.title, record.elapsed) for record in self.records if record.elapsed is not None]

    def _show(self, final: str | None = None) -> None:
        if not self.quiet:
            self._view.show(self.records, final)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        record = StepRecord(title)
        self.records.append(record)
        self._show()
        started = self._clock()
        try:
            yield
        except BaseException:
            record.failed = True
            raise
        finally:
            record.elapsed = self._clock() - started
            self._show()

    def finish(self, message: str = DONE_MESSAGE) -> None:
        """The closing line, with the time since this Progress was made (the start of start_ssh)."""
        self._show(f"{message} in {self._clock() - self.started:.1f} s")
