"""Third-party tunnels: a distribution installed with pip declares ``colab_ssh.tunnels`` entry points.

The plugin is README's example (examples/tunnel_plugin), installed by the real pip into a
folder of its own (``--target``) that goes on sys.path here and on PYTHONPATH for the CLI, as a
user's ``pip install`` puts it in site-packages. importlib.metadata finds its entry points in
the .dist-info pip writes (https://packaging.python.org/en/latest/specifications/entry-points/).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from colab_ssh import InvalidArgumentError, TunnelError, start_ssh, stop_ssh
from colab_ssh.supervisor_state import connection_from_json
from colab_ssh.tunnels.registry import BUILT_IN, ENTRY_POINT_GROUP, find_kind, tunnel_names

from ..support.host import SshClient, our_processes

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "examples" / "tunnel_plugin"

# A second distribution: entry points that must be refused, each in its own way.
BAD_PROJECT = {
    "pyproject.toml": """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "colab-ssh-bad-plugins"
version = "0.1"

[project.entry-points."colab_ssh.tunnels"]
ngrok = "bad_plugins:Impostor"
not-a-tunnel = "bad_plugins:not_a_tunnel"
fails = "bad_plugins:fails"
missing = "bad_plugins_gone:Nothing"
"-dash" = "bad_plugins:Impostor"

[tool.setuptools]
py-modules = ["bad_plugins"]
""",
    "bad_plugins.py": """
from colab_ssh.tunnels import Endpoint

class Impostor:
    name = "ngrok"
    def open(self, local_port): return Endpoint("127.0.0.1", local_port)
    def alive(self): return True
    def close(self): pass

def not_a_tunnel():
    return "a string"

def fails():
    raise RuntimeError("the plugin's own failure")
""",
}


def pip_install(project: Path, target: Path) -> None:
    """The real pip, offline: no build isolation (setuptools is in the test environment), no deps."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed example plugin (module and .dist-info)."""
    site = tmp_path_factory.mktemp("plugin_site")
    source = tmp_path_factory.mktemp("plugin_source")  # pip builds in the project folder: a copy
    for name in ("pyproject.toml", "colab_ssh_relay.py"):
        (source / name).write_bytes((EXAMPLE / name).read_bytes())
    pip_install(source, site)
    assert (site / "colab_ssh_relay.py").is_file()
    return site


@pytest.fixture(scope="module")
def bad_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("bad_site")
    source = tmp_path_factory.mktemp("bad_source")
    for name, text in BAD_PROJECT.items():
        (source / name).write_text(text)
    pip_install(source, site)
    return site


@pytest.fixture
def with_plugin(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(plugin_site))
    return plugin_site


def test_the_installed_plugin_is_a_choice(with_plugin):
    assert "relay" in tunnel_names()
    assert tunnel_names()[: len(BUILT_IN)] == tuple(kind.name for kind in BUILT_IN)
    kind = find_kind("relay")
    assert "colab-ssh-relay 1.0" in kind.origin and "colab_ssh_relay:RelayTunnel" in kind.origin
    assert kind.needs is None and kind.regions == () and not kind.direct


def test_without_the_plugin_the_name_is_unknown():
    with pytest.raises(InvalidArgumentError, match=r"Unknown tunnel 'relay'.*colab_ssh\.tunnels"):
        start_ssh(tunnel="relay", quiet=True)


def test_login_through_the_plugin_from_the_api(with_plugin, test_user, port, state_dir, ssh: SshClient):
    connection = start_ssh(tunnel="relay", port=port, user=test_user, state_dir=state_dir, quiet=True)

    assert connection.tunnel == "relay"
    assert connection.host == "127.0.0.1" and connection.port != port  # the relay's own port
    login = ssh.run(connection, "id -un")
    assert login.returncode == 0, login.stderr
    assert login.stdout.strip() == test_user
    # sshd itself listens on loopback only: a plugin is a tunnel, not tunnel="none".
    config = (state_dir / "sshd_config").read_text()
    assert "ListenAddress 127.0.0.1" in config

    stop_ssh(state_dir=state_dir)
    assert our_processes(state_dir) == []
    assert ssh.run(connection, "true").returncode != 0  # the relay closed with the session


def cli(*arguments: object, site: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "colab_ssh", *map(str, arguments)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )


def test_login_through_the_plugin_from_the_cli(plugin_site, test_user, port, state_dir, ssh: SshClient):
    try:
        helped = cli("start", "--help", site=plugin_site)
        assert "{ngrok,cloudflared,none,relay}" in helped.stdout

        started = cli(
            "start",
            "--tunnel",
            "relay",
            "--port",
            port,
            "--user",
            test_user,
            "--state-dir",
            state_dir,
            site=plugin_site,
        )
        assert started.returncode == 0, started.stderr
        saved = json.loads((state_dir / "connection.json").read_text())["connection"]
        connection = connection_from_json(saved)
        assert connection.tunnel == "relay" and connection.port != port
        assert f"ssh -p {connection.port} {test_user}@127.0.0.1" in started.stdout
        login = ssh.run(connection, "id -un")
        assert login.returncode == 0, login.stderr
        assert login.stdout.strip() == test_user

        status = cli("status", "--state-dir", state_dir, site=plugin_site)
        assert "(tunnel: relay)" in status.stdout
    finally:
        stopped = cli("stop", "--state-dir", state_dir, site=plugin_site)
    assert stopped.returncode == 0, stopped.stderr
    assert our_processes(state_dir) == []


def test_the_cli_without_the_plugin_refuses_the_name(plugin_site, state_dir):
    refused = cli("start", "--tunnel", "relay", "--state-dir", state_dir, site=Path("/nonexistent"))
    assert refused.returncode == 2
    assert "invalid choice: 'relay'" in refused.stderr


def test_a_plugin_cannot_take_a_built_in_name(bad_site, monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(bad_site))
    with caplog.at_level(logging.WARNING, logger="colab_ssh.tunnels.registry"):
        names = tunnel_names()
    assert names.count("ngrok") == 1
    assert find_kind("ngrok") is BUILT_IN[0]
    assert "ngrok = bad_plugins:Impostor (colab-ssh-bad-plugins 0.1)" in caplog.text
    assert "is a built-in tunnel, which plugins cannot replace" in caplog.text
    # A name that would read as an option on the supervisor's command line is refused too.
    assert "-dash" not in names
    assert "a tunnel name is letters, digits and ._-" in caplog.text


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not-a-tunnel", r"returned str, not a tunnel \(an object with name, open\(local_port\)"),
        ("fails", r"failed to start: RuntimeError: the plugin's own failure"),
        ("missing", r"failed to start: ModuleNotFoundError: No module named 'bad_plugins_gone'"),
    ],
)
def test_a_broken_plugin_is_a_tunnel_error_that_changes_nothing(
    bad_site, monkeypatch, test_user, port, state_dir, name, message
):
    monkeypatch.syspath_prepend(str(bad_site))
    with pytest.raises(TunnelError, match=message) as raised:
        start_ssh(tunnel=name, port=port, user=test_user, state_dir=state_dir, quiet=True)
    assert "colab-ssh-bad-plugins 0.1" in str(raised.value)
    assert our_processes(state_dir) == []
    assert not (state_dir / "connection.json").exists()


def test_the_group_name_is_the_documented_one():
    readme = (ROOT / "README.md").read_text()
    assert f'[project.entry-points."{ENTRY_POINT_GROUP}"]' in readme
    assert (EXAMPLE / "colab_ssh_relay.py").read_text() in readme
    assert (EXAMPLE / "pyproject.toml").read_text() in readme
