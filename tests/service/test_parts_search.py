"""The service over a parts index (TPS_PARTS): per-request part weights, validated; scores are
S = ⟨G, Q⟩; w_c = w_f = 0 ranks as the global embedding alone; modes never mix at start-up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bundle.encoders import Bundle
from bundle.images import decode_file
from index.encoding import Encoding
from index.ingest.add import ingest
from index.ingest.sources import from_dataset
from index.store import GalleryIndex
from service.app import create_app
from service.settings import Settings
from tests.bundle.parts_bundles import make_parts_bundle
from tests.service.support import KEY, jpeg, wait_ready

QUERY = "a woman in a red coat with a black bag"


@pytest.fixture(scope="module")
def parts_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_parts_bundle(tmp_path_factory.mktemp("parts") / "tiny")


def _index(bundle_dir: Path, root: Path, out: Path, parts: bool) -> Path:
    bundle = Bundle(bundle_dir, parts=parts)
    encoding = Encoding("fp32", bundle.layout)
    entries = from_dataset("cuhk-pedes", root, "test")
    with GalleryIndex.create(
        out, bundle.fingerprint, bundle.dim, "flat", "never", encoding=encoding
    ) as index:
        ingest(index, bundle, entries, workers=0, progress=False)
    return out


@pytest.fixture(scope="module")
def settings_for(
    tmp_path_factory: pytest.TempPathFactory, parts_bundle: Path, synthetic_root: Path
) -> Callable[..., Settings]:
    indexes = {
        parts: _index(parts_bundle, synthetic_root, tmp_path_factory.mktemp("idx") / "i", parts)
        for parts in (True, False)
    }

    def make(parts_index: bool, **overrides: object) -> Settings:
        values: dict = {
            "bundle": parts_bundle,
            "index_dir": indexes[parts_index],
            "images_dir": tmp_path_factory.mktemp("images"),
            "api_key": KEY["X-API-Key"],
            "device": "cpu",
            "index_gpu": "never",
            "index_refresh_s": 0,
            "parts": parts_index,
        }
        return Settings(**(values | overrides))

    return make


@pytest.fixture(scope="module")
def client(settings_for: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(True))) as c:
        wait_ready(c, timeout=120)
        yield c


def _search(client: TestClient, **body: object) -> list[dict]:
    reply = client.post("/v1/search", json={"query": QUERY, "top_k": 50, **body}, headers=KEY)
    assert reply.status_code == 200, reply.text
    return reply.json()["results"]


def _expected(bundle_dir: Path, root: Path, weights: dict | None) -> dict[str, float]:
    """S = ⟨G, Q⟩ per test image, computed from the encoders alone."""
    bundle = Bundle(bundle_dir, parts=True)
    query = bundle.encode_text([QUERY], weights)[0]
    entries = from_dataset("cuhk-pedes", root, "test")
    images = np.stack([bundle.preprocess(decode_file(e.path)).numpy() for e in entries])
    import torch

    scores = bundle.encode_images(torch.from_numpy(images)) @ query
    return {e.image_id: float(s) for e, s in zip(entries, scores, strict=True)}


@pytest.mark.parametrize(
    "weights",
    [None, {"global": 1.0, "coarse": 0.0, "fine": 0.0}, {"global": 0.5, "fine": 3.0}],
)
def test_scores_are_s_for_the_requested_weights(
    client: TestClient, parts_bundle: Path, synthetic_root: Path, weights: dict | None
) -> None:
    hits = _search(client, **({"weights": weights} if weights else {}))
    want = _expected(parts_bundle, synthetic_root, weights)
    assert len(hits) == len(want)
    for hit in hits:
        assert hit["score"] == pytest.approx(want[hit["image_id"]], abs=1e-4)


def test_weights_change_the_ranking_and_zero_parts_rank_as_global(
    client: TestClient, parts_bundle: Path, synthetic_root: Path
) -> None:
    global_only = _search(client, weights={"coarse": 0, "fine": 0})
    fine_only = _search(client, weights={"global": 0, "coarse": 0, "fine": 1})
    assert [h["image_id"] for h in global_only] != [h["image_id"] for h in fine_only]
    bundle = Bundle(parts_bundle)  # global mode: what a global index ranks by
    entries = from_dataset("cuhk-pedes", synthetic_root, "test")
    text = bundle.encode_text([QUERY])[0]
    import torch

    images = torch.stack([bundle.preprocess(decode_file(e.path)) for e in entries])
    cos = bundle.encode_images(images) @ text
    order = [entries[i].image_id for i in np.argsort(-cos, kind="stable")]
    assert [h["image_id"] for h in global_only] == order


def test_a_batch_takes_the_weights_of_single_searches(client: TestClient) -> None:
    weights = {"global": 0.5, "fine": 3.0}
    single = _search(client, weights=weights)
    body = {"queries": [QUERY, QUERY], "top_k": 50, "weights": weights}
    reply = client.post("/v1/search/batch", json=body, headers=KEY)
    assert reply.status_code == 200, reply.text
    for answer in reply.json()["queries"]:  # a batch of two encodes as one: scores to rounding
        assert [h["image_id"] for h in answer["results"]] == [h["image_id"] for h in single]
        got = [h["score"] for h in answer["results"]]
        assert got == pytest.approx([h["score"] for h in single], abs=1e-5)
    bad = {"queries": [QUERY], "weights": {"global": 0, "coarse": 0, "fine": 0}}
    reply = client.post("/v1/search/batch", json=bad, headers=KEY)
    assert reply.status_code == 422 and "must be > 0" in reply.text


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"global": -0.5}, "greater than or equal to 0"),
        ({"fine": 100.5}, "less than or equal to 100"),
        ({"global": 0, "coarse": 0, "fine": 0}, "must be > 0"),
        ({"hands": 1.0}, "hands"),
        ({"global_": 1.0}, "global_"),  # the field's name in code is not the API's
        ({"coarse": "1"}, "valid number"),
    ],
)
def test_bad_weights_are_refused(client: TestClient, weights: dict, message: str) -> None:
    reply = client.post("/v1/search", json={"query": QUERY, "weights": weights}, headers=KEY)
    assert reply.status_code == 422
    assert message in reply.text


def test_examples_and_uploads_in_parts_mode(client: TestClient) -> None:
    [top] = _search(client, top_k=1)
    same = _search(client, query=None, positive_ids=[top["image_id"]], exclude_examples=False)
    assert same[0]["image_id"] == top["image_id"]
    assert same[0]["score"] == pytest.approx(3.0, abs=1e-3)  # its own blocks: 1 + 1 + 1
    reply = client.post("/v1/gallery", files={"files": ("a.jpg", jpeg())}, headers=KEY)
    assert reply.status_code == 201, reply.text
    [added] = reply.json()["added"]
    found = _search(client, query=None, positive_ids=[added["image_id"]], exclude_examples=False)
    assert found[0]["image_id"] == added["image_id"]
    assert found[0]["score"] == pytest.approx(3.0, abs=1e-3)


def test_weights_to_a_global_index_are_refused(settings_for: Callable[..., Settings]) -> None:
    with TestClient(create_app(settings_for(False))) as c:
        wait_ready(c, timeout=120)
        reply = c.post("/v1/search", json={"query": QUERY, "weights": {"fine": 1}}, headers=KEY)
        assert reply.status_code == 422
        assert "parts index only" in reply.text
        batch = {"queries": [QUERY], "weights": {"fine": 1}}
        reply = c.post("/v1/search/batch", json=batch, headers=KEY)
        assert reply.status_code == 422 and "parts index only" in reply.text
        assert c.post("/v1/search", json={"query": QUERY}, headers=KEY).status_code == 200


def _failure(settings: Settings) -> str:
    app = create_app(settings)
    fatal: list[str] = []
    app.state.loader.on_fatal = fatal.append
    with TestClient(app) as c, pytest.raises(AssertionError):
        wait_ready(c, timeout=120)
    assert fatal
    return fatal[0]


def test_a_mode_mismatch_refuses_to_start(
    settings_for: Callable[..., Settings], random_bundle: Path
) -> None:
    parts_index = settings_for(True)
    assert "TPS_PARTS=true" in _failure(settings_for(True, parts=False))
    assert "TPS_PARTS=false" in _failure(settings_for(False, parts=True))
    assert "TPS_RUNTIME=torch" in _failure(settings_for(True, runtime="onnx"))
    message = _failure(settings_for(False, bundle=random_bundle, parts=True))
    assert "no part head" in message
    assert parts_index.parts
