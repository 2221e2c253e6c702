""".dockerignore keeps the large and private folders out, and nothing the image copies."""

from __future__ import annotations

import re
from functools import cache

import pytest

from tests.docker.files import ROOT, read_dockerfile


@cache
def _patterns() -> list[tuple[re.Pattern[str], bool]]:
    """(regex, is_exception) per line, in Docker's syntax: paths from the context root."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + pattern[i : end + 1], end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        out.append((re.compile(regex), negate))
    return out


def ignored(path: str) -> bool:
    """Whether the build context leaves out this path (or a folder holding it)."""
    parts = path.split("/")
    result = False
    for regex, negate in _patterns():
        if any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            result = not negate
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        "data/CUHK-PEDES/reid_raw.json",
        "weights/ViT-B-16.pt",
        "runs/cuhk/bundle/bundle.json",
        "bundles/cuhk/bundle.json",
        "indexes/cuhk/manifest.sqlite",
        "uploads/ab/cd.jpg",
        "out/bench/index.json",
        "training/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".ruff_cache/CACHEDIR.TAG",
        "person_search.egg-info/PKG-INFO",
        ".env",
    ],
)
def test_leaves_out(path: str) -> None:
    assert ignored(path)


def _copied_sources() -> list[str]:
    sources = []
    for i in read_dockerfile():
        if i.keyword == "COPY":
            flags, words = i.flags_and_words()
            if "from" not in flags:
                sources.extend(words[:-1])
    return sources


def test_keeps_everything_the_dockerfile_copies() -> None:
    sources = _copied_sources()
    assert sources
    checked = 0
    for source in sources:
        root = ROOT / source
        assert root.exists(), f"COPY {source}: not in the repository"
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if "__pycache__" in relative:
                continue
            assert not ignored(relative), f"{relative} is copied by the Dockerfile but ignored"
            checked += 1
    # training/data is a package, not the dataset folder that `data` leaves out.
    assert any(s == "training" for s in sources) and not ignored("training/data/__init__.py")
    assert checked > 10
