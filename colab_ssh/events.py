"""What a session reports, and who listens: sessions report, callers show.

The session (core.py) never prints. It emits an event when it comes up, when it finds sshd or the
tunnel stopped and brings it back, when the tunnel comes back at a new address, and when bringing
something back fails. Whoever shows them subscribes: start_ssh()'s notebook view (display.py)
shows the details unless quiet, the supervisor records the state in connection.json and writes
a line to its log, which the command line prints.

Events are delivered after the session's lock is released, so a subscriber may call ssh_status().
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .connection import Connection

__all__ = ["EventKind", "SessionEvent", "Subscriber", "publish", "subscribed"]

logger = logging.getLogger("colab_ssh")


class EventKind(enum.Enum):
    UP = "up"  # start_ssh() brought the session up (or, called again, back at a new address)
    RESTART = "restart"  # sshd or the tunnel stopped and is being brought back
    ADDRESS_CHANGED = "address changed"  # the tunnel came back at a new address
    ERROR = "error"  # bringing something back failed; the monitor tries again unless it gave up


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class SessionEvent:
    kind: EventKind
    connection: Connection  # the details as they are after the event
    detail: str = ""  # what stopped ("sshd", "the tunnel"), or the error's first line
    at: datetime = field(default_factory=_now)

    def describe(self) -> str:
        """One line for a log or a terminal; never the password (the connection's repr hides it too)."""
        where = f"{self.connection.host}:{self.connection.port}"
        if self.kind is EventKind.UP:
            return f"the SSH server is up at {where}"
        if self.kind is EventKind.RESTART:
            return f"{self.detail} stopped; bringing it back"
        if self.kind is EventKind.ADDRESS_CHANGED:
            return f"the tunnel came back at {where}"
        return f"could not bring it back: {self.detail}"


Subscriber = Callable[[SessionEvent], None]

_subscribers: list[Subscriber] = []
_subscribers_lock = threading.Lock()


@contextlib.contextmanager
def subscribed(subscriber: Subscriber) -> Iterator[None]:
    """While open, ``subscriber`` gets every session event of this process (the supervisor's use)."""
    with _subscribers_lock:
        _subscribers.append(subscriber)
    try:
        yield
    finally:
        with _subscribers_lock:
            _subscribers.remove(subscriber)


def publish(event: SessionEvent, *own: Subscriber | None) -> None:
    """To the session's own subscribers (start_ssh()'s view), then to every subscribed() one.

    A subscriber that fails is logged and skipped: showing an event must never stop the session
    from being kept up.
    """
    with _subscribers_lock:
        listeners = [*filter(None, own), *_subscribers]
    for listener in listeners:
        try:
            listener(event)
        except Exception:
            logger.exception("colab_ssh: a subscriber failed on the %s event", event.kind.value)
