"""rebuild uses only the gallery index's public API (it once reached into private members).

The import circles of every package are checked in tests/test_imports.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "index" / "faiss"


def test_rebuild_uses_only_public_names() -> None:
    path = PACKAGE / "rebuild.py"
    tree = ast.parse(path.read_text(), str(path))
    private = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    ]
    private += [
        f"line {node.lineno}: import {alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_")
    ]
    private += [
        f"line {node.lineno}: {node.func.id}(..., {node.args[1].value!r})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"getattr", "setattr", "hasattr", "delattr"}
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and str(node.args[1].value).startswith("_")
    ]
    assert not private, f"{path.name} reaches into private members: {private}"
