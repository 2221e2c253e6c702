"""The imports tell the data flow: bundle ← training; bundle ← index ← footage ← service;
nothing back (but the index command line registering the footage command), no package imports
one of its own modules in a circle, and the rooms inside a package keep to their job (the search
engines never reach a store, the two stores never reach each other).

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
# Rooms inside the packages, and what no module in each may import (a module, or anything under
# it). A room's own modules are never its own offence (index/cli/ imports index/cli/).
ROOM_RULES = {
    # Exact engines, the query vector and top k answer over vectors they are given: no store.
    "index.search": ("index.faiss", "index.milvus", "index.store", "index.stores", "index.ingest",
                     "index.cli"),
    # Two engines behind one interface (index/gallery_store.py): neither knows the other.
    "index.faiss": ("index.milvus", "index.cli"),
    "index.milvus": ("index.faiss", "index.cli"),
    # Ingestion writes through the store interface, whichever engine is behind it.
    "index.ingest": ("index.faiss", "index.milvus", "index.cli"),
    # The CLI is a shell over the package: only `python -m index` opens it.
    "index": ("index.cli",),
    # Access control, audit and retention serve the routes, never the other way round.
    "service.access": ("service.routes",),
    # The service sees the store interface, not an engine, and not the index CLI.
    "service": ("index.faiss", "index.milvus", "index.cli"),
}  # fmt: skip
# The one door to the index CLI.
ROOM_EXEMPT = {"index.__main__"}
# The index command line is the one entry point of both: it registers the footage command.
COMMAND_LINE_EXTRAS = {"index/cli/commands.py": {"footage"}}


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


def inside(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


def room_violations(
    rules: dict[str, tuple[str, ...]], root: Path = REPO, exempt: frozenset[str] = frozenset()
) -> dict[str, list[str]]:
    """module → what it imports that a rule of its room forbids."""
    wrong: dict[str, set[str]] = {}
    for room, forbidden in rules.items():
        for path in sorted((root / room.replace(".", "/")).rglob("*.py")):
            name = module_name(path, root)
            imported = imported_modules(path, root)
            bad = {
                target
                for target in forbidden
                if not inside(name, target) and any(inside(m, target) for m in imported)
            }
            if bad and name not in exempt:
                wrong.setdefault(name, set()).update(bad)
    return {name: sorted(bad) for name, bad in wrong.items()}


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
    assert "index.faiss.commit" in import_graph("index")["index.faiss.gallery"]
    assert "service.access.keys" in import_graph("service")["service.access.security"]


@pytest.mark.parametrize("room", sorted(ROOM_RULES))
def test_rooms_import_only_what_their_job_needs(room: str) -> None:
    assert (REPO / room.replace(".", "/") / "__init__.py").is_file(), f"{room} is not a package"
    wrong = room_violations({room: ROOM_RULES[room]}, exempt=frozenset(ROOM_EXEMPT))
    assert not wrong, f"{room} may not import {ROOM_RULES[room]}: {wrong}"


def test_the_room_checker_finds_a_forbidden_import(tmp_path: Path) -> None:
    for room in ("pkg", "pkg/a", "pkg/b"):
        (tmp_path / room).mkdir()
        (tmp_path / room / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a" / "x.py").write_text("from pkg.a import y\n")
    (tmp_path / "pkg" / "a" / "y.py").write_text("def f():\n    from pkg.b.z import Z\n")
    (tmp_path / "pkg" / "b" / "z.py").write_text("from pkg import a\nimport pkg.b\n")
    (tmp_path / "pkg" / "door.py").write_text("import pkg.b.z\n")
    rules = {"pkg.a": ("pkg.b",), "pkg.b": ("pkg.a", "pkg.b"), "pkg": ("pkg.b",)}
    found = {"pkg.a.y": ["pkg.b"], "pkg.b.z": ["pkg.a"]}
    assert room_violations(rules, tmp_path, frozenset({"pkg.door"})) == found
    assert room_violations(rules, tmp_path) == found | {"pkg.door": ["pkg.b"]}
