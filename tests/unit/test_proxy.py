"""`colab-ssh proxy`'s pure parts: the address file and ngrok metadata formats, reading the lookup
sources' answers (every value checked, the alias matched), ngrok's API errors without the key, the
client command as an argv list, and the fall-back to the last known address."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from colab_ssh.connect_code import ConnectCodeError, ConnectDetails
from colab_ssh.laptop import proxy
from colab_ssh.laptop.lookup import (
    Found,
    LookupFailed,
    api_error,
    endpoints_page,
    from_folder,
    from_ngrok_api,
)
from colab_ssh.published import (
    ADDRESS_FILE,
    alias_in_metadata,
    endpoint_metadata,
    parse_address,
    render_address,
)

from ..support.cards import PLAIN

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEtYwUB4bXGmHn4Msn2YQSUF7SsE6pbCqDezmPWBlTuV"
ALIAS = "colab-ssh-abcdef0123"
DETAILS = ConnectDetails(
    host="0.tcp.eu.ngrok.io",
    port=14022,
    user="root",
    tunnel="ngrok",
    host_key_alias=ALIAS,
    host_keys=(KEY,),
)
UPDATED = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=timezone.utc)


def address_text(**changes: object) -> str:
    record = json.loads(render_address(DETAILS, UPDATED))
    record.update(changes)
    return json.dumps(record)


# --- the address file ------------------------------------------------------------------------------


def test_the_address_file_is_the_details_with_format_and_time():
    text = render_address(DETAILS, UPDATED.astimezone(timezone(timedelta(hours=2))))

    assert json.loads(text) == {
        "format": 1,
        "updated": "2026-12-01T10:00:00Z",
        "host": "0.tcp.eu.ngrok.io",
        "port": 14022,
        "user": "root",
        "tunnel": "ngrok",
        "host_key_alias": ALIAS,
        "host_keys": [KEY],
        "client_command": None,
    }
    assert parse_address(text) == (DETAILS, "2026-12-01T10:00:00Z")


def test_a_connection_publishes_no_secret():
    connection = dataclasses.replace(
        PLAIN, tunnel="cloudflared", proxy_command="cloudflared access ssh --hostname %h"
    )

    details = connection.connect_details
    text = render_address(details, UPDATED)

    assert PLAIN.password and PLAIN.password not in text
    assert details.host_key_alias == connection.host_key_alias
    assert details.host_keys == (PLAIN.host_keys[0].public_key,)
    assert details.client_command == "cloudflared access ssh --hostname %h"
    assert parse_address(text)[0] == details


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "it is not JSON"),
        ('{"format": 1, "host": "a.b"', "it is not JSON"),
        ("[1, 2]", "it is not a JSON object"),
        (address_text(format=2), "its format 2 is newer than this colab-ssh reads; upgrade colab-ssh"),
        (address_text(format="1"), "its format '1' is not 1"),
        (
            address_text(host="127.0.0.1\n    ProxyCommand touch /tmp/x"),
            "is not a host name or an IP address",
        ),
        (address_text(host="-oProxyCommand=x"), "is not a host name or an IP address"),
        (address_text(port="22"), "is not a whole number"),
        (address_text(port=70000), "is not a whole number from 1 to 65535"),
        (address_text(user="root -oProxyCommand=x"), "the user"),
        (address_text(host_key_alias="*"), "the host key alias"),
        (address_text(host_keys="ssh-ed25519 AAAA"), "are not a list"),
        (address_text(host_keys=[]), "no host key to pin"),
        (address_text(client_command="sh -c 'touch /tmp/x'"), "is not one colab-ssh runs"),
        (address_text(client_command="cloudflared access ssh --hostname %h;id"), "is not one colab-ssh runs"),
        ("x" * 70000, "larger than"),
    ],
)
def test_a_damaged_or_hostile_address_file_is_refused(text: str, message: str):
    with pytest.raises(ConnectCodeError, match=re.escape(message)):
        parse_address(text)


def test_from_folder_reads_the_folder_or_the_file(tmp_path: Path):
    (tmp_path / ADDRESS_FILE).write_text(address_text(client_command="cloudflared access ssh --hostname %h"))

    for given in (tmp_path, tmp_path / ADDRESS_FILE):
        found = from_folder(given, ALIAS)
        assert (found.host, found.port, found.client_command) == (
            "0.tcp.eu.ngrok.io",
            14022,
            "cloudflared access ssh --hostname %h",
        )
        assert found.source == f"{tmp_path / ADDRESS_FILE} (updated 2026-12-01T10:00:00Z)"


def test_from_folder_wants_our_alias(tmp_path: Path):
    (tmp_path / ADDRESS_FILE).write_text(address_text(host_key_alias="colab-ssh-9999999999"))

    with pytest.raises(LookupFailed) as failed:
        from_folder(tmp_path, ALIAS)

    assert str(failed.value) == (
        f"{tmp_path / ADDRESS_FILE} is for host colab-ssh-9999999999, not {ALIAS} (the runtime has other"
        " host keys now): run `colab-ssh connect` with its new code"
    )


def test_from_folder_says_which_file_is_missing_or_refused(tmp_path: Path):
    with pytest.raises(LookupFailed, match=f"there is no {tmp_path / ADDRESS_FILE} "):
        from_folder(tmp_path, ALIAS)
    (tmp_path / ADDRESS_FILE).write_text(address_text(port=0))
    with pytest.raises(LookupFailed, match=f"^refused {tmp_path / ADDRESS_FILE}: the port 0 "):
        from_folder(tmp_path, ALIAS)


# --- ngrok's metadata and API ---------------------------------------------------------------------


def test_the_metadata_names_the_alias():
    assert endpoint_metadata(ALIAS) == '{"colab_ssh_host_key_alias":"colab-ssh-abcdef0123"}'
    assert alias_in_metadata(endpoint_metadata(ALIAS)) == ALIAS
    for other in ("", "ssh", '{"app": "x"}', "{not json", '["colab_ssh_host_key_alias"]', None, 7):
        assert alias_in_metadata(other) is None
    assert alias_in_metadata('{"colab_ssh_host_key_alias": 5}') is None


def endpoint(number: int, url: str, metadata: str = endpoint_metadata(ALIAS), **more: object) -> dict:
    return {"id": f"ep_{number}", "public_url": url, "proto": "tcp", "metadata": metadata, **more}


def test_a_page_of_endpoints_gives_ours_only():
    page = {
        "endpoints": [
            endpoint(1, "tcp://4.tcp.ngrok.io:12001", created_at="2026-12-01T09:00:00Z"),
            endpoint(2, "tcp://6.tcp.ngrok.io:12002", endpoint_metadata("colab-ssh-9999999999")),
            endpoint(3, "tcp://6.tcp.ngrok.io:12003", ""),
            endpoint(4, "https://abc.ngrok.app"),
            endpoint(5, "tcp://-oProxyCommand=x:22"),
            endpoint(6, "tcp://[::1]:12006"),
            endpoint(7, "tcp://host:99999"),
            "not an endpoint",
        ],
        "uri": "https://api.ngrok.com/endpoints",
        "next_page_uri": "https://api.ngrok.com/endpoints?before_id=ep_7&limit=100",
    }

    found, following = endpoints_page(page, ALIAS)

    assert found == [
        ("2026-12-01T09:00:00Z", Found("4.tcp.ngrok.io", 12001, None, "ngrok's API")),
        ("", Found("::1", 12006, None, "ngrok's API")),
    ]
    assert following == "https://api.ngrok.com/endpoints?before_id=ep_7&limit=100"
    assert endpoints_page({"endpoints": [], "next_page_uri": None}, ALIAS) == ([], None)


@pytest.mark.parametrize("answer", [None, [], {"tunnels": []}, {"endpoints": "x"}])
def test_an_answer_that_is_not_a_list_of_endpoints(answer: object):
    with pytest.raises(LookupFailed, match="not a list of endpoints"):
        endpoints_page(answer, ALIAS)


def test_an_api_error_names_ngroks_code_but_never_the_key():
    key = "2abcdefabcdefabcdef_0123456789abcdef0123"
    body = json.dumps(
        {
            "error_code": "ERR_NGROK_203",
            "status_code": 401,
            "msg": f"The API authentication you specified is properly formed, but it is invalid. Your"
            f" authentication: {key}. API keys and instructions are available on your dashboard:"
            " https://dashboard.ngrok.com/api-keys",
            "details": {"operation_id": "op_1"},
        }
    ).encode()

    message = api_error(401, body, key)

    assert key not in message
    assert message.startswith("ngrok's API refused NGROK_API_KEY (ERR_NGROK_203: The API authentication")
    assert "Your authentication: <NGROK_API_KEY>." in message
    assert message.endswith("(an API key, not the agent's authtoken) and set NGROK_API_KEY to it")
    assert api_error(502, b"<html>Bad Gateway</html>", key) == "ngrok's API answered HTTP 502"
    assert api_error(500, b'{"msg": "internal"}', key) == "ngrok's API answered HTTP 500 (internal)"


def test_no_api_key_no_request():
    with pytest.raises(LookupFailed, match=r"^NGROK_API_KEY is not set: create an API key at"):
        from_ngrok_api(ALIAS, environ={"COLAB_SSH_NGROK_API_URL": "http://127.0.0.1:9"})


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://api.ngrok.com", "https://"])
def test_the_api_url_must_be_http(url: str):
    with pytest.raises(
        LookupFailed, match=re.escape("is not an http(s) URL; unset it to use https://api.ngrok.com")
    ):
        from_ngrok_api(ALIAS, environ={"NGROK_API_KEY": "k", "COLAB_SSH_NGROK_API_URL": url})


# --- the proxy ----------------------------------------------------------------------------------------


def test_the_client_command_becomes_an_argv_list():
    template = "cloudflared access ssh --hostname %h"

    assert proxy.client_argv(template, "a-b-c-d.trycloudflare.com", 22) == [
        "cloudflared",
        "access",
        "ssh",
        "--hostname",
        "a-b-c-d.trycloudflare.com",
    ]
    program = r"C:\Users\Ann Lee\AppData\Local\colab-ssh\cloudflared.exe"
    assert proxy.client_argv("cloudflared access tcp --url %h:%p", "h.example", 7000, program) == [
        program,
        "access",
        "tcp",
        "--url",
        "h.example:7000",
    ]


def arguments(tmp_path: Path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    proxy.add_parser(parser.add_subparsers())
    return parser.parse_args(["proxy", "colab", "--alias", ALIAS, "--from", str(tmp_path), *extra])


def test_a_failed_lookup_falls_back_to_the_last_address_with_a_note(tmp_path: Path, capsys):
    target = proxy._target(arguments(tmp_path, "0.tcp.ngrok.io", "12345"))

    assert target == Found("0.tcp.ngrok.io", 12345, None, "the ssh config")
    note = capsys.readouterr().err
    assert note.startswith(f"colab-ssh proxy: there is no {tmp_path / ADDRESS_FILE} ")
    assert note.endswith("; trying the last known address 0.tcp.ngrok.io:12345\n")
    assert note.count("\n") == 1


def test_the_lookup_wins_over_the_last_address(tmp_path: Path, capsys):
    (tmp_path / ADDRESS_FILE).write_text(address_text())

    assert proxy._target(arguments(tmp_path, "0.tcp.ngrok.io", "12345")).port == 14022
    assert capsys.readouterr().err == ""


def test_no_fallback_for_a_tunnel_client(tmp_path: Path):
    with pytest.raises(proxy.ProxyError, match="nothing to fall back to"):
        proxy._target(arguments(tmp_path, "--client", "/opt/cloudflared", "x.trycloudflare.com", "22"))


@pytest.mark.parametrize(
    ("host", "port"),
    [("a.b\nProxyCommand x", "22"), ("a b", "22"), ("a.b", "22x"), ("a.b", "0")],
)
def test_the_proxy_command_line_is_checked_too(tmp_path: Path, host: str, port: str, capsys):
    assert proxy.run(arguments(tmp_path, host, port)) == proxy.EXIT_FAILURE
    error = capsys.readouterr().err
    assert error.startswith("colab-ssh proxy: the ") and error.count("\n") == 1
    assert "(in the ProxyCommand); run `colab-ssh connect` again" in error
