"""Interactive search over HTTP against the real server and the trained fixture model: search by
example ids, by an uploaded photo, suggestions, and every refusal of the new fields."""

from __future__ import annotations

import io
import json
from pathlib import Path
from statistics import median

import httpx
import pytest
from PIL import Image

from service.suggest import with_phrase
from service.vocabulary import VOCABULARY
from support.server import UPLOAD_LIMIT, index_count
from tests.service.support import png_header_only

PHRASES = {p.text for p in VOCABULARY}


@pytest.fixture(scope="module")
def persons(quality_root: Path) -> dict[str, list[str]]:
    """person id → the served (test split) image ids of that person."""
    entries = json.loads((quality_root / "reid_raw.json").read_text())
    found: dict[str, list[str]] = {}
    for e in entries:
        if e["split"] == "test":
            found.setdefault(str(e["id"]), []).append(e["file_path"])
    return found


def ids(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [r["image_id"] for r in reply.json()["results"]]


def photo(quality_root: Path, image_id: str) -> tuple[str, bytes, str]:
    return ("photo.jpg", (quality_root / "imgs" / image_id).read_bytes(), "image/jpeg")


def test_more_like_this_leaves_the_results_and_k_remain(http: httpx.Client) -> None:
    first = ids(http.post("/v1/search", json={"query": "a woman with a bag", "top_k": 10}))
    chosen, rejected = first[1], first[0]
    body = {"query": "a woman with a bag", "top_k": 10, "positive_ids": [chosen]}
    body["negative_ids"] = [rejected]
    again = ids(http.post("/v1/search", json=body))
    assert len(again) == 10 and chosen not in again and rejected not in again
    kept = ids(http.post("/v1/search", json=body | {"exclude_examples": False, "top_k": 100}))
    assert chosen in kept


def test_a_known_image_finds_the_same_person_from_other_views(
    http: httpx.Client, persons: dict[str, list[str]]
) -> None:
    """Search by one gallery image alone (cross-view re-identification): the person's other
    images rank far above chance (the fixture model: median rank about 12 of 99)."""
    ranks = []
    for images in list(persons.values())[:25]:
        probe, other = images[0], images[1]
        reply = http.post("/v1/search", json={"positive_ids": [probe], "top_k": 100})
        found = [i for i in ids(reply) if "/" in i]  # uploads of other tests do not count
        assert probe not in found
        ranks.append(found.index(other) + 1)
    gallery = sum(len(v) for v in persons.values())
    assert median(ranks) < gallery / 4, ranks


def test_an_uploaded_photo_searches_without_being_stored(
    http: httpx.Client, quality_root: Path, persons: dict[str, list[str]]
) -> None:
    before = index_count(http)
    images = next(iter(persons.values()))
    reply = http.post(
        "/v1/search/image",
        files={"image": photo(quality_root, images[0])},
        data={"top_k": "5", "suggest": "true", "suggest_count": "3"},
    )
    found = ids(reply)
    # The gallery holds the same picture: it comes first, with the same vector.
    assert found[0] == images[0] and reply.json()["results"][0]["score"] > 0.999
    assert len(found) == 5 and len(reply.json()["suggestions"]) <= 3
    assert index_count(http) == before
    # The same photo with the gallery copy as a negative and a filter to that person: the
    # person's other image, and only images passing the filter.
    person = next(iter(persons))
    reply = http.post(
        "/v1/search/image",
        files={"image": photo(quality_root, images[0])},
        data={"negative_ids": images[0], "filters": json.dumps({"person_ids": [person]})},
    )
    assert ids(reply) == images[1:]


def test_suggestions_over_http(http: httpx.Client) -> None:
    query = "A man with a backpack."
    body = http.post("/v1/search", json={"query": query, "suggest": True, "top_k": 5}).json()
    suggestions = body["suggestions"]
    assert 1 <= len(suggestions) <= 5 and len(body["results"]) == 5
    for s in suggestions:
        assert s["phrase"] in PHRASES and s["query"] == with_phrase(query, s["phrase"])
        assert s["phrase"] not in ("man", "backpack")
    scores = [s["score"] for s in suggestions]
    assert scores == sorted(scores, reverse=True) and all(0 < x <= 1 for x in scores)
    # Following a suggestion is a plain search of its query, and it reorders the results.
    follow = ids(http.post("/v1/search", json={"query": suggestions[0]["query"], "top_k": 20}))
    before = ids(http.post("/v1/search", json={"query": query, "top_k": 20}))
    assert follow != before


def test_examples_and_filters_together(http: httpx.Client, persons: dict[str, list[str]]) -> None:
    people, outsider = list(persons)[:3], list(persons)[5]
    probe = persons[outsider][0]
    body = {"positive_ids": [probe], "top_k": 20, "filters": {"person_ids": people}}
    reply = http.post("/v1/search", json=body).json()["results"]
    assert reply and {r["person_id"] for r in reply} <= set(people)


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({}, 422, "nothing to search for"),
        ({"negative_ids": ["p0951/p0951_01.jpg"]}, 422, "nothing to search for"),
        ({"positive_ids": ["no/such.jpg", "other"]}, 404, "'no/such.jpg', 'other'"),
        ({"query": "x", "positive_ids": ["a"], "negative_ids": ["a"]}, 422, "both"),
        ({"query": "x", "alpha": 10.5}, 422, "alpha"),
        ({"query": "x", "beta": -0.1}, 422, "beta"),
        ({"query": "x", "suggest": "yes"}, 422, "suggest"),
        ({"query": "x", "suggest_count": 0}, 422, "suggest_count"),
        ({"query": "x", "positive_ids": "a"}, 422, "positive_ids"),
        ({"query": "x", "exclude_examples": 1}, 422, "exclude_examples"),
    ],
)
def test_refusals_of_the_new_fields(http: httpx.Client, body: dict, status: int, says: str) -> None:
    before = index_count(http)
    reply = http.post("/v1/search", json=body)
    assert reply.status_code == status, reply.text
    assert says in json.dumps(reply.json()["detail"])
    assert index_count(http) == before


def image_bytes(size: tuple[int, int], noisy: bool = False) -> bytes:
    out = io.BytesIO()
    img = Image.effect_noise(size, 80).convert("RGB") if noisy else Image.new("RGB", size, "red")
    img.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("files", "data", "status", "says"),
    [
        ({"image": ("a.txt", b"plain text", "text/plain")}, {}, 415, "not a supported image"),
        ({"image": ("a.png", image_bytes((64, 64))[:60], "image/png")}, {}, 422, "corrupt"),
        ({"image": ("b.png", png_header_only(20_000, 20_000), "image/png")}, {}, 413, "pixels"),
        ({"image": ("a.png", image_bytes((64, 64)), "image/png")}, {"top_k": "0"}, 422, "top_k"),
        ({"image": ("a.png", image_bytes((64, 64)), "image/png")}, {"alpha": "x"}, 422, "alpha"),
        ({"image": ("a.png", image_bytes((64, 64)), "image/png")}, {"k": "3"}, 422, "unknown"),
        ({"image": ("a.png", image_bytes((64, 64)), "image/png")}, {"positive_ids": "zz"}, 404,
         "'zz'"),
        ({"file": ("a.png", image_bytes((64, 64)), "image/png")}, {}, 422, "unknown form field"),
    ],
)  # fmt: skip
def test_photo_refusals(
    http: httpx.Client, files: dict, data: dict, status: int, says: str
) -> None:
    reply = http.post("/v1/search/image", files=files, data=data)
    assert reply.status_code == status, reply.text
    assert says in json.dumps(reply.json()["detail"])


def test_photo_bodies_get_the_upload_limit(http: httpx.Client) -> None:
    """A photo larger than a JSON body may be (1 MB) is searched; one over the upload limit is
    refused before it is read."""
    big = image_bytes((720, 720), noisy=True)
    assert 1024 * 1024 < len(big) < UPLOAD_LIMIT
    reply = http.post("/v1/search/image", files={"image": ("big.png", big, "image/png")})
    assert reply.status_code == 200, reply.text
    too_big = big + b"\x00" * UPLOAD_LIMIT
    reply = http.post("/v1/search/image", files={"image": ("huge.png", too_big, "image/png")})
    assert reply.status_code == 413
    reply = http.post("/v1/search/image", json={"query": "x"})
    assert reply.status_code == 415
