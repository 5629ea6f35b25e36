"""Endpoints a tunnel must never get through: each bad field of colab_ssh.tunnels.Endpoint, with a
newline that would add a ProxyCommand to the user's ssh config."""

from __future__ import annotations

from colab_ssh.tunnels import Endpoint

INJECTED = "\nProxyCommand touch /tmp/colab_ssh_injected"

BAD_ENDPOINTS: list[tuple[str, object, str]] = [
    ("newline then ProxyCommand in the host", Endpoint("example.com" + INJECTED, 22), "host"),
    ("host that reads as an ssh option", Endpoint("-oProxyCommand=touch%20x", 22), "host"),
    ("space in the host", Endpoint("example.com ProxyCommand", 22), "host"),
    ("carriage return in the host", Endpoint("example.com\rx", 22), "host"),
    ("empty host", Endpoint("", 22), "host"),
    ("empty label in the host", Endpoint("a..example.com", 22), "host"),
    ("label longer than 63", Endpoint("a" * 64 + ".com", 22), "host"),
    ("label ending in a hyphen", Endpoint("bad-.example.com", 22), "host"),
    ("underscore in the host", Endpoint("bad_name.example.com", 22), "host"),
    ("bracketed IPv6", Endpoint("[::1]", 22), "host"),
    ("newline in an IPv6 zone", Endpoint("fe80::1%eth0\nProxyCommand touch x", 22), "host"),
    ("space in an IPv6 zone", Endpoint("fe80::1% -oProxyCommand=x", 22), "host"),
    ("host not a string", Endpoint(b"example.com", 22), "host"),  # type: ignore[arg-type]
    ("port zero", Endpoint("example.com", 0), "port"),
    ("port above 65535", Endpoint("example.com", 65536), "port"),
    ("negative port", Endpoint("example.com", -22), "port"),
    ("port as text with a newline", Endpoint("example.com", "22" + INJECTED), "port"),  # type: ignore[arg-type]
    ("port as text", Endpoint("example.com", "22"), "port"),  # type: ignore[arg-type]
    ("port as a float", Endpoint("example.com", 22.0), "port"),  # type: ignore[arg-type]
    ("port as a bool", Endpoint("example.com", True), "port"),
    ("proxy command on two lines", Endpoint("example.com", 22, proxy_command="nc %h 22" + INJECTED), "proxy"),
    ("proxy command with an escape", Endpoint("example.com", 22, proxy_command="nc %h\x1b[2J 22"), "proxy"),
    ("empty proxy command", Endpoint("example.com", 22, proxy_command=""), "proxy"),
    ("hint on two lines", Endpoint("example.com", 22, client_hints=("brew install x\nrm -rf ~",)), "hint"),
    ("hint with a tab", Endpoint("example.com", 22, client_hints=("a\tb",)), "hint"),
    ("hints as a list", Endpoint("example.com", 22, client_hints=["brew install x"]), "hints"),  # type: ignore[arg-type]
    ("hint not a string", Endpoint("example.com", 22, client_hints=(42,)), "hint"),  # type: ignore[arg-type]
    ("not an Endpoint at all", ("example.com", 22), "not colab_ssh.tunnels.Endpoint"),
]
