"""Running start steps side by side, and undoing all of them when one fails.

A first start in a fresh runtime has several slow steps that do not need each other: apt
installing openssh-server, downloading the tunnel's agent, the user clicking through Drive's
consent, the agent connecting to its cloud while sshd starts. ``Steps`` runs them on threads
(the slow work is subprocesses and I/O) and keeps what a sequential start promised:

- a step's error reaches the caller as the very exception it raised (its class, its evidence);
  when two fail, the first to fail is raised and the other is logged;
- on any failure, Ctrl-C included, nothing is left running: a step waiting on another's result
  stops there, running ones are asked to stop (their ``cancel``, if they have one) and waited
  for (apt cannot be interrupted safely mid-install, so it is waited for), and only then is
  every registered undo run, newest first, as an ``ExitStack`` would (a step's own undo only if
  it succeeded: one that fails cleans up after itself). A second Ctrl-C during that clean-up is
  held back until it is done, then raised.

``CONCURRENT`` is the benchmark's seam (benchmarks compare against the old order in the same
run): set it to False before ``start_ssh()`` and every step runs in the caller's thread, at the
moment its result is first asked for, which is the order the start steps had before they ran
side by side.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar

from .processes import interrupts_held

__all__ = ["CONCURRENT", "Step", "Steps"]

logger = logging.getLogger("colab_ssh")

# Benchmark seam: False runs every step in the caller's thread, one after another (see above).
CONCURRENT = True

T = TypeVar("T")


class Step(Generic[T]):
    """One step handed to :class:`Steps`: its work, and once it ran, its value or its error."""

    def __init__(self, work: Callable[[], T], cancel: Callable[[], None] | None) -> None:
        self._work = work
        self.cancel = cancel
        self.thread: threading.Thread | None = None  # running beside the caller (concurrent mode)
        self.started = False  # run() began: what it changes may need undoing
        self.done = False
        self._value: T | None = None
        self.error: BaseException | None = None
        self.failed_at: float | None = None  # time.monotonic() when it raised

    @classmethod
    def ready(cls, value: T) -> Step[T]:
        """A step with nothing to do: its value is known already (it changed nothing)."""
        step = cls(lambda: value, None)
        step._value, step.done = value, True
        return step

    def run(self) -> T:
        """Do the work here and now (its own thread, or the caller's in sequential mode)."""
        self.started = True
        try:
            self._value = self._work()
        except BaseException as error:
            self.error, self.failed_at = error, time.monotonic()
            raise
        finally:
            self.done = True
        return self._value

    def outcome(self) -> T:
        """The value of a finished step; its own exception, re-raised, if it failed."""
        if self.error is not None:
            raise self.error
        return self._value  # type: ignore[return-value]  # T, set by run()


class Steps:
    """Start steps beside the caller; on a failure, stop them all and undo what they did.

    Use it as a context manager around the whole sequence. ``start()`` hands a step to a
    thread of its own (or defers it, in sequential mode), ``result()`` waits for one (and raises
    as soon as any step has failed), ``run_here()`` runs one in the caller's thread (what must
    stay there: Drive's consent talks to the notebook, and Ctrl-C interrupts the caller's
    thread), ``undo()`` registers how to put a change back. Leaving the block normally keeps
    every change. Plain threads rather than an executor: a start runs three steps at most, and
    concurrent.futures would add to the import time of every start_ssh().
    """

    def __init__(self, *, concurrent: bool | None = None) -> None:
        self.concurrent = CONCURRENT if concurrent is None else concurrent
        self._steps: list[Step[Any]] = []
        self._here_failures: list[tuple[float, BaseException]] = []
        self._undo = contextlib.ExitStack()
        self._changed = threading.Condition()  # notified whenever a step's thread ends

    def __enter__(self) -> Steps:
        return self

    # --- handing out work ---------------------------------------------------------------------

    def start(
        self,
        work: Callable[[], T],
        *,
        cancel: Callable[[], None] | None = None,
        undo: Callable[[], object] | None = None,
    ) -> Step[T]:
        """Run ``work`` on a thread of its own; ``cancel`` (called from the caller's thread while it
        runs) asks it to end early when another step failed; ``undo`` puts back what it did if it
        succeeded (a step that fails cleans up after itself). Sequential mode: run at result()."""
        step: Step[T] = Step(work, cancel)
        self._steps.append(step)
        if undo is not None:  # registered before the thread exists: Ctrl-C may come at any moment
            self._undo.callback(_undo_if_done, step, undo)
        if self.concurrent:
            # The caller's context variables go along (a notebook kernel keeps which cell is
            # running in them, and progress shown from the thread belongs to that cell).
            context = contextvars.copy_context()
            step.thread = threading.Thread(
                target=self._run_step, args=(step, context), name="colab-ssh-step", daemon=True
            )
            step.thread.start()
        return step

    def _run_step(self, step: Step[Any], context: contextvars.Context) -> None:
        try:
            context.run(step.run)
        except BaseException:  # noqa: S110 - kept in the step, raised in the caller by result()
            pass
        finally:
            with self._changed:
                self._changed.notify_all()

    def result(self, step: Step[T]) -> T:
        """``step``'s value, waiting for it; the first step's error as soon as any step failed."""
        if not self.concurrent:
            if not step.done:
                step.run()
            return step.outcome()
        with self._changed:
            while True:
                self._raise_first_failure()
                if step.done:
                    return step.outcome()
                self._changed.wait()  # Ctrl-C interrupts this wait in the main thread

    def run_here(self, work: Callable[[], T]) -> T:
        """Run ``work`` in the caller's thread now; its failure takes part in "first to fail"."""
        try:
            return work()
        except Exception as error:
            self._here_failures.append((time.monotonic(), error))
            raise

    def undo(self, callback: Callable[..., object], /, *args: Any, **kwargs: Any) -> None:
        """Register how to put back a change; run (newest first) only if the block fails."""
        self._undo.callback(callback, *args, **kwargs)

    # --- the end ------------------------------------------------------------------------------

    def _failures(self) -> list[tuple[float, BaseException]]:
        """Every failure so far, earliest first, each exception once (a step that waited on
        another may re-raise that one's error)."""
        found = list(self._here_failures)
        found += [
            (step.failed_at, step.error)
            for step in self._steps
            if step.error is not None and step.failed_at is not None
        ]
        seen: set[int] = set()
        unique = []
        for when, error in sorted(found, key=lambda item: item[0]):
            if id(error) not in seen:
                seen.add(id(error))
                unique.append((when, error))
        return unique

    def _raise_first_failure(self) -> None:
        failures = self._failures()
        if failures:
            raise failures[0][1]

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        in_flight, failed_at = exc, time.monotonic()
        if exc is None:
            try:
                for step in self._steps:  # a step nobody asked for still has to finish (or fail)
                    self.result(step)
            except BaseException as failure:
                exc = failure
            else:
                self._undo.pop_all()
                return False
        with interrupts_held() as interrupted:
            if isinstance(exc, Exception) and all(error is not exc for _when, error in self._failures()):
                self._here_failures.append((failed_at, exc))  # raised by this block itself
            self._stop_running()
            failures = self._failures()
            # Ctrl-C (or SystemExit) in flight is what the caller asked for: it goes on; else the
            # first step to fail is the error, whatever failed after it.
            first = exc if not isinstance(exc, Exception) or not failures else failures[0][1]
            for _when, error in failures:
                if error is not first:
                    logger.warning("Also failed while starting: %s", _one_line(error))
            # The undo callbacks, newest first, as an ExitStack runs them.
            self._undo.__exit__(type(first), first, first.__traceback__)
        if interrupted:
            raise KeyboardInterrupt
        if first is in_flight:
            return False  # the exception in flight goes on unchanged
        raise first

    def _stop_running(self) -> None:
        """Ask running steps to stop (their ``cancel``), then wait for every one of them."""
        running = [step for step in self._steps if step.thread is not None and not step.done]
        for step in running:
            if step.cancel is not None:
                try:
                    step.cancel()
                except Exception as error:  # the undo that follows cleans up after it
                    logger.debug("Cancelling a start step failed: %s", _one_line(error))
        for step in running:
            assert step.thread is not None  # noqa: S101 - running steps have one
            step.thread.join()


def _undo_if_done(step: Step[Any], undo: Callable[[], object]) -> None:
    if step.started and step.done and step.error is None:
        undo()


def _one_line(error: BaseException) -> str:
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"
