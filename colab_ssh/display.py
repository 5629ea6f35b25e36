"""Showing the connection details to the user."""

from __future__ import annotations

from .connection import Connection, render_details

__all__ = ["show_connection"]


def show_connection(connection: Connection) -> None:
    print(render_details(connection), flush=True)
