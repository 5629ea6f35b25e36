"""Shared test data for the laptop's ssh config: host keys built by hand (no ssh-keygen in tests/unit),
a runtime's details (over ngrok, and over cloudflared with its client command), and the table of
existing config files, accepted and refused."""

from __future__ import annotations

import base64
import dataclasses
import struct

from colab_ssh.connect_code import ConnectDetails


def public_key(kind: str = "ssh-ed25519", body: bytes = bytes(range(32)), named: str | None = None) -> str:
    """A public key line as OpenSSH writes it: the blob is (uint32 length, type name, key data);
    ``named`` puts another type name in the blob (a key that lies about its type)."""
    name = (named or kind).encode()
    blob = struct.pack(">I", len(name)) + name + struct.pack(">I", len(body)) + body
    return f"{kind} {base64.b64encode(blob).decode()}"


KEY = public_key()
KEY_2 = public_key(body=bytes(range(1, 33)))
DETAILS = ConnectDetails(
    host="0.tcp.eu.ngrok.io",
    port=12345,
    user="root",
    tunnel="ngrok",
    host_key_alias="colab-ssh-abcdef0123",
    host_keys=(KEY,),
)
CLOUDFLARED_DETAILS = dataclasses.replace(
    DETAILS,
    host="humble-yellow-bright-garden.trycloudflare.com",
    port=22,
    tunnel="cloudflared",
    client_command="cloudflared access ssh --hostname %h",
)


def begin_line(text: str, name: str = "colab") -> int:
    """Where the line with the block's BEGIN marker starts, -1 if there is none."""
    marker = text.find(f"# BEGIN colab-ssh {name} ")
    return marker if marker == -1 else text.rfind("\n", 0, marker) + 1


def outside(text: str, name: str = "colab") -> str:
    """The text without the managed block ``name``: found here by its marker lines alone, not by
    the code under test."""
    begin = begin_line(text, name)
    if begin == -1:
        return text
    end_marker = f"# END colab-ssh {name}"
    end = text.index(end_marker, begin) + len(end_marker)
    if text[end : end + 2] == "\r\n":
        end += 2
    elif text[end : end + 1] == "\n":
        end += 1
    return text[:begin] + text[end:]


OUR_OLD_BLOCK = (
    "# BEGIN colab-ssh colab (written by `colab-ssh connect`; edits here are lost)\n"
    "Host colab\n    HostName old.example\n    Port 1\n    HostKeyAlias colab-ssh-abcdef0123\n"
    "Match all\n# END colab-ssh colab\n"
)
OTHER_NAME_BLOCK = OUR_OLD_BLOCK.replace("colab (", "colab-2 (").replace("colab\n", "colab-2\n")

ACCEPTED = {
    "missing": None,
    "empty": "",
    "one host": "Host github.com\n    User git\n",
    "crlf": "Host github.com\r\n    User git\r\n\r\nHost *\r\n    ServerAliveInterval 60\r\n",
    "no final newline": "Host github.com\n    User git",
    "include lines": "Include ~/.orbstack/ssh/config\nInclude config.d/*\n\nHost a\n  Port 2\n",
    "match blocks": 'Match host *.corp exec "test -f ~/.vpn"\n    ProxyJump bastion\nMatch all\n',
    "global options first": "ServerAliveInterval 60\nForwardAgent no\n\nHost a\n  HostName a.example\n",
    "host star": "Host *\n    StrictHostKeyChecking no\n    User nobody\n    ControlMaster no\n",
    "non-ascii comments": "# Jörg's café ✓ 日本語\nHost naïve\n    User ü\n",
    "not utf-8": "# caf\udce9 (latin-1 bytes, kept as they were)\nHost a\n",
    "tabs": "Host\ta\n\tHostName\ta.example\n\tPort\t2222\n",
    "only comments": "# nothing here yet\n#Host colab\n",
    "a negated colab": "Host * !colab\n    User someone\n",
    "COLAB, another host for ssh": "Host COLAB\n    User upper\n",  # patterns match case-sensitively
    "colab as part of a longer name": "Host colab-old colabx\n    User x\n",
    "our block, in the middle": "Host a\n  Port 1\n\n" + OUR_OLD_BLOCK + "\nHost b\n  Port 2\n",
    "our block, crlf": ("Host a\n  Port 1\n" + OUR_OLD_BLOCK).replace("\n", "\r\n"),
    "our block, last, no final newline": "Host a\n  Port 1\n" + OUR_OLD_BLOCK.rstrip("\n"),
    "another name's block": OTHER_NAME_BLOCK + "Host a\n",
    "our block, indented markers kept": "Host a\n" + OUR_OLD_BLOCK.replace("# BEGIN", "  # BEGIN"),
    "blank lines and trailing spaces": "\n\n   \nHost a   \n    Port 1 \n\n\n",
}


REFUSED = {
    "a foreign Host colab": (
        "Host github.com\n  User git\nHost colab\n  HostName mine.example\n",
        "line 3 has a 'Host colab' that colab-ssh did not write",
    ),
    "colab among other names": ("Host dev colab\n  User me\n", "line 1 has a 'Host colab'"),
    "Host=colab": ("Host=colab\n", "line 1 has a 'Host colab'"),
    "keyword case, tabs, quotes": ('\tHOST\t"colab"\n', "line 1 has a 'Host colab'"),
    "crlf foreign": ("Host x\r\nHost colab\r\n", "line 2 has a 'Host colab'"),
    "our block twice": (
        OUR_OLD_BLOCK + OUR_OLD_BLOCK,
        "the block 'colab' is there twice: delete one of them",
    ),
    "begin without end": (
        "Host a\n" + OUR_OLD_BLOCK.replace("# END colab-ssh colab\n", ""),
        r"line 2: '# BEGIN colab-ssh colab' without its '# END colab-ssh colab' line",
    ),
    "end without begin": (
        "Host a\n# END colab-ssh colab\n",
        r"line 2: '# END colab-ssh colab' without its '# BEGIN",
    ),
    "nested begins": (
        OUR_OLD_BLOCK.replace("Host colab\n", "# BEGIN colab-ssh colab-2 (x)\n"),
        "a second '# BEGIN colab-ssh colab-2' before '# END colab-ssh colab'",
    ),
    "utf-8 byte-order mark": ("\ufeffHost a\n", "byte-order mark or as UTF-16, which OpenSSH cannot read"),
    "utf-16": ("H\x00o\x00s\x00t\x00", "byte-order mark or as UTF-16"),
}
