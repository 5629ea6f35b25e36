"""The connection code: a round trip keeps every value, every kind of damage is refused with its own
message, and every value that could change an ssh config is refused, whether it comes from encode()'s
caller or from a hand-made code whose checksum matches."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import struct

import pytest

from colab_ssh.connect_code import (
    PREFIX,
    ConnectCodeError,
    ConnectDetails,
    check_details,
    check_host,
    check_port,
    check_token,
    decode,
    encode,
)

from ..support.laptop_configs import CLOUDFLARED_DETAILS, DETAILS, KEY, public_key

RSA = public_key("ssh-rsa", bytes(range(256)) * 2)


def hand_made(values: list[object], checksum: bytes | None = None, length_change: int = 0) -> str:
    """A code built the way encode() builds one, from any values: what a forger or a bug could send."""
    payload = json.dumps(values, separators=(",", ":")).encode()
    body = (checksum if checksum is not None else hashlib.sha256(payload).digest()[:6]) + payload
    raw = struct.pack(">H", 2 + len(body) + length_change) + body
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def fields_of(details: ConnectDetails) -> list[object]:
    values: list[object] = [
        details.host,
        details.port,
        details.user,
        details.tunnel,
        details.host_key_alias,
        [key.split(" ")[1] for key in details.host_keys],
    ]
    return values if details.client_command is None else [*values, details.client_command]


# --- what a good code does ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "details",
    [
        DETAILS,
        CLOUDFLARED_DETAILS,
        dataclasses.replace(DETAILS, host="2001:db8::1", port=1, host_keys=(KEY, RSA)),
        dataclasses.replace(DETAILS, host="192.0.2.7", port=65535, user="a_user.name-2", tunnel="my.plugin"),
        dataclasses.replace(DETAILS, host="example.com.", host_keys=(public_key("ecdsa-sha2-nistp256"),)),
    ],
    ids=["ngrok", "cloudflared", "ipv6-two-keys", "ipv4-edges", "trailing-dot-ecdsa"],
)
def test_a_code_decodes_to_the_details_it_was_made_from(details):
    code = encode(details)
    assert code.startswith("cs1-")
    assert code.isascii() and code.isprintable() and " " not in code
    assert decode(code) == details
    assert decode(f"  {code}\n") == details  # a paste with the line's end


def test_a_code_with_one_ed25519_key_is_short():
    assert len(encode(DETAILS)) < 250
    assert len(encode(CLOUDFLARED_DETAILS)) < 400


def test_a_hand_made_code_in_the_documented_form_decodes():
    """The module's docstring is the format: a code built from it alone is read back."""
    assert decode(hand_made(fields_of(CLOUDFLARED_DETAILS))) == CLOUDFLARED_DETAILS


# --- damaged, truncated, foreign ---------------------------------------------------------------


@pytest.mark.parametrize("keep", [4, 5, 6, 7, 10, 40, -30, -2, -1])
def test_a_code_cut_short_is_refused_as_cut_short(keep):
    code = encode(DETAILS)
    with pytest.raises(ConnectCodeError, match=r"^the code is cut short: copy the whole line"):
        decode(code[:keep])


def test_every_changed_character_is_refused():
    code = encode(CLOUDFLARED_DETAILS)
    for position in range(len(PREFIX), len(code)):
        for replacement in "A_":
            if code[position] == replacement:
                continue
            changed = code[:position] + replacement + code[position + 1 :]
            with pytest.raises(ConnectCodeError, match="copy the whole line") as refused:
                decode(changed)
            assert "\n" not in str(refused.value)


def test_a_changed_value_with_the_old_checksum_is_refused_as_altered():
    code = encode(DETAILS)
    raw = base64.urlsafe_b64decode(code[len(PREFIX) :] + "==")
    forged = hand_made(fields_of(dataclasses.replace(DETAILS, host="evil.example")), checksum=raw[2:8])
    with pytest.raises(ConnectCodeError, match=r"^the code was altered \(its checksum does not match\)"):
        decode(forged)


def test_a_length_no_code_has_is_refused_as_altered():
    with pytest.raises(ConnectCodeError, match=r"^the code was altered \(its length does not match\)"):
        decode("cs1-AAAA")


def test_extra_characters_after_a_code_are_refused():
    code = encode(DETAILS)
    with pytest.raises(ConnectCodeError, match="extra characters at its end"):
        decode(code + "AAAA")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a colab-ssh connection code"),
        ("ssh root@0.tcp.ngrok.io", "is not a colab-ssh connection code"),
        ("colab-ssh connect cs1-AAAA", "is not a colab-ssh connection code"),
        ("cs2-AAAAAAAAAAAA", r"version 2, newer than this colab-ssh reads: upgrade it"),
        ("CS1-AAAAAAAAAAAA", "is not a colab-ssh connection code"),
    ],
)
def test_a_foreign_text_is_refused_naming_what_codes_look_like(text, message):
    with pytest.raises(ConnectCodeError, match=message):
        decode(text)


@pytest.mark.parametrize("bad", [" ", "\n", "+", "/", "=", "é", "\x00"])
def test_a_character_outside_the_code_alphabet_is_named(bad):
    code = encode(DETAILS)
    with pytest.raises(ConnectCodeError, match=r"the code contains .* which is not part of any code"):
        decode(code[:20] + bad + code[20:])


def test_an_overlong_code_is_refused_before_it_is_decoded():
    with pytest.raises(ConnectCodeError, match="longer than any colab-ssh makes"):
        decode(PREFIX + "A" * 5000)


@pytest.mark.parametrize(
    "values",
    [
        {"host": "x"},
        ["only", "five", "fields", "in", "here"],
        [*fields_of(CLOUDFLARED_DETAILS), "an eighth"],
        "a string",
    ],
    ids=["object", "five", "eight", "string"],
)
def test_a_checksummed_payload_in_another_format_is_refused(values):
    with pytest.raises(ConnectCodeError, match="not in colab-ssh's format"):
        decode(hand_made(values))


def test_host_keys_that_are_not_a_list_of_strings_are_refused():
    values = fields_of(DETAILS)
    values[5] = [1, 2]
    with pytest.raises(ConnectCodeError, match="host keys are not in colab-ssh's format"):
        decode(hand_made(values))


# --- bad values: refused by encode(), by decode() of a hand-made code, and by check_details ------

BAD_VALUES = [
    ("host", "evil.example\n    ProxyCommand touch /tmp/owned", "is not a host name"),
    ("host", "evil.example\r", "is not a host name"),
    ("host", "two words", "is not a host name"),
    ("host", "-oProxyCommand=x", "is not a host name"),
    ("host", "a\x00b", "is not a host name"),
    ("host", "", "is not a host name"),
    ("host", "a" * 64 + ".example", "is not a host name"),
    ("host", "fe80::1%eth0", "is not a host name"),
    ("host", 'quote"d', "is not a host name"),
    ("host", "under_score.example", "is not a host name"),
    ("host", 7, "is not a host name"),
    ("port", 0, "is not a whole number from 1 to 65535"),
    ("port", 65536, "is not a whole number from 1 to 65535"),
    ("port", True, "is not a whole number from 1 to 65535"),
    ("port", "22", "is not a whole number"),
    ("port", 22.0, "is not a whole number from 1 to 65535"),
    ("user", "root\nProxyCommand x", "user .* is not a single word"),
    ("user", "two words", "user .* is not a single word"),
    ("user", "-oProxyCommand", "user .* is not a single word"),
    ("user", "a#b", "user .* is not a single word"),
    ("user", "a%hb", "user .* is not a single word"),
    ("user", '"root"', "user .* is not a single word"),
    ("user", "", "user .* is not a single word"),
    ("tunnel", "ngrok*", "tunnel .* is not a single word"),
    ("host_key_alias", "colab ssh", "host key alias .* is not a single word"),
    ("host_key_alias", "alias=x", "host key alias .* is not a single word"),
    ("host_key_alias", "a\tb", "host key alias .* is not a single word"),
    ("host_keys", (), "no host key to pin"),
    ("host_keys", (KEY,) * 9, "9 host keys, more than 8"),
    ("host_keys", ("ssh-dss AAAAB3NzaC1kc3MAAAA=",), "is not a public host key"),
    ("host_keys", (public_key("ssh-ed25519", named="ssh-rsa"),), "is not a public host key"),
    ("host_keys", (KEY + " comment",), "is not a public host key"),
    ("host_keys", (KEY + "\nevil",), "is not a public host key"),
    ("host_keys", ("ssh-ed25519 AAAA!!",), "is not a public host key"),
    ("host_keys", ("ssh-ed25519 AAAAC3Nz",), "is not a public host key"),
    ("client_command", "rm -rf /", "is not one colab-ssh runs"),
    ("client_command", "cloudflared update", "is not one colab-ssh runs"),
    ("client_command", "cloudflared access ssh --hostname %h; touch x", "is not one colab-ssh runs"),
    ("client_command", "cloudflared access ssh --hostname `id`", "is not one colab-ssh runs"),
    ("client_command", "cloudflared access ssh --hostname %h\nUser x", "is not one colab-ssh runs"),
    ("client_command", "cloudflared  access ssh", "is not one colab-ssh runs"),
    ("client_command", "/tmp/cloudflared access ssh --hostname %h", "is not one colab-ssh runs"),
    ("client_command", "cloudflared access ssh --hostname %r", "is not one colab-ssh runs"),
]


@pytest.mark.parametrize(("field", "value", "message"), BAD_VALUES)
def test_a_bad_value_is_refused_everywhere(field, value, message):
    details = dataclasses.replace(CLOUDFLARED_DETAILS, **{field: value})
    with pytest.raises(ConnectCodeError, match=message):
        check_details(details)
    with pytest.raises(ConnectCodeError, match=message):
        encode(details)
    if field != "host_keys":  # decode() rebuilds "type base64" from the blob: tested below
        with pytest.raises(ConnectCodeError, match=message) as refused:
            decode(hand_made(fields_of(details)))
        assert "\n" not in str(refused.value).replace(repr(value), "")


def test_a_hand_made_code_with_a_bad_key_blob_is_refused():
    values = fields_of(DETAILS)
    for blobs in (["AAAA!!"], ["AAAAC3Nz"], [], [base64.b64encode(b"\x00\x00\x00\x07ssh-dss").decode()]):
        values[5] = blobs
        with pytest.raises(ConnectCodeError, match=r"host key|no host key"):
            decode(hand_made(values))


def test_the_single_value_checks_return_what_they_accept():
    assert check_host("2001:db8::1") == "2001:db8::1"
    assert check_host("EXAMPLE.com") == "EXAMPLE.com"
    assert check_port("443") == 443
    assert check_port(8080) == 8080
    assert check_token("colab-2", "name") == "colab-2"
    with pytest.raises(ConnectCodeError, match=r"^the name 'a\*' is not a single word"):
        check_token("a*", "name")
    with pytest.raises(ConnectCodeError, match="not a whole number from 1 to 65535"):
        check_port("0x10")


def test_a_zone_id_is_a_host_only_where_asked_for():
    # A code's host goes into the laptop's ssh config, where the runtime's interface name means
    # nothing: refused there (BAD_VALUES); the runtime's own ssh command may carry one.
    assert check_host("fe80::1%eth0", zone_id=True) == "fe80::1%eth0"
    with pytest.raises(ConnectCodeError, match="is not a host name"):
        check_host("fe80::1%eth0")
    for value in ("fe80::1%eth0\nProxyCommand x", "fe80::1% x", "fe80::1%", "example.com%eth0"):
        with pytest.raises(ConnectCodeError, match="is not a host name"):
            check_host(value, zone_id=True)


def test_the_details_carry_no_secret():
    assert [field.name for field in dataclasses.fields(ConnectDetails)] == [
        "host",
        "port",
        "user",
        "tunnel",
        "host_key_alias",
        "host_keys",
        "client_command",
    ]
