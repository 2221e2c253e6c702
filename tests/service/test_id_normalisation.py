"""One normalisation of ids for storing and for filtering: a person id sent as " spaced " is
stored as "spaced", and a filter for " spaced " (or "spaced") finds it; the same for cameras."""

from __future__ import annotations

from fastapi.testclient import TestClient

from index.filters import GalleryFilter
from tests.service.support import KEY, jpeg


def test_a_spaced_id_is_stored_and_filtered_alike(client: TestClient) -> None:
    reply = client.post(
        "/v1/gallery",
        files={"files": ("s.jpg", jpeg((41, 42, 43)))},
        data={"person_id": " spaced ", "camera_id": " dock-9 "},
        headers=KEY,
    )
    assert reply.status_code == 201, reply.text
    [added] = reply.json()["added"]
    assert (added["person_id"], added["camera_id"]) == ("spaced", "dock-9")
    for persons, cameras in (([" spaced "], None), (["spaced"], [" dock-9 "]), (None, ["dock-9"])):
        filters = {k: v for k, v in (("person_ids", persons), ("camera_ids", cameras)) if v}
        found = client.post("/v1/search", json={"query": "a person", "filters": filters})
        assert found.status_code == 200, found.text
        assert [r["image_id"] for r in found.json()["results"]] == [added["image_id"]], filters


def test_the_store_filter_normalises_too() -> None:
    where = GalleryFilter(person_ids=(" a ",), camera_ids=("b ",), tags=(" t",))
    assert (where.person_ids, where.camera_ids, where.tags) == (("a",), ("b",), ("t",))
