"""The connection code: one line that carries what the laptop needs to reach a runtime.

``start_ssh()`` shows ``colab-ssh connect <code>``; the laptop decodes the code and writes an
ssh config block and known_hosts lines from it. Pure and standard library only: the laptop
imports this module without the runtime.

Form: ``cs1-`` (the format's version) then base64url, without padding, of

    2 bytes   the length of everything after the prefix, decoded (big-endian)
    6 bytes   the first bytes of SHA-256 over the JSON that follows
    JSON      [host, port, user, tunnel, host_key_alias, [key, ...], client_command?]
              each key as its base64 blob alone: the blob names its own type

The length tells a paste cut short from one altered; the checksum finds a changed character.
It is not a signature: the code is exactly as trustworthy as the notebook it was copied from.
Every value is checked again after decoding (:func:`check_details`), because each one ends up
in the user's ssh config, where a newline or a quote would add a directive of the code's choice.
The same checks serve the lookup sources the proxy reads (a folder's address file, ngrok's API).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import struct
from dataclasses import dataclass

__all__ = [
    "CLIENT_PROGRAMS",
    "KEY_TYPES",
    "PREFIX",
    "ConnectCodeError",
    "ConnectDetails",
    "check_details",
    "check_host",
    "check_key",
    "check_port",
    "check_token",
    "decode",
    "encode",
]

PREFIX = "cs1-"
_VERSION = re.compile(r"cs(\d+)-")
_CHECKSUM_BYTES = 6
_HEADER = struct.Struct(">H")
_MAX_CODE = 4000  # characters; a code with eight RSA keys still fits
_MAX_KEYS = 8
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_FIX_PASTE = "copy the whole line from the notebook again"

# Host key types OpenSSH writes into known_hosts (ssh -Q HostKeyAlgorithms, without certificates).
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# A code's client command is run by ssh on the laptop (ProxyCommand), so only a known tunnel
# client is accepted, with its first argument, and arguments of plain characters and %h/%p.
CLIENT_PROGRAMS = {"cloudflared": "access"}
_CLIENT_ARGUMENT = re.compile(r"[A-Za-z0-9._:/=-]+|%h|%p")

# RFC 1123 host names: dot-separated labels of letters, digits and inner hyphens, 63 characters
# at most each, 253 in all. No label starts with "-", so a host never reads as an option.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# An IP literal: digits, hex, dots and colons, matched before ipaddress, which takes anything
# after "%" as an IPv6 zone, newlines and spaces included; with a zone id, a plain word after "%".
_IP_CHARACTERS = re.compile(r"[0-9A-Fa-f:.]+")
_IP_ZONE = re.compile(r"[0-9A-Fa-f:.]+(?:%[A-Za-z0-9_.-]+)?")
# A single token: no whitespace, quote, "#", "%", "=", wildcard or control character, nothing
# ssh_config or a shell would read as more than a word, and no leading "-" (an option).
_TOKEN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


class ConnectCodeError(ValueError):
    """A code (or a lookup source's details) that cannot be used; the message names the fix."""


@dataclass(frozen=True)
class ConnectDetails:
    """What the laptop needs to reach a runtime, and nothing secret."""

    host: str  # hostname or IP literal
    port: int  # 1..65535
    user: str
    tunnel: str  # tunnel kind name: "ngrok", "cloudflared", "none", or a plugin's
    host_key_alias: str  # Connection.host_key_alias, e.g. "colab-ssh-abcdef0123"
    host_keys: tuple[str, ...]  # "ssh-ed25519 AAAA..." (type + base64 only)
    # The endpoint's proxy_command, e.g. "cloudflared access ssh --hostname %h".
    client_command: str | None = None


def check_host(value: object, *, zone_id: bool = False) -> str:
    """A host name (RFC 1123) or an IPv4/IPv6 literal, else ConnectCodeError.

    An IPv6 zone id (``fe80::1%eth0``) names an interface of the machine that wrote it, so it is
    refused unless ``zone_id`` is true: a code's host goes into the laptop's ssh config, where the
    runtime's interface means nothing (and ssh would read ``%e`` as a token). The runtime's own
    ssh command may carry one (colab_ssh.tunnels).
    """
    if isinstance(value, str):
        if (_IP_ZONE if zone_id else _IP_CHARACTERS).fullmatch(value):
            try:
                ipaddress.ip_address(value)
            except ValueError:
                pass
            else:
                return value
        name = value.removesuffix(".")
        if 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split(".")):
            return value
    raise ConnectCodeError(f"the host {value!r} is not a host name or an IP address; {_FIX_PASTE}")


def check_port(value: object) -> int:
    """A whole number from 1 to 65535 (an int, or its decimal digits), else ConnectCodeError."""
    port = value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        port = int(value)
    if isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535:
        return port
    raise ConnectCodeError(f"the port {value!r} is not a whole number from 1 to 65535; {_FIX_PASTE}")


def check_token(value: object, what: str) -> str:
    """One word of letters, digits, ``.``, ``_`` and ``-`` (64 at most, not starting with ``-``)."""
    if isinstance(value, str) and _TOKEN.fullmatch(value):
        return value
    raise ConnectCodeError(
        f"the {what} {value!r} is not a single word of letters, digits, '.', '_' and '-'; {_FIX_PASTE}"
    )


def _key_blob_type(blob: bytes) -> str | None:
    """The type name an SSH public key blob starts with (a uint32 length, then the name)."""
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    name = blob[4 : 4 + length]
    if length > 64 or len(name) != length or len(blob) <= 4 + length:
        return None
    return name.decode("ascii", "replace")


def check_key(value: object) -> str:
    """``"type base64"`` with a known host key type whose blob names that same type."""
    if isinstance(value, str):
        kind, _, data = value.partition(" ")
        if kind in KEY_TYPES and re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", data):
            try:
                blob = base64.b64decode(data, validate=True)
            except binascii.Error:
                blob = b""
            if _key_blob_type(blob) == kind:
                return value
    raise ConnectCodeError(f"the host key {value!r} is not a public host key ('type base64'); {_FIX_PASTE}")


def _check_client_command(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        program, *arguments = value.split(" ")
        if (
            program in CLIENT_PROGRAMS
            and arguments[:1] == [CLIENT_PROGRAMS[program]]
            and all(_CLIENT_ARGUMENT.fullmatch(argument) for argument in arguments)
        ):
            return value
    known = ", ".join(f"{program} {first} ..." for program, first in CLIENT_PROGRAMS.items())
    raise ConnectCodeError(
        f"the client command {value!r} is not one colab-ssh runs (it runs only {known});"
        f" {_FIX_PASTE}, or connect with ssh's own options"
    )


def check_details(details: ConnectDetails) -> ConnectDetails:
    """``details`` itself if every value is safe to write into an ssh config, else ConnectCodeError."""
    check_host(details.host)
    if check_port(details.port) != details.port:  # "22" is a port for check_port(), not here
        raise ConnectCodeError(f"the port {details.port!r} is not a whole number; {_FIX_PASTE}")
    check_token(details.user, "user")
    check_token(details.tunnel, "tunnel")
    check_token(details.host_key_alias, "host key alias")
    keys = details.host_keys
    if not isinstance(keys, tuple) or not keys:
        raise ConnectCodeError(f"the details carry no host key to pin; {_FIX_PASTE}")
    if len(keys) > _MAX_KEYS:
        raise ConnectCodeError(
            f"the details carry {len(keys)} host keys, more than {_MAX_KEYS}; {_FIX_PASTE}"
        )
    for key in keys:
        check_key(key)
    _check_client_command(details.client_command)
    return details


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(payload).digest()[:_CHECKSUM_BYTES]


def encode(details: ConnectDetails) -> str:
    """The one-line code for ``details`` (checked first: a code that decode() refuses is never made)."""
    check_details(details)
    fields_ = [
        details.host,
        details.port,
        details.user,
        details.tunnel,
        details.host_key_alias,
        [key.partition(" ")[2] for key in details.host_keys],
    ]
    if details.client_command is not None:
        fields_.append(details.client_command)
    payload = json.dumps(fields_, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    body = _checksum(payload) + payload
    raw = _HEADER.pack(_HEADER.size + len(body)) + body
    return PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _foreign(text: str) -> ConnectCodeError:
    version = _VERSION.match(text)
    if version and version.group(1) != PREFIX[2:-1]:
        return ConnectCodeError(
            f"this code is version {version.group(1)}, newer than this colab-ssh reads:"
            " upgrade it on the laptop (pip install -U colab-ssh-host) and run the command again"
        )
    shown = text if len(text) <= 12 else text[:12] + "..."
    return ConnectCodeError(
        f"{shown!r} is not a colab-ssh connection code (those start with {PREFIX!r}); copy the"
        " `colab-ssh connect ...` line from the notebook's connection details"
    )


def _unpack(raw: bytes) -> list[object]:
    if len(raw) < _HEADER.size:
        raise ConnectCodeError(f"the code is cut short: {_FIX_PASTE}")
    (length,) = _HEADER.unpack(raw[: _HEADER.size])
    if length < _HEADER.size + _CHECKSUM_BYTES + len("[]"):  # no code is this short: a changed length
        raise ConnectCodeError(f"the code was altered (its length does not match): {_FIX_PASTE}")
    if len(raw) < length:
        raise ConnectCodeError(f"the code is cut short: {_FIX_PASTE}")
    if len(raw) > length:
        raise ConnectCodeError(f"the code has extra characters at its end: {_FIX_PASTE}")
    body = raw[_HEADER.size :]
    checksum, payload = body[:_CHECKSUM_BYTES], body[_CHECKSUM_BYTES:]
    if _checksum(payload) != checksum:
        raise ConnectCodeError(f"the code was altered (its checksum does not match): {_FIX_PASTE}")
    try:
        values = json.loads(payload.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        values = None
    if not isinstance(values, list) or len(values) not in (6, 7):
        # A matching checksum over something we cannot read: made by a different program.
        raise ConnectCodeError(f"the code's contents are not in colab-ssh's format: {_FIX_PASTE}")
    return values


def decode(text: str) -> ConnectDetails:
    """The details in a code, or ConnectCodeError saying what is wrong with the paste and the fix."""
    code = text.strip()
    if not code.startswith(PREFIX):
        raise _foreign(code)
    data = code[len(PREFIX) :]
    if len(code) > _MAX_CODE:
        raise ConnectCodeError(f"the code is longer than any colab-ssh makes: {_FIX_PASTE}")
    if not _BASE64URL.fullmatch(data):
        bad = next(ch for ch in data if not _BASE64URL.fullmatch(ch))
        raise ConnectCodeError(f"the code contains {bad!r}, which is not part of any code: {_FIX_PASTE}")
    if len(data) % 4 == 1:  # no whole number of bytes ends this way: characters are missing
        raise ConnectCodeError(f"the code is cut short: {_FIX_PASTE}")
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    values = _unpack(raw)
    host, port, user, tunnel, alias, blobs, *rest = values
    if not isinstance(blobs, list) or not all(isinstance(blob, str) for blob in blobs):
        raise ConnectCodeError(f"the code's host keys are not in colab-ssh's format: {_FIX_PASTE}")
    keys = []
    for blob in blobs:
        try:
            kind = _key_blob_type(base64.b64decode(blob, validate=True)) or "?"
        except (binascii.Error, ValueError):
            kind = "?"
        keys.append(f"{kind} {blob}")
    details = ConnectDetails(
        host=host,  # type: ignore[arg-type]  # checked below, with the same checks as any source
        port=port,  # type: ignore[arg-type]
        user=user,  # type: ignore[arg-type]
        tunnel=tunnel,  # type: ignore[arg-type]
        host_key_alias=alias,  # type: ignore[arg-type]
        host_keys=tuple(keys),
        client_command=rest[0] if rest else None,  # type: ignore[arg-type]
    )
    return check_details(details)
