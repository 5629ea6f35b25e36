"""The check that finds a secret anywhere in an exception chain can fail (the secrets tests that
start processes are in tests/integration/test_secrets.py)."""

from __future__ import annotations

from ..support.secrets import secrets_in_chain


def test_the_chain_walk_finds_a_secret_in_a_hidden_context():
    """The check itself can fail: a secret two links down, behind 'from None', is found."""
    try:
        try:
            raise ValueError("agent said: Your authtoken: tok_hidden_99")
        except ValueError:
            raise KeyError("wrapped") from None
    except KeyError as wrapped:
        outer = RuntimeError("outer")
        outer.__context__ = wrapped
        assert secrets_in_chain(outer, ["tok_hidden_99"]) == ["ValueError holds tok_hi..."]
        assert secrets_in_chain(outer, ["absent"]) == []
