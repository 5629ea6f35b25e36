"""The unit layer: no root, no processes, no sshd. Every way Python starts a program fails the test
that tries, so a test that needs a real process (sshd, ssh, ssh-keygen, a stand-in) cannot slip in
here: it belongs in tests/integration."""

from __future__ import annotations

import pytest

from ..support.no_processes import refuse_processes


@pytest.fixture(autouse=True)
def no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_processes(monkeypatch)
