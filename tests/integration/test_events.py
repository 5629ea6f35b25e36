"""Sessions report, callers show: the events a session emits while real processes are killed, who gets
them (a subscriber, start_ssh()'s on_change, the supervisor's log), and that a subscriber may ask
ssh_status() (events are delivered outside the session's lock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from colab_ssh import ssh_status, start_ssh, stop_ssh
from colab_ssh.events import EventKind, SessionEvent, subscribed

from ..support.stand_ins import NgrokCloud
from .test_cli import cli, local
from .test_monitor import pids_named
from .test_races import sshd_listeners


def wait_for(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def test_the_session_reports_what_it_brings_back(test_user, port, state_dir, ngrok_cloud: NgrokCloud):
    events: list[SessionEvent] = []
    changed = []
    with subscribed(events.append):
        first = start_ssh(
            tunnel="ngrok",
            authtoken=ngrok_cloud.add_account("tok_events_1"),
            port=port,
            user=test_user,
            state_dir=state_dir,
            quiet=True,
            monitor_interval=0.2,
            on_change=changed.append,
        )
        assert [(event.kind, event.connection) for event in events] == [(EventKind.UP, first)]

        (agent,) = pids_named(state_dir, b"ngrok")
        os.kill(agent, signal.SIGKILL)
        wait_for(lambda: EventKind.ADDRESS_CHANGED in [event.kind for event in events])
        now = ssh_status().connection
        assert [(event.kind, event.detail) for event in events[1:]] == [
            (EventKind.RESTART, "the tunnel"),
            (EventKind.ADDRESS_CHANGED, ""),
        ]
        assert events[-1].connection == now and now is not None and now.port != first.port
        assert changed == [now]  # on_change is start_ssh()'s view of the same event
        assert events[-1].describe() == f"the tunnel came back at {now.host}:{now.port}"

        (listener,) = sshd_listeners(state_dir)
        os.kill(listener, signal.SIGKILL)
        wait_for(lambda: len(events) == 4)
        assert (events[3].kind, events[3].detail) == (EventKind.RESTART, "sshd")
        assert events[3].describe() == "sshd stopped; bringing it back"
        wait_for(lambda: ssh_status().sshd_restarts == 1)
        assert changed == [now]  # the address stayed: nothing new to show
    stop_ssh(state_dir=state_dir)


ON_CHANGE_ASKS_STATUS = """
import sys, time
from colab_ssh import ssh_status, start_ssh, stop_ssh
port, user, state_dir, token = sys.argv[1:]
seen = []
start_ssh(tunnel="ngrok", authtoken=token, port=int(port), user=user, state_dir=state_dir, quiet=True,
          monitor_interval=0.2, on_change=lambda connection: seen.append(ssh_status().tunnel_restarts))
print("up", flush=True)
deadline = time.monotonic() + 20
while not seen and time.monotonic() < deadline:
    time.sleep(0.05)
print("seen", seen, flush=True)
stop_ssh()
"""


def test_on_change_may_ask_ssh_status(test_user, port, state_dir: Path, ngrok_cloud: NgrokCloud, tmp_path):
    """Found here: the monitor called on_change while holding the session's lock, so an on_change
    that asked ssh_status() (as the supervisor's did) hung the monitor, and every later call."""
    token = ngrok_cloud.add_account("tok_events_2")
    script = tmp_path / "caller.py"  # a file: its text on the command line would match pids_named()
    script.write_text(ON_CHANGE_ASKS_STATUS)
    caller = subprocess.Popen(
        [sys.executable, str(script), str(port), test_user, str(state_dir), token],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert caller.stdout is not None and caller.stdout.readline() == "up\n"
        (agent,) = pids_named(state_dir, b"ngrok")
        os.kill(agent, signal.SIGKILL)
        output, _ = caller.communicate(timeout=60)
        assert output == "seen [1]\n"
        assert caller.returncode == 0
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
        stop_ssh(state_dir=state_dir)  # what a hung caller left


def test_the_supervisor_logs_the_events_and_its_monitor_brings_sshd_back(test_user, port, state_dir: Path):
    """One loop brings things back (start_ssh()'s monitor, every 5 s), also with a health check
    interval far longer than the wait here; the supervisor writes the event to its log."""
    started = cli("start", *local(test_user, port, state_dir), "--check-interval", "600")
    assert started.returncode == 0, started.stderr
    try:
        (listener,) = sshd_listeners(state_dir)
        os.kill(listener, signal.SIGKILL)
        wait_for(lambda: sshd_listeners(state_dir) not in ([], [listener]))
        log = state_dir / "supervisor.log"
        wait_for(lambda: "sshd stopped; bringing it back" in log.read_text())
    finally:
        assert cli("stop", "--state-dir", state_dir).returncode == 0
