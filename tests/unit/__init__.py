"""Tests that need no root and start no process: any user, any laptop, no sshd."""
