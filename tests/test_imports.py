"""The imports tell the data flow: bundle ← training; bundle ← index ← footage ← service;
nothing back (but the index command line registering the footage command), and no package
imports one of its own modules in a circle.

Parsed with ``ast``, so nothing is imported: an import inside a function or under
``if TYPE_CHECKING`` counts as much as one at the top (a circle that works only while one side
is deferred breaks on the first edit that moves it).
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bundle", "training", "index", "footage", "service")
DEV_ONLY = ("bench", "tests", "api_tests", "support")
# What each product package may import of the others.
ALLOWED = {
    "bundle": set(),
    "training": {"bundle"},
    "index": {"bundle"},
    "footage": {"bundle", "index"},
    "service": {"bundle", "index", "footage"},
}
# The index command line is the one entry point of both: it registers the footage command.
COMMAND_LINE_EXTRAS = {"index/cli.py": {"footage"}}


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> set[str]:
    """Every module name ``path`` imports (``from a import b`` counts as ``a`` and ``a.b``);
    relative imports resolved against the module's package."""
    name = module_name(path, root)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph(package: str, root: Path = REPO) -> dict[str, set[str]]:
    """module → the modules of the same package it imports."""
    paths = sorted((root / package).rglob("*.py"))
    modules = {module_name(p, root) for p in paths}
    graph = {}
    for path in paths:
        name = module_name(path, root)
        graph[name] = {m for m in imported_modules(path, root) if m in modules} - {name, package}
    return graph


def circle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as err:
        return list(err.args[1])
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_follow_the_data_flow(package: str) -> None:
    ours = set(PACKAGES) | set(DEV_ONLY)
    wrong = {}
    for path in sorted((REPO / package).rglob("*.py")):
        roots = {m.split(".")[0] for m in imported_modules(path, REPO)}
        extra = COMMAND_LINE_EXTRAS.get(path.relative_to(REPO).as_posix(), set())
        bad = (roots & ours) - ALLOWED[package] - {package} - extra
        if bad:
            wrong[str(path.relative_to(REPO))] = sorted(bad)
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_inside_a_package(package: str) -> None:
    found = circle(import_graph(package))
    assert found is None, f"import circle in {package}/: " + " -> ".join(found or [])


def test_the_checker_sees_every_kind_of_import_and_finds_circles(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "x.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.y import Y\n"
    )
    (pkg / "y.py").write_text("def f():\n    from pkg import x\n    import bench.index\n")
    (pkg / "z.py").write_text("from . import x\nimport pkg.y\n")
    graph = import_graph("pkg", tmp_path)
    assert graph == {
        "pkg": set(),
        "pkg.x": {"pkg.y"},
        "pkg.y": {"pkg.x"},
        "pkg.z": {"pkg.x", "pkg.y"},
    }
    assert set(circle(graph) or []) == {"pkg.x", "pkg.y"}
    assert "bench.index" in imported_modules(pkg / "y.py", tmp_path)
    assert circle({"a": {"b"}, "b": set()}) is None


def test_the_known_dependencies_are_seen() -> None:
    graph = import_graph("service")
    assert "service.query" in graph["service.runtime"]
    assert "index.store" in import_graph("index")
