"""The connection details handed to the user, and their text forms (pure functions)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .card import render_html

if TYPE_CHECKING:  # connect_code loads (hashlib, json) only when a code is made, off import's path
    from .connect_code import ConnectDetails

__all__ = [
    "CONNECTION_SHARING_OPTIONS",
    "KEEP_ALIVE_OPTIONS",
    "Connection",
    "HostKey",
    "address_options",
    "alias_of_keys",
    "render_details",
]

SSH_CONFIG_ALIAS = "colab"
# What the laptop runs: the laptop half of this distribution (colab_ssh.laptop).
CONNECT_PROGRAM = "colab-ssh connect"
DRIVE_PATH = "/content/drive/MyDrive"

# Client-side keep-alive: notice a dead tunnel within a minute instead of hanging.
SERVER_ALIVE_INTERVAL = 15
SERVER_ALIVE_COUNT_MAX = 4
# Connection sharing: the second `ssh colab` (and VS Code's many) reuse the first connection
# instead of paying the tunnel's round trips for a new handshake and login.
CONTROL_PERSIST = "10m"
# The options both ~/.ssh/config blocks write (unindented): the by-hand one here
# (Connection.ssh_config) and the one `colab-ssh connect` manages (laptop/ssh_config.py).
KEEP_ALIVE_OPTIONS = (
    f"ServerAliveInterval {SERVER_ALIVE_INTERVAL}",
    f"ServerAliveCountMax {SERVER_ALIVE_COUNT_MAX}",
)
# Not on Windows: Win32-OpenSSH has no connection sharing (no Unix sockets).
CONNECTION_SHARING_OPTIONS = (
    "ControlMaster auto",
    "ControlPath ~/.ssh/colab-%C",
    f"ControlPersist {CONTROL_PERSIST}",
)
# sshfs over a link with 100 ms round trips: cache what an editor asks for again and again
# (measured in benchmarks/RESULTS.md, row 4b). Every open() still costs one round trip, whatever
# the options: sshfs sends an SFTP OPEN each time. A file saved on the client is on the server
# when close() returns, with or without these options: they cache reads, never writes.
SSHFS_CACHE_OPTIONS = (
    # Keep a file's contents across opens while its size and mtime stay the same. Each open
    # fetches both anyway (sshfs sends a stat along with the OPEN), and ac_attr_timeout=0
    # compares them at every open, so a file changed on the server is read afresh at no cost in
    # round trips. (kernel_cache, the alternative, keeps serving the old contents.) Trade-off:
    # a change that keeps both the size and the second of the mtime goes unnoticed.
    "auto_cache",
    "ac_attr_timeout=0",
    # Names and attributes, in sshfs's cache (dir_cache, dcache_timeout; 20 s by default) and in
    # the kernel's (entry_timeout, attr_timeout; 1 s by default), for 60 s: going through a
    # project of a few hundred files takes a minute over such a link, and shorter caches expire
    # before the second look. Trade-off: a file created, deleted or resized on the server shows
    # in listings up to 60 s late, and a file that grew or shrank there may read once at its old
    # size (plain sshfs does the same within its 20 s).
    "dir_cache=yes",
    "dcache_timeout=60",
    "entry_timeout=60",
    "attr_timeout=60",
)


def address_options(host: str, port: int, user: str, host_key_alias: str) -> list[str]:
    """Where to connect, as whom, and the name known_hosts files the keys under: the first
    options of both config blocks (unindented)."""
    return [
        # ssh expands %-tokens in HostName: an IPv6 zone id ("%eth0", which the tunnel side
        # allows) is written "%%eth0", else ssh stops at the unknown token "%e".
        f"HostName {host.replace('%', '%%')}",
        f"Port {port}",
        f"User {user}",
        f"HostKeyAlias {host_key_alias}",
    ]


@dataclass(frozen=True)
class HostKey:
    """One host key of the sshd we run."""

    kind: str  # e.g. "ssh-ed25519"
    fingerprint: str  # "SHA256:..." as ssh prints it
    public_key: str = ""  # "ssh-ed25519 AAAA...": what a known_hosts line holds


def alias_of_keys(host_keys: tuple[HostKey, ...]) -> str:
    """The name known_hosts files the host keys under, independent of the tunnel's address.

    Derived from the host key, so it stays the same for as long as the keys do (keep them
    with host_keys_dir=), and a runtime with new keys gets a new name: a first-connection
    prompt instead of "REMOTE HOST IDENTIFICATION HAS CHANGED".
    """
    if not host_keys:
        return "colab-ssh"
    digest = host_keys[0].fingerprint.removeprefix("SHA256:")
    cleaned = "".join(ch for ch in digest if ch.isalnum())[:10].lower()
    return f"colab-ssh-{cleaned}"


@dataclass(frozen=True)
class Connection:
    """How to reach the SSH server that start_ssh() set up."""

    host: str
    port: int
    user: str
    password: str | None = field(repr=False)  # None when login is by key only; repr would print it
    local_port: int
    tunnel: str
    host_keys: tuple[HostKey, ...] = ()
    sshfs_path: str = "/content"
    proxy_command: str | None = None  # client-side ProxyCommand some tunnels need (%h = host)
    client_hints: tuple[str, ...] = ()  # how to install what the client side needs

    def _repr_html_(self) -> str:
        """The card, when a notebook shows the object (e.g. ``conn`` as a cell's last line)."""
        return render_html(self)

    @property
    def config_alias(self) -> str:
        """The Host name the ~/.ssh/config block defines (and VS Code's Remote-SSH lists)."""
        return SSH_CONFIG_ALIAS

    @property
    def key_login(self) -> bool:
        return self.password is None

    @property
    def host_key_alias(self) -> str:
        """The name known_hosts files the host keys under (see :func:`alias_of_keys`)."""
        return alias_of_keys(self.host_keys)

    @property
    def connect_details(self) -> ConnectDetails:
        """What a connection code carries: where to connect and which host keys to pin, no secret."""
        from .connect_code import ConnectDetails

        return ConnectDetails(
            host=self.host,
            port=self.port,
            user=self.user,
            tunnel=self.tunnel,
            host_key_alias=self.host_key_alias,
            host_keys=tuple(key.public_key for key in self.host_keys if key.public_key),
            client_command=self.proxy_command,
        )

    @property
    def connect_code(self) -> str | None:
        """The one-line code ``colab-ssh connect`` takes on the laptop (never the password).

        None when a code cannot carry this connection: no public host key to pin, or a value the
        laptop would refuse to write into an ssh config (a tunnel of your own whose name is not
        one word, or whose client command is not one colab-ssh runs). The config block below
        still works then, by hand.
        """
        from .connect_code import ConnectCodeError, encode

        try:
            return encode(self.connect_details)
        except ConnectCodeError:
            return None

    @property
    def connect_command(self) -> str | None:
        """``colab-ssh connect <code>``: the line to run on the laptop (None without a code)."""
        code = self.connect_code
        return None if code is None else f"{CONNECT_PROGRAM} {code}"

    def _port_arguments(self, flag: str) -> list[str]:
        return [] if self.port == 22 else [flag, str(self.port)]

    def _proxy_arguments(self) -> list[str]:
        return [] if self.proxy_command is None else ["-o", f"ProxyCommand={self.proxy_command}"]

    @property
    def ssh_command(self) -> str:
        return shlex.join(
            ["ssh", *self._port_arguments("-p"), *self._proxy_arguments(), f"{self.user}@{self.host}"]
        )

    @property
    def sshfs_command(self) -> str:
        """Mounts ``sshfs_path`` on the client: reconnects, keeps the link alive, caches metadata."""
        options = [
            "reconnect",
            f"ServerAliveInterval={SERVER_ALIVE_INTERVAL}",
            f"ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}",
            *SSHFS_CACHE_OPTIONS,
        ]
        mount_point = "~/colab-drive" if self.sshfs_path == DRIVE_PATH else "~/colab"
        remote = shlex.quote(f"{self.user}@{self.host}:{self.sshfs_path}")
        sshfs = [
            "sshfs",
            *self._port_arguments("-p"),
            "-o",
            ",".join(options),
            *self._proxy_arguments(),
            remote,
            mount_point,
        ]
        return f"mkdir -p {mount_point} && " + " ".join(
            part if part in (remote, mount_point) else shlex.quote(part) for part in sshfs
        )

    @property
    def ssh_config(self) -> str:
        """A ``~/.ssh/config`` block to paste: ``ssh colab`` and VS Code Remote-SSH's host list.

        The options `colab-ssh connect` writes too (shared with laptop/ssh_config.py), without its
        markers, its StrictHostKeyChecking (the pin here is the user's choice) and its per-platform
        forms: one text for every laptop, with a comment for Windows.
        """
        options = address_options(self.host, self.port, self.user, self.host_key_alias)
        if self.proxy_command is not None:
            options.append(f"ProxyCommand {self.proxy_command}")
        options += [
            *KEEP_ALIVE_OPTIONS,
            "# Windows' OpenSSH has no connection sharing: drop the next three lines there.",
            *CONNECTION_SHARING_OPTIONS,
        ]
        return "\n".join([f"Host {SSH_CONFIG_ALIAS}", *(f"    {option}" for option in options)])

    @property
    def known_hosts(self) -> str:
        """Lines for ~/.ssh/known_hosts that pin the host keys before the first connection."""
        return "\n".join(
            f"{self.host_key_alias} {key.public_key}" for key in self.host_keys if key.public_key
        )


def render_details(connection: Connection) -> str:
    """The plain-text block start_ssh() prints: the connect line first, then the commands, then
    what that line writes, for doing it by hand."""
    lines = ["SSH server is up.", ""]
    if connection.connect_command is not None:
        lines += [
            "On your laptop (with this package installed there too: pip or pipx, as in the notebook), run:",
            "",
            f"  {connection.connect_command}",
            "",
            f"It writes Host {SSH_CONFIG_ALIAS} into ~/.ssh/config and pins the host key: then"
            f" `ssh {SSH_CONFIG_ALIAS}`, or pick '{SSH_CONFIG_ALIAS}' in VS Code's Remote-SSH:"
            " Connect to Host...",
            "",
        ]
    lines.append(f"  ssh:      {connection.ssh_command}")
    if connection.key_login:
        lines.append("  login:    with your SSH key (password login is off)")
    else:
        lines.append(f"  password: {connection.password}")
    lines += [f"  sshfs:    {connection.sshfs_command}", ""]
    if connection.client_hints:
        lines += ["Your computer needs:", *(f"  {hint}" for hint in connection.client_hints), ""]
    lines += [
        "Host-key fingerprints (compare with what ssh shows on first connect):",
        *(f"  {key.kind:<20} {key.fingerprint}" for key in connection.host_keys),
        "",
    ]
    if connection.connect_command is not None:
        lines.append("By hand instead, the ~/.ssh/config block:")
    else:
        lines.append(
            f"~/.ssh/config block (then `ssh {SSH_CONFIG_ALIAS}`, or pick '{SSH_CONFIG_ALIAS}' in VS Code's"
            " Remote-SSH: Connect to Host...):"
        )
    lines += ["", *(f"  {line}" for line in connection.ssh_config.splitlines())]
    if connection.known_hosts:
        lines += [
            "",
            "To trust this server before connecting, add to ~/.ssh/known_hosts:",
            "",
            *(f"  {line}" for line in connection.known_hosts.splitlines()),
        ]
    return "\n".join(lines) + "\n"
