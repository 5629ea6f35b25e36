"""safe_files' check of path text: a path that cannot be one sshd config token is refused (the
checks that need root and a hostile account are in tests/integration/test_safe_files.py)."""

from __future__ import annotations

import pytest

from colab_ssh.errors import UnsafePathError
from colab_ssh.safe_files import check_path_text


@pytest.mark.parametrize(
    "text", ["/var/lib/a b", "/var/lib/x\nAuthorizedKeysFile /tmp/k", "/a\tb", "/a\x00b"]
)
def test_paths_that_cannot_be_one_config_token_are_refused(text: str) -> None:
    with pytest.raises(UnsafePathError, match=r"space|control character"):
        check_path_text(text, "state_dir")
