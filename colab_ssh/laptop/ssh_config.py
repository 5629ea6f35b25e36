"""The managed ``Host NAME`` block in the laptop's ssh config: its text per platform, and putting
it into (or taking it out of) the user's existing config text. Pure: text in, text out.

Every byte outside the block stays as it was: line endings (a CRLF file gets a CRLF block), a
missing final newline, comments, Include lines, Match blocks, text that is not UTF-8 (decoded
with ``surrogateescape`` by the caller, so it comes back byte for byte).

Where the block goes. ssh_config is first-match: for each option, the first value that applies
wins. A new block therefore goes at the very top of the file, before any ``Host *`` or Include
whose options would otherwise win for ours; an existing block is replaced where it stands. A
block at the top would swallow the options written above the first ``Host`` line (they apply to
every host), so the block ends with ``Match all``, after which lines apply to every host again.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath, PureWindowsPath

from ..connect_code import ConnectCodeError, ConnectDetails, check_details, check_port, check_token
from ..connection import CONNECTION_SHARING_OPTIONS, KEEP_ALIVE_OPTIONS, address_options

__all__ = [
    "PLATFORMS",
    "Block",
    "ConfigError",
    "aliases_in_use",
    "known_hosts_option",
    "managed_alias",
    "quote_command",
    "remove_block",
    "render_block",
    "upsert_block",
]

PLATFORMS = ("linux", "darwin", "windows")
_BEGIN = "# BEGIN colab-ssh {name}"
_END = "# END colab-ssh {name}"
_MARKER = re.compile(r"[ \t]*# (BEGIN|END) colab-ssh (\S+)(?:[ \t].*)?")
_KEYWORD = re.compile(r"[ \t]*([A-Za-z]+)(?:[ \t]*=[ \t]*|[ \t]+)(.*)")


class ConfigError(ValueError):
    """The config cannot be changed safely; the message names the file's problem and the fix."""


@dataclass(frozen=True)
class Block:
    """What the managed block says: the runtime's details and how this laptop reaches it."""

    name: str  # the Host alias: `ssh NAME`
    details: ConnectDetails
    platform: str  # "linux", "darwin" or "windows": what this laptop's OpenSSH understands
    known_hosts: str  # the file `connect` pinned the host keys in: the block's UserKnownHostsFile
    proxy: tuple[str, ...] | None = None  # ProxyCommand's argv; "%h" and "%p" stay ssh's tokens
    forwards: tuple[int, ...] = ()  # LocalForward PORT localhost:PORT


def _check_name(name: str) -> str:
    try:
        return check_token(name, "name")
    except ConnectCodeError:
        raise ConfigError(
            f"the name {name!r} is not one word: use letters, digits, '.', '_' and '-' (no spaces or"
            " wildcards), e.g. --name colab-2"
        ) from None


def quote_command(argv: Sequence[str], platform: str) -> str:
    """ProxyCommand's text for ``argv``, as this platform's OpenSSH runs it.

    ssh expands ``%`` tokens first, so a literal ``%`` (a folder named "100%") is written ``%%``;
    ``%h`` and ``%p`` given alone stay tokens. Then:

    - Linux and macOS: ssh runs ``$SHELL -c "exec <command>"``, so each word is quoted for a
      POSIX shell (shlex).
    - Windows: Win32-OpenSSH has no shell here. Its ssh passes the command line, unsplit, to
      ``posix_spawnp``, whose ``build_commandline_string`` hands it to CreateProcessW; a line
      that starts with ``"`` is taken as quoted program path then arguments (PowerShell/openssh-
      portable, sshconnect.c ``ssh_proxy_connect`` under FORK_NOT_SUPPORTED, and
      contrib/win32/win32compat/misc.c). So the program is always double-quoted (``"C:\\Program
      Files\\Python312\\python.exe"``, which coder's config-ssh also writes: coder/coder#7639),
      and the arguments follow the Microsoft C runtime's rules (subprocess.list2cmdline), which
      the program parses its command line with.
    """
    words = [word if word in ("%h", "%p") else word.replace("%", "%%") for word in argv]
    for word in words:
        if not word or any(ch in word for ch in "\r\n\x00") or (platform == "windows" and '"' in word):
            raise ConfigError(f"cannot write {word!r} into a ProxyCommand line: rename or move it")
    if platform == "windows":
        program, *arguments = words
        return f'"{program}"' + "".join(" " + subprocess.list2cmdline([word]) for word in arguments)
    return " ".join(word if word in ("%h", "%p") else shlex.quote(word) for word in words)


def known_hosts_option(path: str, platform: str) -> str:
    """``UserKnownHostsFile "PATH"``: ssh reads the pin from exactly the file `connect` wrote it to.

    Without it, a ``UserKnownHostsFile`` of the user's (under ``Host *``, say) would send ssh to
    another file, where our alias has no key: with StrictHostKeyChecking yes, every login fails.
    The block comes first, so its value wins. The path is quoted (a home may hold a space), a
    ``%`` written ``%%`` (ssh expands tokens there); Windows' separators are written as ``/``,
    which Win32-OpenSSH takes, since OpenSSH 8.7's config parser reads a backslash as an escape.
    """
    text = PureWindowsPath(path).as_posix() if platform == "windows" else path
    if not text or "${" in text or any(ch in text for ch in '"\\\r\n\x00'):
        raise ConfigError(
            f"cannot write {path!r} into UserKnownHostsFile (ssh_config cannot quote a '\"', '\\',"
            " '${' or a line break): run colab-ssh from an account whose home folder has none"
        )
    return f'UserKnownHostsFile "{text.replace("%", "%%")}"'


def render_block(block: Block, newline: str = "\n") -> str:
    """The managed block, markers included, each line ending with ``newline``."""
    if block.platform not in PLATFORMS:
        raise ValueError(f"platform {block.platform!r} is not one of {PLATFORMS}")
    name = _check_name(block.name)
    details = check_details(block.details)
    options = [
        *address_options(details.host, details.port, details.user, details.host_key_alias),
        # known_hosts holds the runtime's key under this alias (`connect` pinned it), so checking
        # stays strict: the first connection is verified too, and a different key is refused.
        "StrictHostKeyChecking yes",
        known_hosts_option(block.known_hosts, block.platform),
    ]
    if block.proxy is not None:
        options.append(f"ProxyCommand {quote_command(block.proxy, block.platform)}")
    options += [f"LocalForward {check_port(port)} localhost:{port}" for port in block.forwards]
    options += KEEP_ALIVE_OPTIONS
    if block.platform != "windows":  # Win32-OpenSSH has no connection sharing (no Unix sockets)
        options += CONNECTION_SHARING_OPTIONS
    lines = [
        f"{_BEGIN.format(name=name)} (managed by `colab-ssh connect`; edits here are lost)",
        f"Host {name}",
        *(f"    {option}" for option in options),
    ]
    lines += ["Match all", _END.format(name=name)]
    return "".join(line + newline for line in lines)


# --- finding blocks in the user's text ---------------------------------------------------------


def _lines(text: str) -> list[str]:
    """The lines with their endings; only "\\n" ends a line (as for ssh), so every byte is kept."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _content(line: str) -> str:
    return line.rstrip("\n").removesuffix("\r")


def _newline(text: str) -> str:
    first = re.search(r"\r?\n", text)
    return first.group() if first else "\n"


@dataclass(frozen=True)
class _Span:
    start: int  # index of the BEGIN line
    end: int  # index after the END line


def _check_readable(text: str, path: PurePath | str) -> None:
    if text.startswith("\ufeff") or "\x00" in text:
        # OpenSSH reads a byte-order mark as part of the first keyword and stops ("Bad
        # configuration option: \357\273\277" here; \377\376 for UTF-16, PowerShell/Win32-
        # OpenSSH#1814), so such a file already fails for every host.
        raise ConfigError(
            f"{path} is saved with a byte-order mark or as UTF-16, which OpenSSH cannot"
            " read: save it as UTF-8 without BOM (Notepad: Save as, Encoding 'UTF-8'), then run this"
            " again"
        )


def _blocks(lines: list[str], path: PurePath | str) -> dict[str, _Span]:
    """Every managed block by name; ConfigError for damaged markers."""
    found: dict[str, _Span] = {}
    open_name: str | None = None
    open_at = 0
    for index, line in enumerate(lines):
        marker = _MARKER.fullmatch(_content(line))
        if marker is None:
            continue
        kind, name = marker.groups()
        where = f"{path} line {index + 1}"
        if kind == "BEGIN":
            if open_name is not None:
                raise ConfigError(
                    f"{where}: a second '# BEGIN colab-ssh {name}' before '# END colab-ssh {open_name}'"
                    f" (line {open_at + 1}): delete the lines colab-ssh wrote there, then run this again"
                )
            if name in found:
                raise ConfigError(
                    f"{where}: the block '{name}' is there twice: delete one of them (from '# BEGIN"
                    f" colab-ssh {name}' to '# END colab-ssh {name}'), then run this again"
                )
            open_name, open_at = name, index
        elif open_name != name:
            raise ConfigError(
                f"{where}: '# END colab-ssh {name}' without its '# BEGIN colab-ssh {name}' line:"
                " delete the lines colab-ssh wrote there, then run this again"
            )
        else:
            found[name] = _Span(open_at, index + 1)
            open_name = None
    if open_name is not None:
        raise ConfigError(
            f"{path} line {open_at + 1}: '# BEGIN colab-ssh {open_name}' without its"
            f" '# END colab-ssh {open_name}' line: delete the lines colab-ssh wrote there (or add"
            " the END line after them), then run this again"
        )
    return found


def _host_patterns(line: str) -> list[str]:
    keyword = _KEYWORD.fullmatch(_content(line))
    if keyword is None or keyword.group(1).lower() != "host":
        return []
    # Keywords are case-insensitive; host patterns are not (`ssh COLAB` skips `Host colab`).
    return [pattern.strip('"') for pattern in keyword.group(2).split()]


def _refuse_foreign_host(lines: list[str], spans: dict[str, _Span], name: str, path: PurePath | str) -> None:
    ours = {index for span in spans.values() for index in range(span.start, span.end)}
    for index, line in enumerate(lines):
        if index not in ours and name in _host_patterns(line):
            raise ConfigError(
                f"{path} line {index + 1} has a 'Host {name}' that colab-ssh did not write;"
                f" it is left alone: pick another name with --name (e.g. --name {name}-2), or delete"
                " that block yourself"
            )


def upsert_block(text: str, block: Block, path: PurePath | str = "~/.ssh/config") -> str:
    """``text`` with the block for ``block.name`` replaced in place, or added at the top."""
    _check_readable(text, path)
    name = _check_name(block.name)
    lines = _lines(text)
    spans = _blocks(lines, path)
    _refuse_foreign_host(lines, spans, name, path)
    rendered = render_block(block, _newline(text))
    span = spans.get(name)
    if span is None:
        return rendered + text
    old = lines[span.start : span.end]
    if not old[-1].endswith("\n"):  # the block was the file's end, without a final newline
        rendered = rendered.removesuffix(_newline(text))
    return "".join(lines[: span.start]) + rendered + "".join(lines[span.end :])


def remove_block(text: str, name: str, path: PurePath | str = "~/.ssh/config") -> str:
    """``text`` without the block named ``name`` (the same text if there is none)."""
    _check_readable(text, path)
    lines = _lines(text)
    span = _blocks(lines, path).get(_check_name(name))
    if span is None:
        return text
    return "".join(lines[: span.start] + lines[span.end :])


def _alias_of(lines: list[str]) -> str | None:
    for line in lines:
        keyword = _KEYWORD.fullmatch(_content(line))
        if keyword is not None and keyword.group(1).lower() == "hostkeyalias":
            return keyword.group(2).strip()
    return None


def managed_alias(text: str, name: str, path: PurePath | str = "~/.ssh/config") -> str | None:
    """The HostKeyAlias the managed block ``name`` names, None without such a block."""
    _check_readable(text, path)
    lines = _lines(text)
    span = _blocks(lines, path).get(_check_name(name))
    if span is None:
        return None
    alias = _alias_of(lines[span.start : span.end])
    try:
        return None if alias is None else check_token(alias, "host key alias")
    except ConnectCodeError:
        return None


def aliases_in_use(text: str, path: PurePath | str = "~/.ssh/config") -> dict[str, str]:
    """Each managed block's name and its HostKeyAlias."""
    _check_readable(text, path)
    lines = _lines(text)
    found = {}
    for name, span in _blocks(lines, path).items():
        alias = _alias_of(lines[span.start : span.end])
        if alias is not None:
            found[name] = alias
    return found
