"""Where a secret hides in an exception chain (a traceback's reader sees every link)."""

from __future__ import annotations


def secrets_in_chain(error: BaseException, secrets: list[str]) -> list[str]:
    """Where in the exception chain a secret appears: message, repr, args, attributes, notes."""
    found: list[str] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts = [str(current), repr(current), *map(repr, current.args), *map(repr, vars(current).values())]
        texts += getattr(current, "__notes__", [])
        for secret in secrets:
            if any(secret in text for text in texts):
                found.append(f"{type(current).__name__} holds {secret[:6]}...")
        pending += [current.__cause__, current.__context__]
    return found
