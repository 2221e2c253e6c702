"""Many replicas, one gallery: what one replica writes, the other serves at once, no restart."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx

from api_tests.reliability.support import sha256
from api_tests.scaleout.conftest import Replicas
from api_tests.scaleout.support import KEY, direct, stored_files, upload


def test_both_replicas_serve_the_milvus_store(replicas: Replicas) -> None:
    for replica in (replicas.a, replicas.b):
        info = httpx.get(f"{replica.url}/v1/info").json()
        assert info["index"]["store"] == "milvus"
        assert httpx.get(f"{replica.url}/readyz").json() == {"status": "ready", "detail": None}


def test_an_upload_on_one_replica_is_served_by_the_other(replicas: Replicas) -> None:
    with (
        httpx.Client(base_url=replicas.a.url, timeout=30) as a,
        httpx.Client(base_url=replicas.b.url, timeout=30) as b,
    ):
        reply, sent = upload(
            a,
            [101, 102],
            person_id="walker-7",
            camera_id="lobby-1",
            captured_at="2024-05-01T09:15:00+02:00",
            tags="entrance, red",
        )
        assert reply.status_code == 201, reply.text
        for image_id, sha in sent.items():
            item = b.get(f"/v1/gallery/{image_id}")
            assert item.status_code == 200, item.text
            body = item.json()
            assert (body["person_id"], body["camera_id"]) == ("walker-7", "lobby-1")
            assert body["captured_at"] == "2024-05-01T07:15:00Z" and body["tags"] == [
                "entrance",
                "red",
            ]
            image = b.get(f"/v1/gallery/{image_id}/image")
            assert image.status_code == 200 and sha256(image.content) == sha
        found = b.post(
            "/v1/search",
            json={"query": "a person", "top_k": 10, "filters": {"camera_ids": ["lobby-1"]}},
        ).json()["results"]
        assert {r["image_id"] for r in found} == set(sent)
        assert {r["captured_at"] for r in found} == {"2024-05-01T07:15:00Z"}

        # The same bytes again, on the other replica: a duplicate, not a second copy.
        again, _ = upload(b, [101])
        assert again.status_code == 200
        assert again.json()["duplicates"][0]["existing_image_id"] in sent


def test_a_delete_on_one_replica_is_gone_from_the_other(replicas: Replicas) -> None:
    with (
        httpx.Client(base_url=replicas.a.url, timeout=30) as a,
        httpx.Client(base_url=replicas.b.url, timeout=30) as b,
    ):
        reply, sent = upload(a, [201], camera_id="gate-3")
        assert reply.status_code == 201, reply.text
        [(image_id, sha)] = sent.items()
        assert sha in stored_files(replicas.image_dir)

        assert b.delete(f"/v1/gallery/{image_id}", headers=KEY).status_code == 204
        assert a.get(f"/v1/gallery/{image_id}").status_code == 404
        assert a.get(f"/v1/gallery/{image_id}/image").status_code == 404
        assert a.delete(f"/v1/gallery/{image_id}", headers=KEY).status_code == 404
        everything = a.post("/v1/search", json={"query": "a person", "top_k": 100}).json()
        assert image_id not in {r["image_id"] for r in everything["results"]}
        assert sha not in stored_files(replicas.image_dir)
        with direct(replicas.store) as gallery:
            assert gallery.get(image_id) is None


def test_counts_agree_across_replicas_and_the_server(replicas: Replicas) -> None:
    with direct(replicas.store) as gallery:
        expected = gallery.count()
    for replica in (replicas.a, replicas.b):
        assert httpx.get(f"{replica.url}/v1/info").json()["index"]["count"] == expected
        metrics = httpx.get(f"{replica.url}/metrics").text
        assert f"tps_index_images {float(expected)}" in metrics


def test_odd_ids_are_404_not_store_errors(replicas: Replicas) -> None:
    """Ids that could never be stored reach a Milvus filter expression only when they are
    harmless there; none of them is a server error."""
    odd = ['a"b', "it's", "back\\slash", "é/ü", "x" * 2000, "%00", "%0F%C2%A9", "a\\u0000", "]"]
    with httpx.Client(base_url=replicas.a.url, timeout=30) as a:
        for image_id in odd:
            for method, suffix in (("GET", ""), ("GET", "/image"), ("DELETE", "")):
                reply = a.request(method, f"/v1/gallery/{image_id}{suffix}", headers=KEY)
                assert reply.status_code == 404, (image_id, method, suffix, reply.text)


def test_concurrent_uploads_of_the_same_bytes_to_both_replicas_store_one_copy(
    replicas: Replicas,
) -> None:
    """Milvus has no unique keys: the image folder's lock is what makes 'new bytes?' and 'add'
    one step across replicas, so racing uploads of one image leave one row, not two."""
    shared = [701, 702, 703]

    def send(n: int) -> tuple[int, dict[str, str]]:
        replica = replicas.a if n % 2 else replicas.b
        with httpx.Client(base_url=replica.url, timeout=60) as http:
            reply, sent = upload(http, [*shared, 800 + n], camera_id="race")
            return reply.status_code, sent

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(send, range(8)))
    assert all(code == 201 for code, _ in outcomes), outcomes
    with direct(replicas.store) as gallery:
        rows = [item for item in gallery.items() if item.camera_id == "race"]
    by_sha = Counter(item.sha256 for item in rows)
    assert len(rows) == 3 + 8 and set(by_sha.values()) == {1}, by_sha
    files = stored_files(replicas.image_dir)
    assert all(item.sha256 in files for item in rows)


def test_racing_uploads_of_one_image_id_give_one_201_and_409s(replicas: Replicas) -> None:
    """Different bytes under one chosen id, on both replicas at once: one upload wins (201)
    and the store holds its bytes; every other is told 409, none is silently overwritten."""

    def send(n: int) -> tuple[int, str]:
        replica = replicas.a if n % 2 else replicas.b
        with httpx.Client(base_url=replica.url, timeout=60) as http:
            reply, sent = upload(http, [900 + n], image_id="contested-1")
            [(_, sha)] = sent.items()
            return reply.status_code, sha

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(send, range(8)))
    winners = [sha for code, sha in outcomes if code == 201]
    assert len(winners) == 1 and sorted(code for code, _ in outcomes)[1:] == [409] * 7, outcomes
    with direct(replicas.store) as gallery:
        item = gallery.get("contested-1")
    assert item is not None and item.sha256 == winners[0]
