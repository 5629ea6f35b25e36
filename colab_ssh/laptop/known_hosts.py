"""Pinning the runtime's host keys in known_hosts under its HostKeyAlias. Pure: text in, text out.

Only the alias's own lines change: lines whose host field is exactly the alias, and hashed lines
(``|1|salt|hash``, what ``HashKnownHosts yes`` writes, Debian's default) whose hash is the
alias's. Everything else (other hosts, comments, ``@cert-authority`` and ``@revoked`` lines, a
line that names the alias among other hosts) stays byte for byte. New lines go at the top, so
removing them gives back the file as it was.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

from ..connect_code import check_key, check_token

__all__ = ["pin_lines", "remove_alias", "replace_alias"]


def _lines(text: str) -> list[str]:
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _hashed_match(field: str, alias: str) -> bool:
    """Whether ``|1|salt|hash`` is HMAC-SHA1(salt, alias), as ssh-keygen -H writes it."""
    parts = field.split("|")
    if len(parts) != 4 or parts[:2] != ["", "1"]:
        return False
    try:
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(hmac.new(salt, alias.encode(), hashlib.sha1).digest(), digest)


def _is_alias_line(line: str, alias: str) -> bool:
    fields = line.strip().split()
    if not fields or fields[0].startswith(("#", "@")):
        return False
    return fields[0] == alias or _hashed_match(fields[0], alias)


def pin_lines(alias: str, keys: Sequence[str], newline: str = "\n") -> str:
    check_token(alias, "host key alias")
    return "".join(f"{alias} {check_key(key)}{newline}" for key in keys)


def remove_alias(text: str, alias: str) -> str:
    """``text`` without the lines that pin keys for ``alias``."""
    check_token(alias, "host key alias")
    return "".join(line for line in _lines(text) if not _is_alias_line(line, alias))


def replace_alias(text: str, alias: str, keys: Sequence[str]) -> str:
    """``text`` with ``alias``'s lines replaced by one line per key, at the top."""
    first = re.search(r"\r?\n", text)
    return pin_lines(alias, keys, first.group() if first else "\n") + remove_alias(text, alias)
