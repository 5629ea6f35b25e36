"""The package's layering, read from its source with ast: no module imports one that imports it back.

Every import counts, also one inside a function (a "lazy" import hides a cycle, it does not remove
it); only imports under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import colab_ssh

PACKAGE = Path(colab_ssh.__file__).parent


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = ("colab_ssh", *path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        found.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending += node.orelse
            continue
        pending += ast.iter_child_nodes(node)
    return found


def imported_modules(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules that ``name``'s source imports (``from . import x`` names module x)."""
    package = name if is_package else name.rpartition(".")[0]
    imported: set[str] = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            targets = [stem, *(f"{stem}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            # "import a.b.c" also runs a and a.b; keep what is one of our modules.
            parts = target.split(".")
            imported |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known
    imported.discard(name)
    return imported


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    known = set(files)
    graph = {}
    for name, path in files.items():
        graph[name] = imported_modules(path.read_text(), name, path.name == "__init__.py", known)
        # A package's __init__ runs before any of its modules: importing colab_ssh.x imports
        # colab_ssh. That edge is not a cycle of ours to fix, so parents are left out.
        graph[name] -= {parent for parent in known if name.startswith(parent + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per strongly connected group of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    assert {"colab_ssh.core", "colab_ssh.tunnels.cloudflared"} <= set(graph)  # the walk found the package
    assert cycles(graph) == []


def test_the_checker_finds_a_cycle_through_a_lazy_import(tmp_path):
    """What the test above relies on: a cycle made by an import inside a function, over relative
    and absolute spellings, is found; a TYPE_CHECKING-only import is not counted."""
    package = tmp_path / "colab_ssh"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    import colab_ssh.c\n")
    (package / "c.py").write_text("import typing\nif typing.TYPE_CHECKING:\n    from . import d\n")
    (package / "d.py").write_text("def g():\n    from . import a\n")
    graph = import_graph(package)
    assert graph["colab_ssh.a"] == {"colab_ssh.sub", "colab_ssh.sub.b"}  # a package runs its __init__
    assert graph["colab_ssh.sub.b"] == {"colab_ssh.c"}
    assert cycles(graph) == []  # c -> d only for the type checker
    (package / "c.py").write_text("def h():\n    from .d import g\n")
    assert cycles(import_graph(package)) == [["colab_ssh.a", "colab_ssh.c", "colab_ssh.d", "colab_ssh.sub.b"]]
