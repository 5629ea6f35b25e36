"""Tests with real sshd, ssh, sshfs, pyngrok and the stand-ins: root on Linux."""
