"""Owners of the start lock are named for what they are (the races themselves are in tests/integration)."""

from __future__ import annotations

import sys

from colab_ssh.ownership import describe


def test_owners_are_named_for_what_they_are():
    kernel = ["/usr/bin/python3", "-m", "colab_kernel_launcher", "-f", "/root/.local/share/jupyter/k.json"]
    jupyter = ["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "/tmp/kernel-1.json"]
    supervisor = [sys.executable, "-m", "colab_ssh", "serve", "--tunnel", "none", "--state-dir", "/x"]
    assert describe(kernel) == describe(jupyter) == "a notebook kernel"
    assert describe(supervisor) == "the colab-ssh supervisor"
    assert describe(["/usr/local/bin/colab-ssh", "start", "--foreground"]) == "`colab-ssh start --foreground`"
    assert describe(["python3", "train.py"]).startswith("a process running 'python3 train.py'")
