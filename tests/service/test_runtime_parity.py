"""The service ranks the same whichever runtime encodes: torch, ONNX, with or without trimming."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.support import wait_ready


def _captions(root: Path) -> list[str]:
    entries = json.loads((root / "reid_raw.json").read_text())
    return [c for e in entries if e["split"] == "test" for c in e["captions"]][:12]


def _rankings(settings: Settings, queries: list[str]) -> list[list[tuple[str, float]]]:
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        rankings = []
        for query in queries:
            reply = client.post("/v1/search", json={"query": query, "top_k": 10})
            assert reply.status_code == 200, reply.text
            rankings.append([(r["image_id"], r["score"]) for r in reply.json()["results"]])
        return rankings


def _assert_same(got: list, want: list, tolerance: float) -> None:
    for hits, expected in zip(got, want, strict=True):
        assert [i for i, _ in hits] == [i for i, _ in expected]
        assert max(abs(a - b) for (_, a), (_, b) in zip(hits, expected, strict=True)) < tolerance


@pytest.mark.parametrize(
    "overrides",
    [{"runtime": "onnx"}, {"runtime": "torch", "trim_text": False}],
    ids=["onnx", "torch-full-context"],
)
def test_rankings_are_identical_across_runtimes(
    make_settings: Callable[..., Settings],
    onnx_bundle: Path,
    synthetic_root: Path,
    overrides: dict,
) -> None:
    queries = _captions(synthetic_root)
    want = _rankings(make_settings(bundle=onnx_bundle, runtime="torch"), queries)
    got = _rankings(make_settings(bundle=onnx_bundle, **overrides), queries)
    _assert_same(got, want, tolerance=1e-4)
