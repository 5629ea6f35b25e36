"""tunnel="cloudflared" without a process: the address in cloudflared's log, the pinned release,
the build for each CPU, argument checks. The stand-in agent and logins are in tests/integration."""

from __future__ import annotations

import re

import pytest

from colab_ssh.errors import InvalidArgumentError
from colab_ssh.tunnels import cloudflared as cf
from colab_ssh.tunnels import cloudflared_watch as cf_watch
from colab_ssh.tunnels.cloudflared import (
    CloudflaredDownloadError,
    CloudflaredTunnel,
)


def test_the_address_is_the_boxed_one_never_the_api_host():
    """Lines as the real cloudflared prints them (quick_tunnel.go's box; its request errors)."""
    boxed = "2026-10-04T03:58:35Z INF |  https://headline-attach-along-referred.trycloudflare.com          |"
    not_addresses = [
        'failed to request quick Tunnel: Post "https://api.trycloudflare.com/tunnel": dial tcp: lookup'
        " api.trycloudflare.com on 127.0.0.53:53: no such host",
        "2026-10-04T03:58:29Z INF Requesting new quick Tunnel on trycloudflare.com...",
        "2026-10-04T03:58:35Z INF |  Your quick Tunnel has been created! Visit it at (it may take some time"
        " to be reachable):  |",
        "see https://developers.cloudflare.com/cloudflare-one/connections/connect-apps",
    ]

    found = cf_watch.ADDRESS.search(boxed)
    assert found is not None and found.group(1) == "headline-attach-along-referred.trycloudflare.com"
    assert [line for line in not_addresses if cf_watch.ADDRESS.search(line)] == []


def test_pinned_digests_look_like_digests():
    assert re.fullmatch(r"20\d\d\.\d{1,2}\.\d+", cf.VERSION)
    assert set(cf.SHA256) == {
        "cloudflared-linux-amd64",
        "cloudflared-linux-arm64",  # the runtime's; the laptop's (client_program.py):
        "cloudflared-windows-amd64.exe",
        "cloudflared-windows-386.exe",
        "cloudflared-darwin-amd64.tgz",
        "cloudflared-darwin-arm64.tgz",
    }
    for digest in cf.SHA256.values():
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert len(set(cf.SHA256.values())) == len(cf.SHA256)


@pytest.mark.parametrize(
    ("machine", "asset"),
    [
        ("x86_64", "cloudflared-linux-amd64"),
        ("aarch64", "cloudflared-linux-arm64"),
        ("arm64", "cloudflared-linux-arm64"),
    ],
)
def test_asset_for_machine(machine, asset):
    assert cf.asset_for_machine(machine) == asset


def test_a_cpu_without_a_build_is_explained():
    with pytest.raises(CloudflaredDownloadError, match="COLAB_SSH_CLOUDFLARED"):
        cf.asset_for_machine("riscv64")


def test_arguments_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(InvalidArgumentError, match="sha256"):
        CloudflaredTunnel(download_url="https://example.invalid/cloudflared")
    with pytest.raises(InvalidArgumentError, match="https://"):
        CloudflaredTunnel(download_url="http://example.invalid/cloudflared", sha256="a" * 64)
    with pytest.raises(InvalidArgumentError, match="64 hex digits"):
        CloudflaredTunnel(sha256="abc")
    with pytest.raises(InvalidArgumentError, match="start_timeout"):
        CloudflaredTunnel(start_timeout=0)
