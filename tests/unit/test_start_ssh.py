"""start_ssh() refuses other systems and non-root before touching anything (the check itself;
start_ssh() end to end is in tests/integration)."""

from __future__ import annotations

import pytest

from colab_ssh import (
    UnsupportedSystemError,
)
from colab_ssh.system import check_system


def test_refuses_other_systems_and_non_root_before_touching_anything():
    with pytest.raises(UnsupportedSystemError, match="darwin"):
        check_system(platform="darwin")
    with pytest.raises(UnsupportedSystemError, match="needs root"):
        check_system(platform="linux", euid=lambda: 1000)
    check_system(platform="linux", euid=lambda: 0)
