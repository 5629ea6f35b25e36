"""Sessions report, callers show: the event lines, their delivery, and start_ssh()'s notebook view."""

from __future__ import annotations

import logging

import pytest

from colab_ssh import display as display_module
from colab_ssh.connection import Connection
from colab_ssh.events import EventKind, SessionEvent, publish, subscribed

PASSWORD = "pw-never-in-a-line-1"
FIRST = Connection(
    host="0.tcp.ngrok.io", port=12345, user="root", password=PASSWORD, local_port=22, tunnel="ngrok"
)
MOVED = Connection(
    host="4.tcp.ngrok.io", port=23456, user="root", password=PASSWORD, local_port=22, tunnel="ngrok"
)


def test_each_kind_reads_as_one_line_without_the_password():
    lines = {
        kind: SessionEvent(kind, MOVED, detail).describe()
        for kind, detail in [
            (EventKind.UP, ""),
            (EventKind.RESTART, "the tunnel"),
            (EventKind.ADDRESS_CHANGED, ""),
            (EventKind.ERROR, "ngrok refused the tunnel"),
        ]
    }
    assert lines == {
        EventKind.UP: "the SSH server is up at 4.tcp.ngrok.io:23456",
        EventKind.RESTART: "the tunnel stopped; bringing it back",
        EventKind.ADDRESS_CHANGED: "the tunnel came back at 4.tcp.ngrok.io:23456",
        EventKind.ERROR: "could not bring it back: ngrok refused the tunnel",
    }
    assert all("\n" not in line and PASSWORD not in line for line in lines.values())
    assert PASSWORD not in repr(SessionEvent(EventKind.UP, MOVED))


def test_the_sessions_own_subscriber_first_then_every_subscribed_one_a_failing_one_skipped(caplog):
    got: list[tuple[str, EventKind]] = []
    event = SessionEvent(EventKind.ADDRESS_CHANGED, MOVED)

    def broken(_event: SessionEvent) -> None:
        raise RuntimeError("a subscriber's own bug")

    with (
        subscribed(broken),
        subscribed(lambda e: got.append(("supervisor", e.kind))),
        caplog.at_level(logging.ERROR, logger="colab_ssh"),
    ):
        publish(event, lambda e: got.append(("view", e.kind)), None)
    assert got == [("view", EventKind.ADDRESS_CHANGED), ("supervisor", EventKind.ADDRESS_CHANGED)]
    assert "a subscriber failed on the address changed event" in caplog.text

    publish(event)  # after the blocks: nobody listens any more
    assert len(got) == 2


def test_subscribed_ends_with_its_block_even_when_it_raises():
    got: list[SessionEvent] = []
    with pytest.raises(KeyError), subscribed(got.append):
        raise KeyError("the block failed")
    publish(SessionEvent(EventKind.UP, FIRST))
    assert got == []


@pytest.mark.parametrize("quiet", [False, True])
def test_the_notebook_view_shows_up_and_a_new_address_unless_quiet(quiet, monkeypatch, caplog):
    shown: list[Connection] = []
    changed: list[Connection] = []
    monkeypatch.setattr(display_module, "show_connection", shown.append)
    view = display_module.notebook_view(quiet=quiet, on_change=changed.append)

    with caplog.at_level(logging.WARNING, logger="colab_ssh"):
        view(SessionEvent(EventKind.UP, FIRST))
        view(SessionEvent(EventKind.RESTART, FIRST, "the tunnel"))
        view(SessionEvent(EventKind.ERROR, FIRST, "no answer"))
        view(SessionEvent(EventKind.ADDRESS_CHANGED, MOVED))

    assert shown == ([] if quiet else [FIRST, MOVED])
    assert changed == [MOVED]  # on_change also when quiet: it is the caller's own
    assert caplog.messages == [f"The SSH tunnel was reopened; connect with: {MOVED.ssh_command}"]


def test_the_notebook_view_without_on_change(monkeypatch):
    shown: list[Connection] = []
    monkeypatch.setattr(display_module, "show_connection", shown.append)
    display_module.notebook_view(quiet=False, on_change=None)(SessionEvent(EventKind.ADDRESS_CHANGED, MOVED))
    assert shown == [MOVED]
