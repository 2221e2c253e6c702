"""CORS: off unless TPS_CORS_ORIGINS names origins, and then only for those origins.

The default (off) is checked against a live server in api_tests/reliability; here the real app
answers preflights in-process (CORS is decided before any route or model is involved).
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

ALLOWED = "https://search.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}


def client(**settings: object) -> TestClient:
    # No `with`: the lifespan (model loading) does not run; CORS needs none of it.
    return TestClient(create_app(Settings(bundle="b", index_dir="i", **settings)))


def test_off_by_default() -> None:
    reply = client().options("/v1/search", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert "access-control-allow-origin" not in reply.headers


def test_on_for_the_configured_origins_only() -> None:
    http = client(cors_origins=f"{ALLOWED}, https://other.example")
    allowed = http.options("/v1/search", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    stranger = http.options("/v1/search", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in stranger.headers
    simple = http.get("/healthz", headers={"Origin": ALLOWED})
    assert simple.headers["access-control-allow-origin"] == ALLOWED
    assert (
        "access-control-allow-origin"
        not in http.get("/healthz", headers={"Origin": "https://evil.example"}).headers
    )
