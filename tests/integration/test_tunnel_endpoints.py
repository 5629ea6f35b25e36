"""Every endpoint a tunnel returns is checked before it is used: it ends up in the ssh command and the
~/.ssh/config block the user runs on their laptop, so a newline in a host or port would let a tunnel
(a custom object, a plugin) add a ProxyCommand of its choosing. Bad endpoints are refused with a
TunnelError naming the tunnel, on the first open and on every reopen, and nothing stays changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from colab_ssh import TunnelError, core, ssh_status, start_ssh, stop_ssh
from colab_ssh.system import local_address
from colab_ssh.tunnels import Endpoint

from ..support.endpoints import BAD_ENDPOINTS, INJECTED
from ..support.host import machine_state


class ScriptedTunnel:
    """A custom tunnel object, as a user or a plugin would pass it: it returns what it is told to."""

    name = "scripted"

    def __init__(self, *endpoints: object) -> None:
        self.endpoints = list(endpoints)
        self.is_open = False
        self.opened = 0
        self.closed = 0

    def open(self, local_port: int) -> Endpoint:
        self.opened += 1
        self.is_open = True
        return self.endpoints.pop(0)  # type: ignore[return-value]

    def alive(self) -> bool:
        return self.is_open

    def close(self) -> None:
        self.closed += 1
        self.is_open = False


@pytest.mark.parametrize(
    ("name", "endpoint", "field"),
    [case for case in BAD_ENDPOINTS if case[0] in {
        "newline then ProxyCommand in the host", "newline in an IPv6 zone", "port as text with a newline",
        "port above 65535",
        "proxy command on two lines", "hint on two lines", "not an Endpoint at all",
    }],
    ids=lambda value: value if isinstance(value, str) else "",
)  # fmt: skip
def test_start_ssh_refuses_a_custom_tunnels_bad_endpoint_and_undoes_everything(
    name, endpoint, field, test_user, port, state_dir
):
    # Given a machine where colab_ssh ran before (so there is a config to put back)...
    start_ssh(tunnel="none", port=port, user=test_user, state_dir=state_dir, quiet=True)
    stop_ssh()
    before = machine_state(state_dir, test_user)
    tunnel = ScriptedTunnel(endpoint)

    with pytest.raises(TunnelError, match="'scripted'"):
        start_ssh(tunnel=tunnel, port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert tunnel.opened == 1 and not tunnel.is_open  # the tunnel it opened was closed again
    assert machine_state(state_dir, test_user) == before  # no sshd running, config and password back
    assert not Path("/tmp/colab_ssh_injected").exists()


def test_a_reopened_tunnel_is_checked_too(test_user, port, state_dir):
    good = Endpoint(local_address(), port)
    tunnel = ScriptedTunnel(good, Endpoint("evil.example.com" + INJECTED, 22))
    first = start_ssh(
        tunnel=tunnel, port=port, user=test_user, state_dir=state_dir, quiet=True, monitor_interval=None
    )
    tunnel.is_open = False  # the tunnel died; the monitor would now reopen it
    session = core._session
    assert session is not None

    with pytest.raises(TunnelError, match="'scripted'"):
        session.revive()

    assert tunnel.opened == 2 and not tunnel.is_open
    status = ssh_status()
    assert status.connection == first  # the details handed out stay the last good ones
    assert "ProxyCommand" not in (status.connection.ssh_config if status.connection else "")
