"""Connections to render: a plain one (a well-formed host key, so it has a connection code), and one
whose every field tries to inject markup or script (a code cannot carry it: no connect line)."""

from __future__ import annotations

from colab_ssh.connection import Connection, HostKey

PLAIN = Connection(
    host="0.tcp.ngrok.io",
    port=12345,
    user="root",
    password="Xy7Qk2mP9aBcDeFgHiJkLmNo",
    local_port=22,
    tunnel="ngrok",
    host_keys=(
        HostKey(
            "ssh-ed25519",
            "SHA256:SZvynbzZGEePifPGzBiFSA3thA+8INMw7/sSrpx0dms",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOroWYl4ZzlVDDGJcL0Ho+zksGcfKkXs7cOwPB8Z+uHi",
        ),
        HostKey("ssh-rsa", "SHA256:zyxWVUtsrQPOnmlKJIhgfEDCba9876543210zyxwvut", ""),
    ),
    sshfs_path="/content",
)

INJECTED = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
HOSTILE = Connection(
    host=f'evil"&host{INJECTED}',
    port=2222,
    user=f"u'&<b>{INJECTED}",
    password=f"pa'ss\"&<>{INJECTED}",
    local_port=22,
    tunnel=f"tun<i>{INJECTED}",
    host_keys=(HostKey(f"kind{INJECTED}", f"SHA256:fp{INJECTED}", f"ssh-ed25519 AAAA{INJECTED}"),),
    sshfs_path=f"/content/x y{INJECTED}",
    proxy_command=f"cloudflared access tcp --hostname %h </pre>{INJECTED}",
    client_hints=(f"brew install thing && echo '{INJECTED}'",),
)


def commands(connection: Connection) -> list[str]:
    """What gets a copy button, in order: the connect line (when there is a code), each command, the
    password, the config block, the known_hosts lines."""
    found = [] if connection.connect_command is None else [connection.connect_command]
    found.append(connection.ssh_command)
    if connection.password is not None:
        found.append(connection.password)
    found += [connection.sshfs_command, connection.ssh_config]
    return found + ([connection.known_hosts] if connection.known_hosts else [])
