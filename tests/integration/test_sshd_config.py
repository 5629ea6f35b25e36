"""The installed sshd's version, as colab_ssh reads it (the rendered config is in tests/unit)."""

from __future__ import annotations

import subprocess

from colab_ssh.sshd import sshd_version


def test_the_installed_sshd_version_is_read():
    major, minor = sshd_version("/usr/sbin/sshd")
    printed = subprocess.run(["/usr/sbin/sshd", "-V"], capture_output=True, text=True).stderr
    assert f"OpenSSH_{major}.{minor}" in printed
