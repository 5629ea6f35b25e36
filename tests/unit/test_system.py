"""The small environment password tools run with."""

from __future__ import annotations

from colab_ssh.system import tool_environment


def test_password_tools_run_with_a_small_environment(monkeypatch):
    monkeypatch.setenv("CS_HUGE", "x" * 200_000)
    environment = tool_environment()
    assert "CS_HUGE" not in environment and environment["LC_ALL"] == "C"
    assert set(environment) <= {"PATH", "LC_ALL", "TZ"}
