"""Showing the connection details: the HTML card (card.py) with its plain-text twin in notebooks,
the plain-text block elsewhere, nothing while a caller suppresses it."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from .card import render_html, vscode_url
from .connection import Connection, render_details
from .events import EventKind, SessionEvent, Subscriber
from .platform import in_notebook, notebook_display

__all__ = [
    "connection_display_suppressed",
    "notebook_view",
    "render_html",
    "render_text",
    "show_connection",
    "vscode_url",
]

logger = logging.getLogger("colab_ssh")

render_text = render_details

_suppressed = 0  # how many connection_display_suppressed() blocks are open, in any thread
_suppressed_lock = threading.Lock()


@contextlib.contextmanager
def connection_display_suppressed() -> Iterator[None]:
    """While it is open, show_connection() shows nothing, in every thread; progress lines still appear.

    The command line's background supervisor uses it: its output goes to a log file, which
    must not hold the password, while its progress lines are relayed to the user's terminal.
    Process-wide on purpose: start_ssh()'s monitor thread announces a new address with
    show_connection() too.
    """
    global _suppressed
    with _suppressed_lock:
        _suppressed += 1
    try:
        yield
    finally:
        with _suppressed_lock:
            _suppressed -= 1


def show_connection(connection: Connection) -> None:
    """The card with a plain-text twin in a notebook; the text block in a terminal or log."""
    if _suppressed:
        return
    text = render_details(connection)
    if in_notebook():
        notebook_display({"text/html": render_html(connection), "text/plain": text})
    else:
        print(text, flush=True)


def notebook_view(*, quiet: bool, on_change: Callable[[Connection], None] | None) -> Subscriber:
    """start_ssh()'s subscriber: the details when the session is up or comes back at a new address
    (unless quiet), a log line and ``on_change`` for the new address. Restarts and failures are
    the monitor's log lines, as before."""

    def show(event: SessionEvent) -> None:
        if event.kind is EventKind.UP:
            if not quiet:
                show_connection(event.connection)
        elif event.kind is EventKind.ADDRESS_CHANGED:
            logger.warning("The SSH tunnel was reopened; connect with: %s", event.connection.ssh_command)
            if not quiet:
                show_connection(event.connection)
            if on_change is not None:
                on_change(event.connection)

    return show
