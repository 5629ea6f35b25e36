"""parallel_steps.Steps on plain threads (no processes): the first failure by time is raised as it
is and the others logged, running steps are stopped and waited for before any undo, undo runs newest
first, Ctrl-C stops and undoes everything (and a second one waits for the clean-up), and the
sequential seam runs each step when its result is asked for. The real start steps are in
tests/integration/test_parallel_start.py."""

from __future__ import annotations

import _thread
import logging
import threading
import time

import pytest

from colab_ssh import parallel_steps
from colab_ssh.errors import PackageInstallError, TunnelError
from colab_ssh.parallel_steps import Steps


class Journal:
    """What happened, in order, from any thread."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: str) -> None:
        with self._lock:
            self.events.append(event)


def slow(journal: Journal, name: str, seconds: float, *, fail: BaseException | None = None):
    def work() -> str:
        journal(f"{name} starts")
        time.sleep(seconds)
        journal(f"{name} ends")
        if fail is not None:
            raise fail
        return name

    return work


def test_steps_run_side_by_side_and_their_values_come_back():
    journal = Journal()
    with Steps(concurrent=True) as steps:
        first = steps.start(slow(journal, "a", 0.3))
        second = steps.start(slow(journal, "b", 0.3))
        assert steps.result(first) == "a" and steps.result(second) == "b"

    assert journal.events[:2] == ["a starts", "b starts"] or journal.events[:2] == ["b starts", "a starts"]


def test_the_first_failure_is_raised_as_it_is_and_the_later_one_is_logged(caplog):
    journal = Journal()
    install = PackageInstallError("Could not install openssh-server.", output_tail="E: dpkg error")
    download = TunnelError("Could not download the agent.", code="X1")
    undone: list[str] = []

    with pytest.raises(PackageInstallError) as raised, Steps(concurrent=True) as steps:
        late = steps.start(slow(journal, "download", 0.4, fail=download))
        steps.undo(undone.append, "download")
        early = steps.start(slow(journal, "install", 0.1, fail=install))
        steps.undo(undone.append, "install")
        steps.result(late)  # waits on the late one, but the early failure ends the wait

    assert raised.value is install and raised.value.output_tail == "E: dpkg error"
    assert early.error is install
    assert "download ends" in journal.events  # the running step was waited for...
    assert undone == ["install", "download"]  # ...before the undo, newest first
    assert "Also failed while starting: TunnelError: Could not download the agent." in caplog.text


def test_a_failure_in_the_callers_thread_stops_and_undoes_the_running_steps():
    journal = Journal()
    undone: list[str] = []
    refused = RuntimeError("consent refused")

    with pytest.raises(RuntimeError) as raised, Steps(concurrent=True) as steps:
        steps.start(slow(journal, "install", 0.3))
        steps.undo(lambda: undone.append(f"undo after {journal.events[-1]}"))
        steps.run_here(slow(journal, "drive", 0.05, fail=refused))

    assert raised.value is refused
    assert undone == ["undo after install ends"]


def test_a_running_step_is_asked_to_stop_when_another_fails():
    stop = threading.Event()
    cancelled: list[str] = []

    def until_cancelled() -> None:
        if not stop.wait(10):
            raise AssertionError("never cancelled")

    def cancel() -> None:
        cancelled.append("tunnel")
        stop.set()

    started = time.monotonic()
    with pytest.raises(ValueError, match="sshd"), Steps(concurrent=True) as steps:
        steps.start(until_cancelled, cancel=cancel)
        raise ValueError("sshd did not start")

    assert cancelled == ["tunnel"] and time.monotonic() - started < 5


def test_a_step_that_waits_on_a_failed_one_adds_no_second_error(caplog):
    journal = Journal()
    download = TunnelError("no agent")
    with pytest.raises(TunnelError) as raised, Steps(concurrent=True) as steps:
        agent = steps.start(slow(journal, "agent", 0.1, fail=download))
        opened = steps.start(lambda: steps.result(agent))
        steps.result(opened)

    assert raised.value is download
    assert "Also failed" not in caplog.text


def test_ctrl_c_while_waiting_stops_and_undoes_everything_then_raises_it():
    journal = Journal()
    undone: list[str] = []
    threading.Timer(0.2, _thread.interrupt_main).start()

    with pytest.raises(KeyboardInterrupt), Steps(concurrent=True) as steps:
        install = steps.start(slow(journal, "install", 0.6))
        steps.undo(lambda: undone.append(f"undo after {journal.events[-1]}"))
        steps.result(install)

    assert undone == ["undo after install ends"]  # apt is let finish, then undone
    assert [thread.name for thread in threading.enumerate() if thread.name == "colab-ssh-step"] == []


def test_a_second_ctrl_c_during_the_clean_up_waits_for_it(caplog):
    caplog.set_level(logging.WARNING)
    journal = Journal()
    undone: list[str] = []

    def interrupt_twice() -> None:
        _thread.interrupt_main()  # the first: stops the start
        time.sleep(0.2)
        _thread.interrupt_main()  # the second: while the running step is waited for

    threading.Timer(0.1, interrupt_twice).start()
    with pytest.raises(KeyboardInterrupt), Steps(concurrent=True) as steps:
        install = steps.start(slow(journal, "install", 0.8))
        steps.undo(lambda: undone.append(f"undo after {journal.events[-1]}"))
        steps.result(install)

    assert undone == ["undo after install ends"]


def test_leaving_normally_keeps_every_change_and_waits_for_unasked_steps():
    journal = Journal()
    undone: list[str] = []
    with Steps(concurrent=True) as steps:
        steps.start(slow(journal, "version", 0.2))
        steps.undo(undone.append, "x")

    assert journal.events == ["version starts", "version ends"] and undone == []


def test_an_unasked_step_that_fails_undoes_the_block():
    journal = Journal()
    undone: list[str] = []
    with pytest.raises(TunnelError), Steps(concurrent=True) as steps:
        steps.undo(undone.append, "config")
        steps.start(slow(journal, "agent", 0.1, fail=TunnelError("no agent")))

    assert undone == ["config"]


def test_the_sequential_seam_runs_each_step_when_asked_in_the_callers_thread(monkeypatch):
    monkeypatch.setattr(parallel_steps, "CONCURRENT", False)
    journal = Journal()
    threads: list[str] = []

    def record(name: str):
        def work() -> str:
            threads.append(threading.current_thread().name)
            journal(name)
            return name

        return work

    with Steps() as steps:
        install = steps.start(record("install"))
        agent = steps.start(record("agent"))
        steps.run_here(record("drive"))
        assert steps.result(install) == "install"
        assert steps.result(agent) == "agent"

    assert journal.events == ["drive", "install", "agent"]  # the order before steps ran side by side
    assert set(threads) == {threading.current_thread().name}


def test_in_sequential_mode_a_failed_step_keeps_the_later_ones_from_running(monkeypatch):
    monkeypatch.setattr(parallel_steps, "CONCURRENT", False)
    journal = Journal()
    with pytest.raises(TunnelError), Steps() as steps:
        failing = steps.start(slow(journal, "install", 0, fail=TunnelError("x")))
        later = steps.start(slow(journal, "agent", 0))
        steps.result(failing)
        steps.result(later)

    assert journal.events == ["install starts", "install ends"] and not later.started


def test_an_error_of_the_block_itself_wins_over_a_step_that_fails_later(caplog):
    journal = Journal()
    later = TunnelError("the agent failed too")
    with pytest.raises(ValueError, match="sshd -t"), Steps(concurrent=True) as steps:
        steps.start(slow(journal, "agent", 0.3, fail=later))
        raise ValueError("sshd -t rejected the config")

    assert "Also failed while starting: TunnelError: the agent failed too" in caplog.text


def test_systemexit_in_flight_goes_on_though_a_step_failed():
    journal = Journal()
    with pytest.raises(SystemExit), Steps(concurrent=True) as steps:
        failing = steps.start(slow(journal, "agent", 0, fail=TunnelError("no agent")))
        while not failing.done:
            time.sleep(0.01)
        raise SystemExit(1)


def test_a_steps_own_undo_runs_only_if_it_succeeded_even_when_ctrl_c_comes_at_once():
    """Registered before its thread starts: a Ctrl-C right after start() still undoes the step
    (once it has finished); a step that failed cleaned up after itself and is not undone."""
    journal = Journal()
    undone: list[str] = []
    with pytest.raises(KeyboardInterrupt), Steps(concurrent=True) as steps:
        steps.start(slow(journal, "prepare", 0.2), undo=lambda: undone.append(f"after {journal.events[-1]}"))
        steps.start(slow(journal, "open", 0.1, fail=TunnelError("x")), undo=lambda: undone.append("open"))
        raise KeyboardInterrupt

    assert undone == ["after prepare ends"]
