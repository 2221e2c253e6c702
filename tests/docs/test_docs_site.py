"""The documentation site builds with `mkdocs build --strict` (a broken link or anchor, or a page
left out of the nav, fails it), and the README stays a short front door whose links all land."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import yaml
from mkdocs.commands.build import build
from mkdocs.config import load_config
from mkdocs.exceptions import Abort

from tests.docs.commands import ROOT

DOCS = ROOT / "docs"
README_MAX_LINES = 250
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def mkdocs_build(config: Path, site: Path) -> tuple[bool, str]:
    """`mkdocs build --strict`, in this process (the OpenAPI hook then reuses the service modules
    the tests have imported): whether it built, and the warnings it gave."""
    warnings: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warnings.append  # type: ignore[method-assign]
    logger = logging.getLogger("mkdocs")
    logger.addHandler(handler)
    try:
        build(load_config(str(config), site_dir=str(site), strict=True))
        built = True
    except Abort:
        built = False
    finally:
        logger.removeHandler(handler)
    return built, "\n".join(record.getMessage() for record in warnings)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    built, warnings = mkdocs_build(ROOT / "mkdocs.yml", out)
    assert built and not warnings, warnings
    return out


def nav_pages() -> list[str]:
    def walk(entries: list) -> list[str]:
        pages = []
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            pages += walk(value) if isinstance(value, list) else [value]
        return pages

    return walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def page_html(site: Path, page: str) -> str:
    name = page.removesuffix(".md")
    return (site / ("index.html" if name == "index" else f"{name}/index.html")).read_text()


def test_every_page_is_in_the_nav_once() -> None:
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav_pages()) == pages


def test_the_site_builds_strictly_with_every_page_and_the_openapi_document(site: Path) -> None:
    for page in nav_pages():
        assert "<h1" in page_html(site, page), page
    document = json.loads((site / "openapi.json").read_text())
    assert {"/v1/search", "/v1/gallery", "/v1/audit"} <= set(document["paths"])
    assert 'href="../openapi.json"' in page_html(site, "api.md")


def test_a_page_left_out_or_a_missing_anchor_fails_the_strict_build(tmp_path: Path) -> None:
    """The validation settings the real config relies on, applied to a small site."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    small = {"site_name": "t", "nav": ["index.md"], "validation": config["validation"]}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(small))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/index.md").write_text(
        "# Home\n\n## Here\n\n[fine](#here), [gone](#nowhere)\n"
    )
    (tmp_path / "docs/left-out.md").write_text("# Not in the nav\n")
    built, warnings = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert not built
    assert "left-out.md" in warnings and "#nowhere" in warnings
    assert "#here" not in warnings


def test_the_readme_is_a_short_front_door() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    for command in ("make demo", "make test"):
        assert command in text
    linked = {link.split("#")[0] for link in _LINK.findall(text)}
    assert {f"docs/{page}" for page in nav_pages() if page != "index.md"} <= linked


def test_every_readme_link_lands(site: Path) -> None:
    """Files and folders exist; an anchor into a page is a heading the built page has."""
    for link in _LINK.findall((ROOT / "README.md").read_text()):
        if re.match(r"^[a-z]+:", link) or link.startswith("#"):
            continue
        path, _, anchor = link.partition("#")
        assert (ROOT / path).exists(), f"README links to {link}: no such file"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            html = page_html(site, path.removeprefix("docs/"))
            assert f'id="{anchor}"' in html, f"README links to {link}: no such heading"
