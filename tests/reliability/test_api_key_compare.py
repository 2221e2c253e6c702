"""The API key is compared in constant time, by inspection of the code that compares it.

A timing measurement over HTTP on a shared machine could not tell a short-circuiting ``==`` from
``hmac.compare_digest`` reliably; the code can be read exactly. The rules: the configured secret
is unwrapped in one function only, and there it meets the supplied key in
``hmac.compare_digest`` and in no other comparison.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def unwraps_secret(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == "get_secret_value" for n in ast.walk(node)
    )


def functions_unwrapping_the_secret() -> list[tuple[Path, ast.FunctionDef]]:
    found = []
    for path in sorted(SERVICE.rglob("*.py")):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and unwraps_secret(node):
                found.append((path, node))
    return found


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def test_the_secret_is_unwrapped_in_one_function_only() -> None:
    found = functions_unwrapping_the_secret()
    assert [(p.name, f.name) for p, f in found] == [("security.py", "_check_key")]


def test_the_key_is_compared_with_compare_digest_and_nothing_else() -> None:
    [(_, check)] = functions_unwrapping_the_secret()
    key_names = {a.arg for a in check.args.args if a.arg != "settings"}  # the supplied key
    secret_names = {
        t.id
        for n in ast.walk(check)
        if isinstance(n, ast.Assign) and unwraps_secret(n.value)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert key_names and secret_names
    digest_calls = [
        n
        for n in ast.walk(check)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "compare_digest"
        and isinstance(n.func.value, ast.Name)
        and n.func.value.id == "hmac"
    ]
    assert len(digest_calls) == 1
    compared = set().union(*(names_in(a) for a in digest_calls[0].args))
    assert key_names <= compared and secret_names <= compared
    for node in ast.walk(check):
        if isinstance(node, ast.Compare):
            involved = names_in(node) & (key_names | secret_names)
            assert not involved, f"line {node.lineno}: the key in a plain comparison"


@pytest.mark.parametrize("supplied", ["", "x", "test-key-0123456788", "test-key-0123456789!"])
def test_every_wrong_key_gets_the_same_answer(supplied: str) -> None:
    """No length or prefix oracle in the message either."""
    from fastapi import HTTPException

    from service.access.security import _check_key
    from service.settings import Settings

    settings = Settings(bundle="b", index_dir="i", api_key="test-key-0123456789")
    with pytest.raises(HTTPException) as refused:
        _check_key(settings, supplied or None)
    assert refused.value.status_code == 401
    assert "test-key" not in str(refused.value.detail)
    _check_key(settings, "test-key-0123456789")  # the right one passes
