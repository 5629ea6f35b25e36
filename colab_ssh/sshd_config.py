"""The sshd configuration colab_ssh runs with (pure text generation).

We run our own sshd with its own, complete config file (``sshd -f``) instead of editing
``/etc/ssh/sshd_config``: nothing of the system's sshd changes, re-runs rewrite one file
with identical bytes, and no keyword can be shadowed by an earlier line elsewhere (sshd
keeps the first value it reads for most keywords, and Debian includes
``sshd_config.d/*.conf`` before everything else).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["SshdSettings", "quote_setenv_value", "render_sshd_config"]


@dataclass(frozen=True)
class SshdSettings:
    """Everything that goes into the generated sshd_config."""

    host_keys: Sequence[Path]
    # The one account that may log in: every other account, root included, is refused whatever
    # its password or keys (on a shared VM, another account's password must not open our sshd).
    user: str = "root"
    password_login: bool = True
    # Where sshd listens: all interfaces when empty (tunnel="none"); loopback only when a tunnel
    # carries the traffic, so the port is not also open on the machine's own address.
    listen_addresses: Sequence[str] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    client_alive_interval: int = 15
    client_alive_count_max: int = 4
    # OpenSSH 9.8+ penalises addresses with failed logins. Behind a tunnel every client comes
    # from 127.0.0.1, so scanners' failures would lock real users out: switch it off there.
    # (Older sshd rejects the keyword, hence a flag set from the installed version.)
    disable_per_source_penalties: bool = False


def quote_setenv_value(value: str) -> str:
    """Quote a value the way sshd's argument splitter reads it back unchanged.

    Inside double quotes sshd honours only the escapes \\\\ and \\", so those are the two
    characters to escape; everything else (spaces, '#', ',', '<', '=') is literal there.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _setenv_line(environment: Mapping[str, str]) -> str:
    # One line for all variables: sshd keeps only the first SetEnv line it reads.
    pairs = " ".join(f"{name}={quote_setenv_value(value)}" for name, value in environment.items())
    return f"SetEnv {pairs}"


def render_sshd_config(settings: SshdSettings) -> str:
    """The whole sshd_config text. The port is passed on sshd's command line (``-p``)."""
    yes_no = "yes" if settings.password_login else "no"
    if settings.user != "root":
        root_login = "no"
    else:  # root is the only account a Colab runtime has
        root_login = "yes" if settings.password_login else "prohibit-password"
    lines = [
        "# Written by colab_ssh for the sshd it starts; rewritten by every start_ssh().",
        "# The listening port is given on sshd's command line.",
        *(f"ListenAddress {address}" for address in settings.listen_addresses),
        *(f"HostKey {path}" for path in settings.host_keys),
        # colab_ssh writes the pid file itself, with what names the process for good (processes.py).
        "PidFile none",
        f"AllowUsers {settings.user}",
        f"PermitRootLogin {root_login}",
        f"PasswordAuthentication {yes_no}",
        "PermitEmptyPasswords no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        # PAM's pam_loginuid refuses logins inside containers such as Colab's; sshd checks
        # passwords against /etc/shadow itself without it.
        "UsePAM no",
        # Keep-alives: notice dead clients, and keep NAT and tunnel connections from idling out.
        f"ClientAliveInterval {settings.client_alive_interval}",
        f"ClientAliveCountMax {settings.client_alive_count_max}",
        "TCPKeepAlive yes",
        # A public tunnel address draws scanners; the default 10:30:100 drops real logins
        # as soon as a few of them hold unauthenticated slots.
        "MaxStartups 100:30:200",
        "LoginGraceTime 30",
        "Subsystem sftp internal-sftp",
        "AcceptEnv LANG LC_*",
        "X11Forwarding no",
        "AllowTcpForwarding yes",
        "PrintMotd no",
        "UseDNS no",
    ]
    if settings.disable_per_source_penalties:
        lines.append("PerSourcePenalties no")
    if settings.environment:
        lines.append(_setenv_line(settings.environment))
    return "\n".join(lines) + "\n"
