"""The tunnel registry: each kind's facts in one place, and consistent with the rest of the package."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import colab_ssh
from colab_ssh.errors import InvalidArgumentError, TunnelError
from colab_ssh.paths import Paths
from colab_ssh.tunnels.registry import BUILT_IN, DEFAULT_TUNNEL, find_kind, tunnel_names

README = Path(__file__).parent.parent.parent / "README.md"
PATHS = Paths(state_dir=Path("/state"), cache_dir=Path("/cache"))


def test_names_are_unique_and_the_default_is_one_of_them():
    names = [kind.name for kind in BUILT_IN]
    assert len(set(names)) == len(names)
    assert DEFAULT_TUNNEL in names
    assert tunnel_names()[: len(names)] == tuple(names)
    for kind in BUILT_IN:
        assert find_kind(kind.name) is kind


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(InvalidArgumentError) as raised:
        find_kind("carrier-pigeon")
    for kind in BUILT_IN:
        assert repr(kind.name) in str(raised.value)
    assert "'colab_ssh.tunnels'" in str(raised.value)


@pytest.mark.parametrize("kind", BUILT_IN, ids=lambda kind: kind.name)
def test_a_kinds_files_are_in_the_state_folder_and_cover_what_it_stops(kind):
    files = kind.files(PATHS)
    assert len(set(files)) == len(files)
    assert all(path.parent == PATHS.state_dir for path in files)
    assert set(kind.stale_files(PATHS)) <= set(files)
    assert {pid_file for pid_file, _ours in kind.processes(PATHS)} <= set(files)


def test_every_tunnel_file_paths_names_belongs_to_its_kind():
    """Paths' ngrok_* and cloudflared_* files are exactly what the kinds declare: none is forgotten
    by the leftover clean-up or by `colab-ssh status` (as cloudflared.pid once was)."""
    for kind in BUILT_IN:
        named = {
            getattr(PATHS, attribute)
            for attribute in dir(Paths)
            if attribute.startswith(f"{kind.name}_") and isinstance(getattr(PATHS, attribute), Path)
        }
        assert named == set(kind.files(PATHS)), kind.name


@pytest.mark.parametrize("kind", BUILT_IN, ids=lambda kind: kind.name)
def test_a_kinds_errors_are_tunnel_errors_the_package_exports(kind):
    for error in kind.errors:
        assert issubclass(error, TunnelError)
        assert getattr(colab_ssh, error.__name__) is error
        assert error.__name__ in colab_ssh.__all__


def test_only_ngrok_needs_the_authtoken_and_has_regions():
    assert {kind.name for kind in BUILT_IN if kind.needs == "authtoken"} == {"ngrok"}
    assert {kind.name for kind in BUILT_IN if kind.regions} == {"ngrok"}
    assert {kind.name for kind in BUILT_IN if kind.direct} == {"none"}


def test_the_readme_table_says_what_the_registry_says():
    """README's Tunnels table: one row per built-in kind, and its "raw TCP" column is kind.raw_tcp."""
    table = README.read_text().split("## Tunnels\n", 1)[1].lstrip("\n").split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith('| `"')]
    header = [cell.strip() for cell in table.splitlines()[0].strip("|").split("|")]
    raw_column = header.index("raw TCP")
    seen = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        name = re.match(r'`"([^"]+)"`', cells[0])
        assert name is not None, row
        seen[name.group(1)] = cells[raw_column].startswith("yes")
    assert seen == {kind.name: kind.raw_tcp for kind in BUILT_IN}
