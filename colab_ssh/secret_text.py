"""A string that keeps its value out of reprs, so a traceback printed with its locals shows no secret."""

from __future__ import annotations

from typing import overload

__all__ = ["SecretText", "conceal", "reveal"]


class SecretText(str):
    """A password or token: a ``str`` for every use (chpasswd's stdin, a config file), but its repr hides it.

    ``traceback.TracebackException(capture_locals=True)``, pytest's ``--showlocals``, IPython's
    verbose tracebacks and a dataclass's repr all show values through ``repr()``.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<hidden>'"


@overload
def conceal(value: str) -> SecretText: ...
@overload
def conceal(value: None) -> None: ...
def conceal(value: object) -> object:
    """Wrap a string; anything else (None, or a wrong type for the checks to refuse) is returned as is."""
    return SecretText(value) if isinstance(value, str) and not isinstance(value, SecretText) else value


def reveal(value: str | None) -> str | None:
    """The plain string again, for what the caller gets back (a Connection's password they may print)."""
    return None if value is None else str.__str__(value)
