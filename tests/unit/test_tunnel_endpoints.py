"""Every endpoint a tunnel returns is checked before it is used: it ends up in the ssh command and the
~/.ssh/config block the user runs on their laptop, so a newline in a host or port would let a tunnel
(a custom object, a plugin) add a ProxyCommand of its choosing. Bad endpoints are refused with a
TunnelError naming the tunnel. Here: the check itself; start_ssh() using it is in tests/integration."""

from __future__ import annotations

import pytest

from colab_ssh import TunnelError
from colab_ssh.tunnels import Endpoint, check_endpoint
from colab_ssh.tunnels.cloudflared import CLIENT_HINTS, PROXY_COMMAND

from ..support.endpoints import BAD_ENDPOINTS

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
