"""The option schema (options.OPTIONS) and everything that lists the options agree: no root, no processes.

start_ssh()'s signature is written out by hand (for IDEs and help()); the CLI's flags, the
supervisor's command line and its keyword arguments are generated from the schema. These tests
are what keeps the hand-written signature and the schema from drifting apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from colab_ssh import cli
from colab_ssh.core import start_ssh
from colab_ssh.options import ARGV_OPTIONS, OPTIONS, Passing, StartOptions, check_request
from colab_ssh.paths import Paths
from colab_ssh.supervisor_state import Secrets

# `start` flags that are the command's own, not start_ssh() options.
CLI_OWN_FLAGS = {"-h", "--help", "--foreground", "--timeout", "--check-interval", "--state-dir", "--debug"}


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    subparser: argparse.ArgumentParser = commands.choices[name]
    return subparser


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


def test_start_ssh_signature_is_the_schema_names_order_and_defaults():
    parameters = inspect.signature(start_ssh).parameters
    assert list(parameters) == [option.name for option in OPTIONS]
    for option in OPTIONS:
        assert parameters[option.name].default == option.default, option.name
    # Only the token may be positional (start_ssh(token)); everything else by keyword.
    kinds = {name: parameter.kind for name, parameter in parameters.items()}
    assert kinds.pop("authtoken") is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert set(kinds.values()) == {inspect.Parameter.KEYWORD_ONLY}


def test_start_flags_are_the_schema_flags_with_its_defaults():
    start = _subparser("start")
    schema_flags = {option.flag.name for option in OPTIONS if option.flag is not None}
    assert _flags(start) == schema_flags | CLI_OWN_FLAGS
    defaults = cli.build_parser().parse_args(["start"])
    for option in OPTIONS:
        if option.flag is None:
            continue
        if option.passing is Passing.STDIN:  # a secret is never a flag's value: a switch to read stdin
            assert getattr(defaults, f"{option.name}_stdin") is False, option.name
        else:
            assert getattr(defaults, option.name) == option.default, option.name
    # state_dir is every command's --state-dir; start_ssh()'s None means this same folder.
    assert defaults.state_dir == str(Paths().state_dir)
    assert next(option for option in OPTIONS if option.name == "state_dir").default is None


def test_every_start_ssh_option_is_a_flag_or_says_why_not():
    without_flag = {option.name for option in OPTIONS if option.flag is None}
    # state_dir: cli._common; on_change and monitor_interval: a notebook's, the supervisor has its own.
    assert without_flag == {"state_dir", "on_change", "monitor_interval"}


def test_the_supervisor_gets_exactly_the_argv_options_and_the_secrets_on_stdin():
    assert StartOptions().api_arguments() == {option.name: option.default for option in ARGV_OPTIONS}
    secrets = {field.name for field in dataclasses.fields(Secrets)}
    assert secrets == {option.name for option in OPTIONS if option.passing is Passing.STDIN}
    assert secrets == {"authtoken", "password"}
    serve = _subparser("serve")
    argv_flags = {option.flag.name for option in ARGV_OPTIONS if option.flag is not None}
    assert _flags(serve) == argv_flags | {"-h", "--help", "--check-interval", "--state-dir", "--debug"}
    # A secret cannot even be put into the supervisor's options.
    with pytest.raises(TypeError):
        StartOptions({**StartOptions().values, "password": "never-on-argv"})
    # Every one of them is a start_ssh() keyword.
    assert set(StartOptions().api_arguments()) <= set(inspect.signature(start_ssh).parameters)


@pytest.mark.parametrize(
    "values",
    [
        {},
        {
            "tunnel": "none",
            "port": 2222,
            "region": "eu",
            "mount_drive": True,
            "user": "alice",
            "public_key": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample one", "/keys/two.pub"],
            "github_user": "octocat",
            "host_keys_dir": "/content/drive/MyDrive/ssh",
        },
    ],
    ids=["defaults", "every option set"],
)
def test_the_supervisors_command_line_parses_back_to_the_same_options(values):
    options = StartOptions({**StartOptions().values, **values})
    serve = cli.build_parser().parse_args(["serve", *options.argv()])
    assert StartOptions.from_arguments(serve) == options
    assert serve.state_dir == str(Paths().state_dir)  # nothing in argv() spills into another flag


def test_start_makes_paths_absolute_for_the_supervisor_in_slash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "me.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample me\n")
    key_line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample text"
    arguments = cli.build_parser().parse_args(
        ["start", "--public-key", "me.pub", "--public-key", key_line, "--host-keys-dir", "keys"]
    )
    options = StartOptions.from_arguments(arguments)
    assert options["public_key"] == [str(tmp_path / "me.pub"), key_line]
    assert options["host_keys_dir"] == str(tmp_path / "keys")


def test_check_request_refuses_a_name_the_schema_does_not_know():
    with pytest.raises(TypeError, match="colour"):
        check_request(colour="blue")
