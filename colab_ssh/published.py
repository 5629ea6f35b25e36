"""What a runtime publishes so that the laptop finds its current address with no new paste.

Two sources, one format each, shared by the runtime that writes them and ``colab-ssh proxy``
that reads them (so, like :mod:`.connect_code`, pure and standard library only):

- the address file, ``colab-ssh-address.json`` in ``host_keys_dir`` (where Google Drive for
  desktop syncs it to the laptop): the connection details, no secret, with the time they were
  written and the format's version;
- ngrok's endpoint metadata: a short JSON text naming the host key alias, which ngrok's API lists
  with each endpoint of the account (``GET /endpoints``, the ``metadata`` field).

Whatever the laptop reads here is checked like a connection code (:func:`.connect_code.check_details`)
and must name the alias the laptop pinned; the pinned host key is what makes a wrong or hostile
address harmless, since ssh refuses a server without that key.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the runtime only writes: connect_code's checks load where the laptop reads
    from .connect_code import ConnectDetails

__all__ = [
    "ADDRESS_FILE",
    "ADDRESS_FORMAT",
    "METADATA_KEY",
    "alias_in_metadata",
    "endpoint_metadata",
    "parse_address",
    "render_address",
]

ADDRESS_FILE = "colab-ssh-address.json"
ADDRESS_FORMAT = 1  # the "format" field; a reader refuses a newer one (asking for an upgrade)
MAX_ADDRESS_BYTES = 64 * 1024  # far more than any real file (eight RSA keys are ~6 KB)
METADATA_KEY = "colab_ssh_host_key_alias"
_FIELDS = ("host", "port", "user", "tunnel", "host_key_alias", "host_keys", "client_command")


def render_address(details: ConnectDetails, updated: datetime) -> str:
    """The address file's text: the details' fields, "format" and "updated" (UTC, ISO 8601)."""
    record: dict[str, object] = {"format": ADDRESS_FORMAT, "updated": _utc(updated)}
    record.update({name: getattr(details, name) for name in _FIELDS})
    record["host_keys"] = list(details.host_keys)
    return json.dumps(record, indent=2, ensure_ascii=True) + "\n"


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_address(text: str | bytes) -> tuple[ConnectDetails, str]:
    """(details, "updated") from an address file, every value checked; ConnectCodeError otherwise.

    The message names what is wrong; the caller says which file it was.
    """
    from .connect_code import ConnectCodeError, ConnectDetails, check_details

    if len(text) > MAX_ADDRESS_BYTES:
        raise ConnectCodeError(f"it is larger than {MAX_ADDRESS_BYTES} bytes, which no runtime writes")
    try:
        record = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise ConnectCodeError("it is not JSON (cut short while syncing?)") from None
    if not isinstance(record, dict):
        raise ConnectCodeError("it is not a JSON object")
    version = record.get("format")
    if version != ADDRESS_FORMAT:
        if isinstance(version, int) and not isinstance(version, bool) and version > ADDRESS_FORMAT:
            raise ConnectCodeError(
                f"its format {version} is newer than this colab-ssh reads; upgrade colab-ssh on the laptop"
            )
        raise ConnectCodeError(f"its format {version!r} is not {ADDRESS_FORMAT}")
    keys = record.get("host_keys")
    if not isinstance(keys, list):
        raise ConnectCodeError(f"its host_keys {keys!r} are not a list")
    updated = record.get("updated")
    details = ConnectDetails(
        host=record.get("host"),  # type: ignore[arg-type]  # checked below, as a code's values are
        port=record.get("port"),  # type: ignore[arg-type]
        user=record.get("user"),  # type: ignore[arg-type]
        tunnel=record.get("tunnel"),  # type: ignore[arg-type]
        host_key_alias=record.get("host_key_alias"),  # type: ignore[arg-type]
        host_keys=tuple(keys),
        client_command=record.get("client_command"),
    )
    return check_details(details), updated if isinstance(updated, str) and updated.isprintable() else "?"


def endpoint_metadata(host_key_alias: str) -> str:
    """The metadata the runtime attaches to its ngrok endpoint: which host it leads to."""
    return json.dumps({METADATA_KEY: host_key_alias}, separators=(",", ":"))


def alias_in_metadata(metadata: object) -> str | None:
    """The host key alias an endpoint's metadata names, or None (another program's endpoint)."""
    if not isinstance(metadata, str) or not metadata.startswith("{"):
        return None
    try:
        record = json.loads(metadata)
    except ValueError:
        return None
    alias = record.get(METADATA_KEY) if isinstance(record, dict) else None
    return alias if isinstance(alias, str) else None
