"""Metadata on upload and filtered search in-process, over the default (folder) store: the
answer is the top k among the images that pass, the same as ranking them by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from index.filters import GalleryFilter
from service.app import create_app
from service.metadata import parse_time
from service.settings import Settings
from tests.service.support import KEY, count, jpeg, wait_ready

UPLOADS = [
    # (colour, camera, captured_at, tags)
    ((200, 10, 10), "lobby", "2024-05-01T08:00:00Z", "entrance,red"),
    ((10, 200, 10), "lobby", "2024-05-01T12:00:00", "entrance"),
    ((10, 10, 200), "gate-2", "2024-05-01T14:00:00+02:00", "red"),
    ((90, 90, 10), "gate-2", "2024-05-02T09:30:00Z", ""),
    ((10, 90, 90), "yard", None, "red, night"),
]


@pytest.fixture(scope="module")
def client(make_settings: Callable[..., Settings]) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(batch_max_wait_ms=50))) as c:
        wait_ready(c)
        for colour, camera, when, tags in UPLOADS:
            fields = {"camera_id": camera, "person_id": f"p-{camera}", "tags": tags}
            if when:
                fields["captured_at"] = when
            reply = c.post(
                "/v1/gallery", files={"files": ("x.jpg", jpeg(colour))}, data=fields, headers=KEY
            )
            assert reply.status_code == 201, reply.text
        yield c


def brute_force(client: TestClient, query: str, where: GalleryFilter | None, k: int) -> list[str]:
    runtime = client.app.state.runtime
    store = runtime.store
    passing = [item.image_id for item in store.items() if where is None or where.matches(item)]
    vectors = store.vectors(passing)
    query_vector = runtime.bundle.encode_text([query])[0]
    scores = {image_id: float(vectors[image_id] @ query_vector) for image_id in passing}
    return sorted(scores, key=lambda i: -scores[i])[:k]


def ids(reply) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [r["image_id"] for r in reply.json()["results"]]


def test_uploaded_metadata_is_stored_and_returned(client: TestClient) -> None:
    everything = client.post("/v1/search", json={"query": "a person", "top_k": 100}).json()
    by_camera = [r for r in everything["results"] if r["camera_id"] == "gate-2"]
    assert len(by_camera) == 2
    item = client.get(f"/v1/gallery/{by_camera[0]['image_id']}").json()
    assert item["camera_id"] == "gate-2" and item["person_id"] == "p-gate-2"
    assert item["captured_at"] in ("2024-05-01T12:00:00Z", "2024-05-02T09:30:00Z")
    assert item["captured_at"] == by_camera[0]["captured_at"]
    lobby = [r for r in everything["results"] if r["camera_id"] == "lobby"]
    tags = {tuple(client.get(f"/v1/gallery/{r['image_id']}").json()["tags"]) for r in lobby}
    assert tags == {("entrance", "red"), ("entrance",)}
    plain = client.get("/v1/gallery/p0020/p0020_01.jpg").json()
    assert (plain["camera_id"], plain["captured_at"], plain["tags"]) == (None, None, [])


FILTERS = [
    {"camera_ids": ["lobby"]},
    {"camera_ids": ["lobby", "gate-2"], "tags": ["red"]},
    {"captured_after": "2024-05-01T10:00:00Z"},
    {"captured_after": "2024-05-01T08:00:00Z", "captured_before": "2024-05-01T12:00:00Z"},
    {"tags": ["red", "night"]},
    {"person_ids": ["p-yard", "20"]},
    {"camera_ids": ["nowhere"]},
]


def gallery_filter(filters: dict) -> GalleryFilter:
    times = {k: parse_time(v) for k, v in filters.items() if k.startswith("captured")}
    lists = {k: tuple(v) for k, v in filters.items() if not k.startswith("captured")}
    return GalleryFilter(**times, **lists)


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f))
def test_filtered_search_is_the_top_k_among_the_passing_images(
    client: TestClient, filters: dict
) -> None:
    query = "a person in a red coat"
    expected = brute_force(client, query, gallery_filter(filters), 3)
    got = ids(client.post("/v1/search", json={"query": query, "top_k": 3, "filters": filters}))
    assert got == expected
    batch = client.post(
        "/v1/search/batch", json={"queries": [query, query], "top_k": 3, "filters": filters}
    )
    assert [[r["image_id"] for r in q["results"]] for q in batch.json()["queries"]] == [
        expected
    ] * 2


def test_concurrent_searches_with_different_filters_do_not_mix(client: TestClient) -> None:
    query = "someone walking"
    bodies = [{"query": query, "top_k": 4, "filters": f} for f in FILTERS] * 3
    bodies += [{"query": query, "top_k": 4}] * 3
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda b: client.post("/v1/search", json=b), bodies))
    for body, reply in zip(bodies, replies, strict=True):
        where = gallery_filter(body["filters"]) if "filters" in body else None
        assert ids(reply) == brute_force(client, query, where, 4), body


def test_unique_persons_within_a_filter(client: TestClient) -> None:
    body = {"query": "a person", "top_k": 5, "unique_persons": True}
    body["filters"] = {"camera_ids": ["lobby", "gate-2"]}
    persons = [r["person_id"] for r in client.post("/v1/search", json=body).json()["results"]]
    assert sorted(persons) == ["p-gate-2", "p-lobby"]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"camera_id": "front door"}, "camera_id must be"),
        ({"captured_at": "last tuesday"}, "captured_at must be an ISO 8601 time"),
        ({"captured_at": "2024-02-30T10:00:00Z"}, "captured_at must be"),
        ({"tags": "ok,not ok"}, "tags must each be"),
        ({"tags": ",".join(f"t{i}" for i in range(17))}, "at most 16 tags"),
    ],
)
def test_bad_metadata_is_422_and_writes_nothing(
    client: TestClient, fields: dict, needle: str
) -> None:
    before = count(client)
    reply = client.post(
        "/v1/gallery", files={"files": ("y.jpg", jpeg((1, 2, 250)))}, data=fields, headers=KEY
    )
    assert reply.status_code == 422 and needle in reply.json()["detail"]
    assert count(client) == before


def test_repeated_tag_fields_add_up(client: TestClient) -> None:
    parts = [
        ("files", ("z.jpg", jpeg((3, 3, 3)), "image/jpeg")),
        ("tags", (None, "a,b")),
        ("tags", (None, "c")),
    ]
    reply = client.post("/v1/gallery", files=parts, headers=KEY)
    assert reply.status_code == 201, reply.text
    [added] = reply.json()["added"]
    assert added["tags"] == ["a", "b", "c"] and added["camera_id"] is None
    found = client.post(
        "/v1/search", json={"query": "x", "top_k": 5, "filters": {"tags": ["c", "a"]}}
    )
    assert ids(found) == [added["image_id"]]
    assert client.delete(f"/v1/gallery/{added['image_id']}", headers=KEY).status_code == 204


@pytest.mark.parametrize(
    ("filters", "needle"),
    [
        ({"camera": ["lobby"]}, "filters.camera is not a filter"),
        ({"camera_ids": "lobby"}, "filters.camera_ids must be a list"),
        ({"captured_after": "noon"}, "filters.captured_after must be an ISO 8601 time"),
        ({"tags": []}, "filters.tags is empty"),
        (
            {"captured_after": "2024-05-02T00:00:00Z", "captured_before": "2024-05-01T00:00:00Z"},
            "filters.captured_after",
        ),
    ],
)
def test_bad_filters_are_422_naming_the_field(
    client: TestClient, filters: dict, needle: str
) -> None:
    for route, body in (
        ("/v1/search", {"query": "a person"}),
        ("/v1/search/batch", {"queries": ["a person"]}),
    ):
        reply = client.post(route, json={**body, "filters": filters})
        assert reply.status_code == 422 and needle in str(reply.json()["detail"]), reply.text


def test_no_filter_and_an_empty_filter_are_the_same(client: TestClient) -> None:
    plain = ids(client.post("/v1/search", json={"query": "a person", "top_k": 8}))
    empty = client.post("/v1/search", json={"query": "a person", "top_k": 8, "filters": {}})
    assert ids(empty) == plain == brute_force(client, "a person", None, 8)
    null = client.post("/v1/search", json={"query": "a person", "top_k": 8, "filters": None})
    assert ids(null) == plain
    assert np.isfinite([r["score"] for r in null.json()["results"]]).all()
