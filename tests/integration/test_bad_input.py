"""No way in through bad input: every bad argument of start_ssh() is refused with a message that names
the problem, and leaves the sshd config, authorized_keys, the password and our processes as they were."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from colab_ssh import (
    ColabOnlyError,
    ColabSSHError,
    InvalidArgumentError,
    KeySourceError,
    NgrokAuthtokenError,
    NgrokTcpNeedsCardError,
    SshdStartError,
    start_ssh,
    stop_ssh,
)

from ..support.host import home_of, machine_state, make_client_key
from ..support.stand_ins import GitHubStandIn, NgrokCloud

GOOD_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFMivxONclMHUx+G5Wjm/C0crwJB1VJ/w9EqolwGOeE1 me@laptop"
PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)


@dataclass
class Context:
    tmp: Path
    user: str
    port: int
    cloud: NgrokCloud
    github: GitHubStandIn


Case = tuple[str, Callable[[Context], dict[str, object]], type[Exception], str]

CASES: list[Case] = [
    # ngrok authtokens
    (
        "token with spaces",
        lambda c: {"tunnel": "ngrok", "authtoken": "two words"},
        InvalidArgumentError,
        "spaces",
    ),
    ("empty token", lambda c: {"tunnel": "ngrok", "authtoken": "  "}, InvalidArgumentError, "empty"),
    (
        "token with a newline inside",
        lambda c: {"tunnel": "ngrok", "authtoken": "to\nken"},
        InvalidArgumentError,
        "line breaks",
    ),
    (
        "token not a string",
        lambda c: {"tunnel": "ngrok", "authtoken": 12345},
        InvalidArgumentError,
        "authtoken must be a string",
    ),
    (
        "token ngrok rejects",
        lambda c: {"tunnel": "ngrok", "authtoken": "tok_unknown"},
        NgrokAuthtokenError,
        "ERR_NGROK_105",
    ),
    (
        "account without a card",
        lambda c: {"tunnel": "ngrok", "authtoken": c.cloud.add_account("nc", card=False)},
        NgrokTcpNeedsCardError,
        "ERR_NGROK_8013",
    ),
    # passwords
    ("short password", lambda c: {"password": "short"}, InvalidArgumentError, "too short"),
    (
        "password with a newline",
        lambda c: {"password": "line\nbreak-pass"},
        InvalidArgumentError,
        "line break",
    ),
    (
        "password with a NUL",
        lambda c: {"password": "nul\x00byte-pass"},
        InvalidArgumentError,
        "control character",
    ),
    (
        "password not a string",
        lambda c: {"password": 12345678},
        InvalidArgumentError,
        "password must be a string",
    ),
    (
        "password and a key",
        lambda c: {"password": "long-enough-pw", "public_key": GOOD_KEY},
        InvalidArgumentError,
        "exclude each other",
    ),
    # ports
    ("port zero", lambda c: {"port": 0}, InvalidArgumentError, "port must be"),
    ("port too high", lambda c: {"port": 70000}, InvalidArgumentError, "port must be"),
    ("port as text", lambda c: {"port": "22"}, InvalidArgumentError, "port must be"),
    ("port as bool", lambda c: {"port": True}, InvalidArgumentError, "port must be"),
    ("port in use", lambda c: {"port": c.port}, Exception, "already in use"),  # c.port is held busy
    # public keys
    ("private key pasted", lambda c: {"public_key": PRIVATE_KEY}, InvalidArgumentError, "is a private key"),
    (
        "key with options",
        lambda c: {"public_key": 'command="rm -rf /" ' + GOOD_KEY},
        InvalidArgumentError,
        "authorized_keys options",
    ),
    (
        "two keys in one string",
        lambda c: {"public_key": GOOD_KEY + "\n" + GOOD_KEY},
        InvalidArgumentError,
        "several lines",
    ),
    (
        "damaged key data",
        lambda c: {"public_key": "ssh-ed25519 AAAAnotbase64"},
        InvalidArgumentError,
        "not a valid ssh-ed25519 key",
    ),
    ("empty key", lambda c: {"public_key": ""}, InvalidArgumentError, "is empty"),
    (
        "missing .pub file",
        lambda c: {"public_key": "/nonexistent/id_ed25519.pub"},
        InvalidArgumentError,
        "does not exist",
    ),
    (
        "unknown key type",
        lambda c: {"public_key": "ssh-foo AAAAB3Nza"},
        InvalidArgumentError,
        "not of a supported type",
    ),
    (
        "DSA key",
        lambda c: {"public_key": "ssh-dss AAAAB3NzaC1kc3M="},
        InvalidArgumentError,
        "DSA keys are disabled",
    ),
    (
        "a bad key in a list",
        lambda c: {"public_key": [GOOD_KEY, "nonsense"]},
        InvalidArgumentError,
        "not of a supported type",
    ),
    ("empty key list", lambda c: {"public_key": []}, InvalidArgumentError, "empty list"),
    (
        "private key file",
        lambda c: {"public_key": str(make_client_key(c.tmp / "k").private)},
        InvalidArgumentError,
        "is a private key",
    ),
    # GitHub users
    (
        "GitHub name with spaces",
        lambda c: {"github_user": "bad name!"},
        InvalidArgumentError,
        "not a GitHub user name",
    ),
    ("unknown GitHub user", lambda c: {"github_user": "nobody"}, KeySourceError, "no user 'nobody'"),
    (
        "GitHub user without keys",
        lambda c: c.github.keys.update({"keyless": ""}) or {"github_user": "keyless"},
        KeySourceError,
        "no public SSH keys",
    ),
    # tunnels, regions, users, switches
    ("unknown tunnel name", lambda c: {"tunnel": "carrier-pigeon"}, InvalidArgumentError, "Unknown tunnel"),
    ("tunnel of the wrong type", lambda c: {"tunnel": 42}, InvalidArgumentError, "tunnel must be a name"),
    (
        "region without ngrok",
        lambda c: {"tunnel": "none", "region": "eu"},
        InvalidArgumentError,
        "region= is an ngrok setting",
    ),
    (
        "unknown region",
        lambda c: {"tunnel": "ngrok", "region": "mars"},
        InvalidArgumentError,
        "Unknown ngrok region",
    ),
    ("unknown user", lambda c: {"user": "no-such-user-here"}, InvalidArgumentError, "no user"),
    ("NUL in user", lambda c: {"user": "ro\0ot"}, InvalidArgumentError, "not an account name"),
    ("user with a pattern", lambda c: {"user": "*"}, InvalidArgumentError, "not an account name"),
    ("user nobody", lambda c: {"user": "nobody"}, InvalidArgumentError, "placeholder account"),
    ("system account sshd", lambda c: {"user": "sshd"}, InvalidArgumentError, "is a system account"),
    ("password of spaces only", lambda c: {"password": " " * 12}, InvalidArgumentError, "spaces only"),
    (
        "password with a trailing space",
        lambda c: {"password": "long-enough-1 "},
        InvalidArgumentError,
        "starts or ends with a space",
    ),
    ("mount_drive not a bool", lambda c: {"mount_drive": "yes"}, InvalidArgumentError, "True or False"),
    ("mount_drive outside Colab", lambda c: {"mount_drive": True}, ColabOnlyError, "needs Google Colab"),
    # paths
    ("state_dir is a file", lambda c: {"state_dir": c.tmp / "a-file"}, InvalidArgumentError, "is a file"),
    (
        "host_keys_dir is a file",
        lambda c: {"host_keys_dir": c.tmp / "a-file"},
        InvalidArgumentError,
        "is a file",
    ),
    (
        "host_keys_dir that cannot be written",
        lambda c: {"host_keys_dir": "/proc/1/no-such-folder"},
        ColabSSHError,
        "Could not keep the host keys",
    ),
    (
        "host_keys_dir with a damaged key",
        lambda c: {"host_keys_dir": c.tmp / "damaged-keys"},
        InvalidArgumentError,
        "not an unencrypted OpenSSH private key",
    ),
]


def test_the_table_is_big_and_distinct():
    assert len(CASES) >= 25
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "make", "error", "message"), CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_refused_and_changes_nothing(
    name,
    make,
    error,
    message,
    test_user,
    state_dir,
    tmp_path,
    ngrok_cloud: NgrokCloud,
    github: GitHubStandIn,
    monkeypatch,
):
    # Given a machine where colab_ssh ran before, and the user has a key of their own...
    (tmp_path / "a-file").write_text("not a folder")
    damaged = tmp_path / "damaged-keys"
    damaged.mkdir()
    (damaged / "ssh_host_ed25519_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\ngarbage\n")
    from ..support.host import free_port

    # (by key, so its config differs from the password login most cases ask for: a late failure
    # must put the old config back, not just rewrite the same bytes)
    start_ssh(
        tunnel="none", port=free_port(), user=test_user, state_dir=state_dir, quiet=True, public_key=GOOD_KEY
    )
    stop_ssh()
    ssh_dir = home_of(test_user) / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(GOOD_KEY + "\n")
    monkeypatch.setitem(os.sys.modules, "google.colab", None)  # not in Colab
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen()
    context = Context(tmp_path, test_user, busy.getsockname()[1], ngrok_cloud, github)
    arguments: dict[str, object] = {
        "tunnel": "none",
        "port": free_port(),
        "user": test_user,
        "state_dir": state_dir,
        "quiet": True,
    }
    arguments.update(make(context))
    before = machine_state(state_dir, test_user)

    # ...when start_ssh() gets the bad input...
    try:
        with pytest.raises(error) as raised:
            start_ssh(**arguments)
    finally:
        busy.close()

    # ...then the error names the problem, and nothing changed.
    assert message in str(raised.value)
    assert raised.type is not SshdStartError
    assert machine_state(state_dir, test_user) == before
