"""Every endpoint a tunnel returns is checked before it is used: it ends up in the ssh command and the
~/.ssh/config block the user runs on their laptop, so a newline in a host or port would let a tunnel
(a custom object, a plugin) add a ProxyCommand of its choosing. Bad endpoints are refused with a
TunnelError naming the tunnel. Here: the check itself; start_ssh() using it is in tests/integration."""

from __future__ import annotations

import pytest

from colab_ssh import TunnelError
from colab_ssh.connection import Connection
from colab_ssh.tunnels import Endpoint, check_endpoint
from colab_ssh.tunnels.cloudflared import CLIENT_HINTS, PROXY_COMMAND

from ..support.cards import PLAIN
from ..support.endpoints import BAD_ENDPOINTS

KEY = PLAIN.host_keys[0]

GOOD_ENDPOINTS = [
    Endpoint("0.tcp.ngrok.io", 12345),
    Endpoint("example-words-here.trycloudflare.com", 22, PROXY_COMMAND, CLIENT_HINTS),
    Endpoint("192.0.2.7", 1),
    Endpoint("2001:db8::1", 65535),
    Endpoint("localhost", 2222),
    Endpoint("host.example.", 22),
    Endpoint("fe80::1%eth0", 22),
]


@pytest.mark.parametrize(("name", "endpoint", "field"), BAD_ENDPOINTS, ids=[c[0] for c in BAD_ENDPOINTS])
def test_a_bad_field_is_refused_naming_the_tunnel_and_the_field(name, endpoint, field):
    with pytest.raises(TunnelError) as raised:
        check_endpoint(endpoint, "my-plugin")

    message = str(raised.value)
    assert "'my-plugin'" in message and field in message
    assert "\n" not in message and "\r" not in message  # the bad value is shown, not acted on


@pytest.mark.parametrize("endpoint", GOOD_ENDPOINTS, ids=[e.host for e in GOOD_ENDPOINTS])
def test_real_endpoints_pass(endpoint):
    assert check_endpoint(endpoint, "ngrok") is endpoint


def test_a_zone_id_is_escaped_in_the_config_block_and_never_in_a_code():
    # The tunnel side allows an IPv6 zone id (the ssh command carries it, shell-quoted); ssh reads
    # "%e" in a config's HostName as a token, so the by-hand block writes it "%%"; a connection
    # code refuses it (connect_code.check_host), so the managed block never sees one.
    endpoint = check_endpoint(Endpoint("fe80::1%eth0", 22), "none")
    connection = Connection(endpoint.host, endpoint.port, "root", None, 22, "none", (KEY,))
    assert connection.ssh_command == "ssh root@fe80::1%eth0"
    assert "    HostName fe80::1%%eth0\n" in connection.ssh_config
    assert connection.connect_code is None
