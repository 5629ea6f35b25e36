"""``colab-ssh connect`` and ``disconnect`` on a laptop's real files (a temporary home): what they write,
the mode, the backup, atomic replacement, and on every error one line, exit 1, the files untouched.
Also: the laptop commands run with every runtime-only module blocked."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import stat
import sys
from pathlib import Path

import pytest

from colab_ssh.connect_code import encode
from colab_ssh.laptop import commands, files
from colab_ssh.laptop.commands import Laptop, run_on

from ..support.laptop_configs import CLOUDFLARED_DETAILS, DETAILS, KEY, KEY_2, outside

CODE = encode(DETAILS)
MOVED = encode(dataclasses.replace(DETAILS, host="4.tcp.eu.ngrok.io", port=17001))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="colab-ssh")
    commands.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.fixture
def laptop(tmp_path: Path) -> Laptop:
    home = tmp_path / "home"
    home.mkdir()
    return laptop_of(home)


def laptop_of(home: Path) -> Laptop:
    return Laptop(home, "linux", "/opt/venv/bin/python", {}, io.StringIO(), io.StringIO())


def run(laptop: Laptop, *argv: str) -> int:
    return run_on(parse(*argv), laptop)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``folder``: its bytes, mode and modification time."""
    return {
        str(path.relative_to(folder)): (path.read_bytes(), path.stat().st_mode, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- connect -------------------------------------------------------------------------------------


def test_connect_on_a_fresh_laptop_makes_the_folder_the_config_and_the_pin(laptop):
    assert run(laptop, "connect", CODE) == 0
    ssh = laptop.home / ".ssh"
    assert mode(ssh) == 0o700
    assert mode(ssh / "config") == 0o600
    assert mode(ssh / "known_hosts") == 0o600
    config = (ssh / "config").read_text()
    assert "Host colab\n    HostName 0.tcp.eu.ngrok.io\n    Port 12345\n" in config
    assert "ProxyCommand" not in config  # no lookup source: a plain address
    assert (ssh / "known_hosts").read_text() == f"colab-ssh-abcdef0123 {KEY}\n"
    assert not list(ssh.glob("*.colab-ssh.bak"))  # nothing to back up
    assert not list(ssh.glob(".*.tmp"))
    out = laptop.out.getvalue()
    assert "  ssh colab\n" in out
    assert "VS Code: Remote-SSH: Connect to Host... -> colab" in out
    assert laptop.err.getvalue() == ""


def test_connect_again_updates_in_place_keeps_the_mode_and_a_backup(laptop):
    ssh = laptop.home / ".ssh"
    ssh.mkdir(mode=0o755)
    user_config = "Host github.com\r\n    User git\r\n"
    (ssh / "config").write_bytes(user_config.encode())
    (ssh / "config").chmod(0o644)
    (ssh / "known_hosts").write_text(f"github.com {KEY_2}\n")
    assert run(laptop, "connect", CODE) == 0
    first = (ssh / "config").read_bytes().decode()
    assert run(laptop, "connect", MOVED) == 0
    second = (ssh / "config").read_bytes().decode()
    assert "HostName 4.tcp.eu.ngrok.io\r\n    Port 17001\r\n" in second
    assert outside(second) == user_config
    assert mode(ssh / "config") == 0o644
    assert mode(ssh) == 0o755  # an existing folder is left as it is
    assert (ssh / "config.colab-ssh.bak").read_bytes().decode() == first
    assert mode(ssh / "config.colab-ssh.bak") == 0o600
    assert (ssh / "known_hosts").read_text() == f"colab-ssh-abcdef0123 {KEY}\ngithub.com {KEY_2}\n"
    assert "(the previous file is" in laptop.out.getvalue()


def test_connect_writes_through_a_linked_config(laptop, tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "ssh_config").write_text("Host a\n")
    ssh = laptop.home / ".ssh"
    ssh.mkdir()
    (ssh / "config").symlink_to(dotfiles / "ssh_config")
    assert run(laptop, "connect", CODE) == 0
    assert (ssh / "config").is_symlink()
    assert outside((dotfiles / "ssh_config").read_text()) == "Host a\n"
    assert (dotfiles / "ssh_config.colab-ssh.bak").read_text() == "Host a\n"


def test_forward_adds_local_forwards_once_each(laptop):
    assert run(laptop, "connect", CODE, "--forward", "6006", "--forward", "8888", "--forward", "6006") == 0
    config = (laptop.home / ".ssh" / "config").read_text()
    assert "    LocalForward 6006 localhost:6006\n    LocalForward 8888 localhost:8888\n" in config
    assert config.count("LocalForward") == 2


def test_from_a_folder_writes_the_lookup_proxy(laptop, tmp_path):
    drive = tmp_path / "My Drive" / "colab-ssh"
    drive.mkdir(parents=True)
    assert run(laptop, "connect", CODE, "--from", str(drive), "--name", "gpu") == 0
    config = (laptop.home / ".ssh" / "config").read_text()
    assert (
        f"    ProxyCommand /opt/venv/bin/python -m colab_ssh proxy gpu --alias colab-ssh-abcdef0123"
        f" --from '{drive}' %h %p\n"
    ) in config
    assert "looks up the runtime's current address each time" in laptop.out.getvalue()


def test_an_ngrok_api_key_in_the_environment_makes_ngrok_look_up_its_address(laptop):
    with_key = dataclasses.replace(laptop, environ={"NGROK_API_KEY": "test-key"})
    assert run(with_key, "connect", CODE) == 0
    config = (laptop.home / ".ssh" / "config").read_text()
    assert (
        "ProxyCommand /opt/venv/bin/python -m colab_ssh proxy colab --alias colab-ssh-abcdef0123"
        " --ngrok-api %h %p" in config
    )
    assert "test-key" not in config
    assert "Set NGROK_API_KEY" not in laptop.out.getvalue()


def test_ngrok_api_without_a_key_says_where_to_set_it(laptop):
    assert run(laptop, "connect", CODE, "--ngrok-api") == 0
    assert "--ngrok-api %h %p" in (laptop.home / ".ssh" / "config").read_text()
    assert "Set NGROK_API_KEY (an API key from https://dashboard.ngrok.com/api-keys)" in laptop.out.getvalue()


def test_on_windows_the_block_has_no_connection_sharing(laptop):
    windows = dataclasses.replace(
        laptop, platform="windows", python="C:\\Program Files\\Python312\\python.exe"
    )
    assert run(windows, "connect", CODE, "--ngrok-api") == 0
    config = (laptop.home / ".ssh" / "config").read_text()
    assert 'ProxyCommand "C:\\Program Files\\Python312\\python.exe" -m colab_ssh proxy colab' in config
    assert "Control" not in config


CLOUDFLARED = encode(CLOUDFLARED_DETAILS)


def with_cloudflared_on_path(laptop: Laptop, tmp_path: Path) -> tuple[Laptop, Path]:
    """A laptop whose PATH holds an executable named cloudflared (never run here: its path is written)."""
    folder = tmp_path / "bin dir"
    folder.mkdir()
    program = folder / "cloudflared"
    program.write_text("#!/bin/sh\nexit 1\n")
    program.chmod(0o755)
    return dataclasses.replace(laptop, environ={"PATH": str(folder)}), program


def test_a_cloudflared_code_writes_the_found_program_into_proxycommand(laptop, tmp_path):
    with_program, program = with_cloudflared_on_path(laptop, tmp_path)
    assert run(with_program, "connect", CLOUDFLARED) == 0
    config = (laptop.home / ".ssh" / "config").read_text()
    assert f"    ProxyCommand '{program}' access ssh --hostname %h\n" in config
    assert "    HostName humble-yellow-bright-garden.trycloudflare.com\n" in config


def test_a_cloudflared_code_with_a_lookup_passes_the_program_to_the_proxy(laptop, tmp_path):
    with_program, program = with_cloudflared_on_path(laptop, tmp_path)
    drive = tmp_path / "drive"
    drive.mkdir()
    assert run(with_program, "connect", CLOUDFLARED, "--from", str(drive)) == 0
    config = (laptop.home / ".ssh" / "config").read_text()
    assert (
        f"    ProxyCommand /opt/venv/bin/python -m colab_ssh proxy colab --alias colab-ssh-abcdef0123"
        f" --from {drive} --client '{program}' %h %p\n"
    ) in config


def test_without_cloudflared_and_no_terminal_to_ask_nothing_is_written(laptop, tmp_path):
    """No cloudflared on PATH, none cached, and stdin is not a terminal: refused with the fix (--yes)."""
    ssh = existing_files(laptop)
    before = snapshot(ssh)
    empty = tmp_path / "empty"
    empty.mkdir()
    bare = dataclasses.replace(laptop, environ={"PATH": str(empty), "XDG_CACHE_HOME": str(empty)})
    assert run(bare, "connect", CLOUDFLARED) == 1
    error = laptop.err.getvalue()
    assert error.startswith("colab-ssh: error: cloudflared is not on PATH") and error.count("\n") == 1
    assert snapshot(ssh) == before


# --- bad input: one line, exit 1, nothing touched --------------------------------------------------


def existing_files(laptop: Laptop) -> Path:
    ssh = laptop.home / ".ssh"
    ssh.mkdir()
    (ssh / "config").write_text("Host a\n  Port 2\n")
    (ssh / "known_hosts").write_text(f"a {KEY}\n")
    return ssh


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("connect", CODE[:-9]), "the code is cut short: copy the whole line"),
        (("connect", CODE[:30] + "x" + CODE[31:]), "copy the whole line"),
        (("connect", "ssh root@0.tcp.ngrok.io"), "is not a colab-ssh connection code"),
        (("connect", CODE, "--name", "two words"), "the name 'two words' is not one word"),
        (("connect", CODE, "--name", "colab*"), "is not one word: use letters"),
        (("connect", CODE, "--from", "/nonexistent/drive"), "--from /nonexistent/drive: no such folder"),
    ],
)
def test_bad_input_is_one_line_and_touches_nothing(laptop, argv, message):
    ssh = existing_files(laptop)
    before = snapshot(ssh)
    assert run(laptop, *argv) == 1
    error = laptop.err.getvalue()
    assert error.startswith("colab-ssh: error: ") and message in error
    assert error.count("\n") == 1
    assert snapshot(ssh) == before
    assert laptop.out.getvalue() == ""


def test_a_foreign_host_colab_is_refused_and_name_is_suggested(laptop):
    ssh = existing_files(laptop)
    (ssh / "config").write_text("Host colab\n  HostName mine.example\n")
    before = snapshot(ssh)
    assert run(laptop, "connect", CODE) == 1
    assert (
        "has a 'Host colab' that colab-ssh did not write; it is left alone: pick another name with --name"
        in (laptop.err.getvalue())
    )
    assert snapshot(ssh) == before
    assert run(laptop, "connect", CODE, "--name", "colab-2") == 0


def test_damaged_markers_are_refused(laptop):
    ssh = existing_files(laptop)
    (ssh / "config").write_text("# BEGIN colab-ssh colab (x)\nHost colab\n")
    before = snapshot(ssh)
    assert run(laptop, "connect", CODE) == 1
    assert "without its '# END colab-ssh colab' line" in laptop.err.getvalue()
    assert run(laptop, "disconnect") == 1
    assert snapshot(ssh) == before


def test_a_missing_home_is_one_line_and_nothing_is_made(laptop):
    gone = dataclasses.replace(laptop, home=laptop.home / "not-there")
    assert run(gone, "connect", CODE) == 1
    assert (
        laptop.err.getvalue()
        == f"colab-ssh: error: cannot write into {gone.home / '.ssh'}: {gone.home} does not exist\n"
    )
    assert not gone.home.exists()


def test_a_config_that_is_a_folder_is_one_line(laptop):
    (laptop.home / ".ssh" / "config").mkdir(parents=True)
    assert run(laptop, "connect", CODE) == 1
    assert "is a folder, not a file" in laptop.err.getvalue()


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_folder_is_one_line_and_nothing_is_written(laptop):
    ssh = existing_files(laptop)
    before = snapshot(ssh)
    ssh.chmod(0o500)
    try:
        assert run(laptop, "connect", CODE) == 1
        assert "permission denied" in laptop.err.getvalue()
        assert snapshot(ssh) == before
    finally:
        ssh.chmod(0o700)


def test_a_failed_write_puts_back_the_files_written_before_it(laptop, monkeypatch):
    """A write that fails halfway (a full disk, here made by refusing the config's rename) leaves
    both files as they were: known_hosts, written first, is put back."""
    ssh = existing_files(laptop)
    before = {name: content for name, (content, _, _) in snapshot(ssh).items()}
    replace = Path.replace

    def failing_replace(self: Path, target: Path) -> Path:
        if Path(target).name == "config":
            raise OSError(28, "No space left on device", str(target))
        return replace(self, target)

    monkeypatch.setattr(Path, "replace", failing_replace)
    assert run(laptop, "connect", CODE) == 1
    assert "No space left on device" in laptop.err.getvalue()
    after = {name: content for name, (content, _, _) in snapshot(ssh).items() if not name.endswith(".bak")}
    assert after == before
    assert not list(ssh.glob(".*.tmp"))


# --- disconnect ----------------------------------------------------------------------------------


def test_disconnect_takes_out_exactly_what_connect_put_in(laptop):
    ssh = existing_files(laptop)
    before = {name: content for name, (content, _, _) in snapshot(ssh).items()}
    assert run(laptop, "connect", CODE, "--forward", "6006") == 0
    assert run(laptop, "disconnect") == 0
    assert (ssh / "config").read_bytes() == before["config"]
    assert (ssh / "known_hosts").read_bytes() == before["known_hosts"]
    assert "Removed 'Host colab'" in laptop.out.getvalue()
    assert run(laptop, "disconnect") == 0
    assert "nothing to remove" in laptop.out.getvalue()


def test_disconnect_keeps_the_keys_another_name_still_pins(laptop):
    assert run(laptop, "connect", CODE) == 0
    assert run(laptop, "connect", CODE, "--name", "gpu") == 0
    assert run(laptop, "disconnect", "--name", "gpu") == 0
    ssh = laptop.home / ".ssh"
    assert "Host gpu" not in (ssh / "config").read_text()
    assert "Host colab" in (ssh / "config").read_text()
    assert (ssh / "known_hosts").read_text() == f"colab-ssh-abcdef0123 {KEY}\n"
    assert run(laptop, "disconnect") == 0
    assert (ssh / "known_hosts").read_text() == ""


def test_disconnect_without_any_file_is_fine(laptop):
    assert run(laptop, "disconnect") == 0
    assert not (laptop.home / ".ssh").exists()


# --- the command line, without the runtime ------------------------------------------------------

RUNTIME_ONLY = ("pwd", "fcntl", "grp", "termios", "resource", "pyngrok", "IPython")
LAPTOP_SIDE = {
    "colab_ssh",
    "colab_ssh.__main__",
    "colab_ssh.cli",
    "colab_ssh.exit_status",
    "colab_ssh.connect_code",
}
# Pure modules both sides use: connection.py (and the card it renders) for the ssh client options,
# the https download and cloudflared's pinned release for the laptop's cloudflared, and the formats
# the runtime publishes its address in, which `colab-ssh proxy` reads (published.py).
SHARED = {
    "colab_ssh.connection",
    "colab_ssh.card",
    "colab_ssh.https_download",
    "colab_ssh.cloudflared_pins",
    "colab_ssh.published",
}


@pytest.fixture
def without_runtime(monkeypatch):
    """sys.modules as on a laptop where the runtime cannot load: every colab_ssh module outside the
    laptop's side, and every runtime-only library, raises ImportError when imported."""
    from .test_structure import PACKAGE, module_name

    saved = dict(sys.modules)
    for name in list(sys.modules):
        if name == "colab_ssh" or name.startswith("colab_ssh."):
            del sys.modules[name]
    allowed = LAPTOP_SIDE | SHARED
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if name not in allowed and not name.startswith("colab_ssh.laptop"):
            sys.modules[name] = None  # type: ignore[assignment]
    for name in RUNTIME_ONLY:
        sys.modules[name] = None  # type: ignore[assignment]
    yield
    sys.modules.clear()
    sys.modules.update(saved)


def test_the_laptop_commands_run_without_the_runtime(without_runtime, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    from colab_ssh.cli import main

    with pytest.raises(ImportError):
        import colab_ssh.core  # the block holds
    assert main(["connect", CODE, "--forward", "6006"]) == 0
    assert "Host colab" in (tmp_path / ".ssh" / "config").read_text()
    assert main(["disconnect"]) == 0
    assert "Host colab" not in (tmp_path / ".ssh" / "config").read_text()
    _, program = with_cloudflared_on_path(laptop_of(tmp_path), tmp_path)
    monkeypatch.setenv("PATH", str(program.parent))
    assert main(["connect", CLOUDFLARED]) == 0  # the client program's module loads too
    assert f"ProxyCommand '{program}' access" in (tmp_path / ".ssh" / "config").read_text()
    assert main(["connect", CODE[:40]]) == 1
    assert (
        capsys.readouterr().err
        == "colab-ssh: error: the code is cut short: copy the whole line from the notebook again\n"
    )
    with pytest.raises(SystemExit) as usage:
        main(["connect", CODE, "--forward", "0"])
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as shown:
        main(["proxy", "--help"])  # what the block's ProxyCommand runs loads too
    assert shown.value.code == 0
    assert "NAME HOST PORT" in capsys.readouterr().out
    import colab_ssh

    assert "start_ssh" in colab_ssh.__all__  # the public names are still listed; using one needs the runtime
    with pytest.raises(ImportError):
        colab_ssh.start_ssh  # noqa: B018


def test_help_without_the_runtime_lists_the_laptop_commands(monkeypatch, capsys):
    """Windows has no pwd or fcntl: `colab-ssh --help` there still works and shows connect."""
    saved = dict(sys.modules)
    try:
        for name in [name for name in sys.modules if name.startswith("colab_ssh")]:
            del sys.modules[name]
        for name in ("pwd", "fcntl"):
            sys.modules[name] = None  # type: ignore[assignment]
        from colab_ssh.cli import main

        with pytest.raises(SystemExit) as done:
            main(["--help"])
        assert done.value.code == 0
        assert "{connect,disconnect" in capsys.readouterr().out
    finally:
        sys.modules.clear()
        sys.modules.update(saved)


def test_the_full_command_line_lists_both_sides(capsys):
    from colab_ssh.cli import build_parser

    help_text = build_parser().format_help()
    assert "{start,stop,status,connect,disconnect" in help_text
    assert files.BACKUP_SUFFIX == ".colab-ssh.bak"


def test_a_config_that_would_be_refused_is_refused_before_cloudflared_is_looked_for(laptop, tmp_path):
    """No download offer (nor a useless one) for a config that connect will not write anyway."""
    ssh = existing_files(laptop)
    (ssh / "config").write_text("Host colab\n  HostName mine.example\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    bare = dataclasses.replace(laptop, environ={"PATH": str(empty), "XDG_CACHE_HOME": str(empty)})
    assert run(bare, "connect", CLOUDFLARED) == 1
    assert "has a 'Host colab' that colab-ssh did not write" in laptop.err.getvalue()
    assert run(bare, "connect", CLOUDFLARED, "--name", "gpu", "--from", str(tmp_path / "nowhere")) == 1
    assert "--from " in laptop.err.getvalue().splitlines()[-1]
