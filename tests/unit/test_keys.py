"""authorized_keys merging, as text (key logins with the real client are in tests/integration)."""

from __future__ import annotations

from colab_ssh.keys import PublicKey, merge_authorized_keys


def test_merge_is_idempotent_and_keeps_lines_with_options():
    key = PublicKey(
        "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIFMivxONclMHUx+G5Wjm/C0crwJB1VJ/w9EqolwGOeE1", "me"
    )
    existing = f'from="10.0.0.1" {key.kind} {key.blob} old-comment\n'
    assert merge_authorized_keys(existing, [key]) == existing
    once = merge_authorized_keys("", [key])
    assert merge_authorized_keys(once, [key]) == once == key.line + "\n"
