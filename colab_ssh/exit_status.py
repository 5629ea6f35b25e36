"""The command's name and its exit statuses, shared by the runtime's commands and the laptop's.

Standard library only (nothing at all): the laptop imports it without the runtime.
"""

from __future__ import annotations

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "PROGRAM"]

PROGRAM = "colab-ssh"  # the command, as messages name it
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
