"""Search by example, by photo, and with suggestions, in-process over the random bundle: shapes,
exclusion, refusals (what ranks well is for the API tests, with a trained model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from index.search.query_vector import combine
from service.suggest import with_phrase
from service.vocabulary import VOCABULARY
from tests.service.support import jpeg

PHRASES = {p.text for p in VOCABULARY}


@pytest.fixture(scope="module")
def gallery(client: TestClient) -> list[dict]:
    """Every gallery image, best first for some query (ids, persons)."""
    reply = client.post("/v1/search", json={"query": "a person", "top_k": 100})
    return reply.json()["results"]


def ids(reply) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [r["image_id"] for r in reply.json()["results"]]


def test_positive_examples_alone_search_and_leave_the_results(
    client: TestClient, gallery: list[dict]
) -> None:
    chosen = gallery[3]["image_id"]
    k = len(gallery) - 1
    found = ids(client.post("/v1/search", json={"positive_ids": [chosen], "top_k": k}))
    assert chosen not in found and len(found) == k
    kept = client.post(
        "/v1/search", json={"positive_ids": [chosen], "top_k": 2, "exclude_examples": False}
    )
    assert ids(kept)[0] == chosen and kept.json()["results"][0]["score"] > 0.999


def test_the_served_query_is_the_documented_combination(
    client: TestClient, gallery: list[dict], random_bundle: Path
) -> None:
    """What the service ranks by equals index/query_vector.combine of the same vectors."""
    from bundle.encoders import Bundle

    pos, neg = gallery[5]["image_id"], gallery[0]["image_id"]
    body = {"query": "a man", "positive_ids": [pos], "negative_ids": [neg], "alpha": 0.8}
    body |= {"beta": 0.4, "top_k": len(gallery), "exclude_examples": False}
    reply = client.post("/v1/search", json=body).json()["results"]
    runtime = client.app.state.runtime
    vectors = runtime.store.vectors([pos, neg])
    text = Bundle(random_bundle).encode_text(["a man"])[0]
    q = combine(text, vectors[pos][None], vectors[neg][None], 0.8, 0.4)
    every = runtime.store.vectors([r["image_id"] for r in reply])
    for hit in reply:
        assert hit["score"] == pytest.approx(float(every[hit["image_id"]] @ q), abs=1e-4)


def test_unknown_examples_are_404_naming_them(client: TestClient, gallery: list[dict]) -> None:
    reply = client.post(
        "/v1/search",
        json={
            "query": "x",
            "positive_ids": [gallery[0]["image_id"], "nope-1"],
            "negative_ids": ["nope/2"],
        },
    )
    assert reply.status_code == 404
    assert "'nope-1'" in reply.json()["detail"] and "'nope/2'" in reply.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({}, "query", "nothing to search for"),
        ({"negative_ids": ["a"]}, "query", "nothing to search for"),
        ({"query": "  ", "positive_ids": ["a"]}, "query", "the query is empty"),
        ({"query": "x", "positive_ids": ["a"], "negative_ids": ["a"]}, "negative_ids", "both"),
        ({"query": "x", "alpha": -1}, "alpha", "greater than or equal"),
        ({"query": "x", "beta": 11}, "beta", "less than or equal"),
        ({"query": "x", "suggest_count": 11}, "suggest_count", "less than or equal"),
        ({"query": "x", "positive_ids": ["a\nb"]}, "positive_ids", "positive_ids[0]"),
        ({"query": "x", "positive_ids": ["a"] * 65}, "positive_ids", "at most 64"),
        ({"query": "x", "exclude_examples": "no"}, "exclude_examples", "boolean"),
    ],
)
def test_refusals_are_422_and_name_the_field(
    client: TestClient, body: dict, field: str, says: str
) -> None:
    reply = client.post("/v1/search", json=body)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"][-1] == field and says in error["msg"]


def test_suggestions_come_only_when_asked(client: TestClient) -> None:
    plain = client.post("/v1/search", json={"query": "a man with a bag", "top_k": 3}).json()
    assert plain["suggestions"] is None
    body = {"query": "a man with a bag.", "top_k": 3, "suggest": True, "suggest_count": 4}
    reply = client.post("/v1/search", json=body).json()
    assert len(reply["results"]) == 3
    assert 1 <= len(reply["suggestions"]) <= 4
    for s in reply["suggestions"]:
        assert s["phrase"] in PHRASES and s["phrase"] != "man"
        assert s["query"] == with_phrase("a man with a bag.", s["phrase"])
        assert s["query"] == f"a man with a bag, {s['phrase']}"
    scores = [s["score"] for s in reply["suggestions"]]
    assert all(0 <= x <= 1 for x in scores) and scores == sorted(scores, reverse=True)


def test_filters_hold_for_searches_by_example(client: TestClient, gallery: list[dict]) -> None:
    persons = sorted({r["person_id"] for r in gallery})[:2]
    chosen = next(r["image_id"] for r in gallery if r["person_id"] not in persons)
    body = {"positive_ids": [chosen], "top_k": 50, "filters": {"person_ids": persons}}
    results = client.post("/v1/search", json=body).json()["results"]
    assert results and {r["person_id"] for r in results} <= set(persons)


def image_of(client: TestClient, image_id: str) -> bytes:
    reply = client.get(f"/v1/gallery/{image_id}/image")
    assert reply.status_code == 200
    return reply.content


def test_a_photo_finds_its_own_gallery_image(client: TestClient, gallery: list[dict]) -> None:
    target = gallery[2]["image_id"]
    data = image_of(client, target)
    reply = client.post(
        "/v1/search/image",
        files={"image": ("photo.jpg", data, "image/jpeg")},
        data={"top_k": "3", "suggest": "true", "suggest_count": "2"},
    )
    assert ids(reply)[0] == target
    assert reply.json()["results"][0]["score"] > 0.999
    assert len(reply.json()["suggestions"]) <= 2
    # With text and a negative example as well, filters in JSON, and the photo's twin left out.
    other = gallery[0]["image_id"]
    reply = client.post(
        "/v1/search/image",
        files={"image": ("photo.jpg", data, "image/jpeg")},
        data={"query": "a person", "negative_ids": [other], "top_k": "50"},
    )
    assert other not in ids(reply)


@pytest.mark.parametrize(
    ("files", "data", "status", "says"),
    [
        (None, {"top_k": "3"}, 415, "multipart"),
        ({"image": ("a.txt", b"hello", "text/plain")}, {}, 415, "not a supported image"),
        ({"image": ("a.jpg", jpeg()[:200], "image/jpeg")}, {}, 422, "corrupt"),
        ({"photo": ("a.jpg", jpeg(), "image/jpeg")}, {}, 422, "unknown form field"),
        ({"image": ("a.jpg", jpeg(), "image/jpeg")}, {"top_k": "0"}, 422, "greater than"),
        ({"image": ("a.jpg", jpeg(), "image/jpeg")}, {"top_k": "x"}, 422, "whole number"),
        ({"image": ("a.jpg", jpeg(), "image/jpeg")}, {"positive_ids": "nope"}, 404, "'nope'"),
        ({"image": ("a.jpg", jpeg(), "image/jpeg")}, {"filters": "[]"}, 422, "filters must be"),
    ],
)
def test_photo_search_refusals(
    client: TestClient, files: dict | None, data: dict, status: int, says: str
) -> None:
    if files is None:
        reply = client.post("/v1/search/image", data=data)
    else:
        reply = client.post("/v1/search/image", files=files, data=data)
    assert reply.status_code == status, reply.text
    assert says in str(reply.json()["detail"])


def test_two_photos_are_refused(client: TestClient) -> None:
    files = [("image", ("a.jpg", jpeg(), "image/jpeg")), ("image", ("b.jpg", jpeg(), "image/jpeg"))]
    reply = client.post("/v1/search/image", files=files)
    assert reply.status_code == 422 and "exactly one image" in str(reply.json()["detail"])


def test_a_photo_changes_nothing(client: TestClient) -> None:
    before = client.get("/v1/info").json()["index"]["count"]
    client.post("/v1/search/image", files={"image": ("a.jpg", jpeg((1, 2, 3)), "image/jpeg")})
    assert client.get("/v1/info").json()["index"]["count"] == before
