"""Filtered search over HTTP on the Milvus store equals a brute-force ranking in numpy: the
images that pass the filter, read from the server with their vectors, scored by the bundle's
own text vector. Uploads go through both replicas; the answers come from both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from api_tests.scaleout.conftest import Replicas
from api_tests.scaleout.support import direct, upload
from index.filters import GalleryFilter
from service.metadata import parse_time

# (seeds, camera, captured_at, tags): 16 images over 3 cameras, 2 days, a few tags; one request
# without a capture time and one without a camera.
GALLERY = [
    ([301, 302, 303], "cam-a", "2024-06-01T08:00:00Z", "entrance"),
    ([304, 305], "cam-a", "2024-06-01T13:30:00Z", "entrance,red"),
    ([306, 307, 308], "cam-b", "2024-06-01T20:00:00+02:00", "red"),
    ([309, 310], "cam-b", "2024-06-02T09:00:00", ""),
    ([311, 312, 313], "cam-c", None, "red,night"),
    ([314, 315, 316], None, "2024-06-02T23:59:59Z", "night"),
]

FILTERS = [
    {"camera_ids": ["cam-a"]},
    {"camera_ids": ["cam-b", "cam-c"]},
    {"captured_after": "2024-06-01T12:00:00Z"},
    {"captured_before": "2024-06-01T18:00:00Z"},
    {"captured_after": "2024-06-01T13:30:00Z", "captured_before": "2024-06-01T18:00:00Z"},
    {"tags": ["red"]},
    {"tags": ["red", "night"]},
    {"camera_ids": ["cam-a", "cam-b"], "tags": ["red"], "captured_after": "2024-06-01"},
    {"person_ids": ["walker-2", "walker-4"]},
    {"camera_ids": ["nowhere"]},
]
QUERIES = ["a woman in a red coat", "a man with a backpack walking at night"]


@pytest.fixture(scope="module")
def gallery(replicas: Replicas) -> Iterator[Replicas]:
    uploaded: list[str] = []
    for n, (seeds, camera, when, tags) in enumerate(GALLERY):
        fields = {"person_id": f"walker-{n}", "tags": tags}
        if camera:
            fields["camera_id"] = camera
        if when:
            fields["captured_at"] = when
        replica = replicas.a if n % 2 else replicas.b
        with httpx.Client(base_url=replica.url, timeout=60) as http:
            reply, sent = upload(http, seeds, **fields)
        assert reply.status_code == 201, reply.text
        uploaded += sent
    yield replicas


def gallery_filter(filters: dict) -> GalleryFilter:
    times = {k: parse_time(v) for k, v in filters.items() if k.startswith("captured")}
    lists = {k: tuple(v) for k, v in filters.items() if not k.startswith("captured")}
    return GalleryFilter(**times, **lists)


def brute_force(store: str, bundle: Path, query: str, where: GalleryFilter) -> dict[str, float]:
    """image_id -> score of every image that passes, straight from the server's rows."""
    from bundle.encoders import Bundle

    with direct(store) as gallery:
        passing = [item.image_id for item in gallery.items() if where.matches(item)]
        vectors = gallery.vectors(passing)
    text = Bundle(bundle, device="cpu").encode_text([query])[0]
    return {image_id: float(np.dot(vectors[image_id], text)) for image_id in passing}


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: "+".join(f))
def test_filtered_search_is_the_brute_force_top_k(gallery: Replicas, filters: dict) -> None:
    where = gallery_filter(filters)
    k = 5
    for query in QUERIES:
        expected = brute_force(gallery.store, gallery.bundle, query, where)
        best = sorted(expected.values(), reverse=True)[:k]
        for replica in (gallery.a, gallery.b):
            reply = httpx.post(
                f"{replica.url}/v1/search",
                json={"query": query, "top_k": k, "filters": filters},
                timeout=60,
            )
            assert reply.status_code == 200, reply.text
            results = reply.json()["results"]
            # Every hit passes and is scored as numpy scores it; together they are a top k of
            # the passing images (compared by score, so exact ties may come in either order).
            assert all(r["image_id"] in expected for r in results), filters
            got = [r["score"] for r in results]
            assert np.allclose(got, [expected[r["image_id"]] for r in results], atol=1e-4)
            assert np.allclose(got, best, atol=1e-4), (filters, query)


def test_the_batch_route_filters_every_query(gallery: Replicas) -> None:
    filters = {"camera_ids": ["cam-b"], "tags": ["red"]}
    reply = httpx.post(
        f"{gallery.b.url}/v1/search/batch",
        json={"queries": QUERIES, "top_k": 10, "filters": filters},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    for entry in reply.json()["queries"]:
        assert len(entry["results"]) == 3
        assert {r["camera_id"] for r in entry["results"]} == {"cam-b"}
        assert {r["captured_at"] for r in entry["results"]} == {"2024-06-01T18:00:00Z"}


def test_a_bad_filter_is_422_on_the_milvus_store_too(gallery: Replicas) -> None:
    reply = httpx.post(
        f"{gallery.a.url}/v1/search",
        json={
            "query": "x",
            "filters": {"captured_after": "2024-06-02", "captured_before": "2024-06-01"},
        },
        timeout=60,
    )
    assert reply.status_code == 422 and "filters.captured_after" in reply.text
