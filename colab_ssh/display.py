"""Showing the connection details: the HTML card (card.py) with its plain-text twin in notebooks,
the plain-text block elsewhere, nothing while a caller suppresses it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .card import render_html, vscode_url
from .connection import Connection, render_details
from .platform import in_notebook, notebook_display

__all__ = ["connection_display_suppressed", "render_html", "render_text", "show_connection", "vscode_url"]

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
