"""The search page at / (its script and style are served from /static), its icon, and /docs.

/docs is a page of this package that lists the operations of /openapi.json: FastAPI's own loads
Swagger UI from a CDN, which the page's Content-Security-Policy (service/headers.py) would
refuse and a private deployment should not fetch.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/docs")
async def docs() -> FileResponse:
    return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    # Browsers ask for /favicon.ico whatever the page links; an SVG answers both.
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")
