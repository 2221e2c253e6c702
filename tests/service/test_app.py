"""The app in-process (TestClient): every route, the limits, the keys, startup failures."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.batching import QueueFullError
from service.settings import Settings
from tests.service.support import KEY, count, jpeg, wait_ready

# --- health and description ------------------------------------------------------------------


def test_health_ready_and_info(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    info = client.get("/v1/info").json()
    assert info["index"]["count"] == 15
    assert info["embed_dim"] == 128 and info["writes_enabled"] is True
    assert len(info["model"]) == 64


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_openapi_documents_the_upload(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    upload = spec["paths"]["/v1/gallery"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "All or nothing" in upload["description"]
    assert {"401", "413", "415", "422"} <= set(upload["responses"])
    assert "/v1/search" in spec["paths"] and "/v1/search/batch" in spec["paths"]
    assert "APIKeyHeader" in spec["components"]["securitySchemes"]


# --- search -----------------------------------------------------------------------------------


def test_search_ranks_best_first(client: TestClient) -> None:
    reply = client.post("/v1/search", json={"query": "a man in a black jacket", "top_k": 5})
    assert reply.status_code == 200
    body = reply.json()
    scores = [r["score"] for r in body["results"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    assert body["model"] == client.get("/v1/info").json()["model"]
    assert body["truncated"] is False and body["took_ms"] >= 0


def test_search_matches_the_encoder_and_index_directly(client: TestClient) -> None:
    runtime = client.app.state.runtime
    query = "a woman wearing a red skirt and white shoes"
    vector = runtime.bundle.encode_text([query])
    expected = [h.image_id for h in runtime.store.search(vector, 15)[0]]
    reply = client.post("/v1/search", json={"query": query, "top_k": 15}).json()
    assert [r["image_id"] for r in reply["results"]] == expected


def test_top_k_beyond_the_gallery_returns_everything(client: TestClient) -> None:
    reply = client.post("/v1/search", json={"query": "someone", "top_k": 100}).json()
    assert len(reply["results"]) == 15


def test_unique_persons_keeps_one_image_per_person(client: TestClient) -> None:
    reply = client.post(
        "/v1/search", json={"query": "a person", "top_k": 10, "unique_persons": True}
    ).json()
    persons = [r["person_id"] for r in reply["results"]]
    assert len(persons) == len(set(persons)) == 5  # the test split has 5 persons
    everything = client.post("/v1/search", json={"query": "a person", "top_k": 15}).json()
    best = {}
    for r in everything["results"]:
        best.setdefault(r["person_id"], r["image_id"])
    assert [r["image_id"] for r in reply["results"]] == list(best.values())


def test_long_query_is_truncated_and_says_so(client: TestClient) -> None:
    query = "a tall man with a red backpack and grey trousers " * 12
    body = client.post("/v1/search", json={"query": query}).json()
    assert body["truncated"] is True and len(body["results"]) == 10


def test_batch_search_keeps_request_order(client: TestClient) -> None:
    queries = ["a red coat", "blue jeans and a white shirt", "a child with a yellow bag"]
    body = client.post("/v1/search/batch", json={"queries": queries, "top_k": 3}).json()
    assert len(body["queries"]) == 3
    for query, entry in zip(queries, body["queries"], strict=True):
        single = client.post("/v1/search", json={"query": query, "top_k": 3}).json()
        assert [r["image_id"] for r in entry["results"]] == [
            r["image_id"] for r in single["results"]
        ]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"query": "   "}, "the query is empty"),
        ({"query": "x" * 1001}, "the limit is 1000"),
        ({"query": "a person", "top_k": 101}, "at most 100"),
        ({"query": "a person", "top_k": 0}, "greater than or equal to 1"),
        ({"top_k": 3}, "nothing to search for"),  # neither a query nor an example
        ({"query": 5}, "valid string"),
    ],
)
def test_bad_search_requests_are_422_with_a_message(client: TestClient, body, needle) -> None:
    reply = client.post("/v1/search", json=body)
    assert reply.status_code == 422
    assert needle in str(reply.json()["detail"])


def test_bad_batch_requests(client: TestClient) -> None:
    assert client.post("/v1/search/batch", json={"queries": []}).status_code == 422
    too_many = client.post("/v1/search/batch", json={"queries": ["a"] * 65})
    assert too_many.status_code == 422 and "at most 64" in str(too_many.json())
    long_one = client.post("/v1/search/batch", json={"queries": ["ok", "y" * 1001]})
    assert long_one.status_code == 422 and "queries[1]" in str(long_one.json())


def test_oversized_json_body_is_413(client: TestClient) -> None:
    reply = client.post(
        "/v1/search",
        content=b'{"query": "' + b"a" * (2 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert reply.status_code == 413 and "limit" in reply.json()["detail"]


def test_full_encoder_queue_is_429(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    async def full(texts):
        raise QueueFullError("the query queue is full (256 of 256 waiting); retry shortly")

    monkeypatch.setattr(client.app.state.runtime.searcher.batcher, "submit", full)
    reply = client.post("/v1/search", json={"query": "a person"})
    assert reply.status_code == 429
    assert reply.headers["retry-after"] == "1" and "queue is full" in reply.json()["detail"]


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_are_prometheus_text_per_route(client: TestClient) -> None:
    client.post("/v1/search", json={"query": "a person"})
    client.get("/v1/gallery/p0020/p0020_01.jpg")
    text = client.get("/metrics").text
    assert 'tps_http_request_duration_seconds_count{method="POST",route="/v1/search"}' in text
    assert 'route="/v1/gallery/{image_id:path}"' in text
    assert "p0020_01" not in text  # route templates, never raw paths
    assert "tps_index_images 15" in text
    assert "tps_query_batch_size_count" in text and 'tps_encode_seconds_count{kind="text"}' in text
    assert "tps_search_seconds_count" in text and "tps_query_queue_depth 0" in text


# --- gallery reads ------------------------------------------------------------------------------


def test_gallery_metadata_and_image(client: TestClient) -> None:
    meta = client.get("/v1/gallery/p0020/p0020_01.jpg").json()
    assert meta["person_id"] == "20" and len(meta["sha256"]) == 64
    original = client.get(meta["image_url"])
    assert original.status_code == 200 and original.headers["content-type"] == "image/jpeg"
    thumb = client.get(meta["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256
    sized = client.get(meta["image_url"] + "?size=48")
    assert max(Image.open(io.BytesIO(sized.content)).size) == 48
    again = client.get(
        meta["image_url"] + "?size=48", headers={"If-None-Match": sized.headers["etag"]}
    )
    assert again.status_code == 304


def test_unknown_ids_are_404_and_paths_are_not_files(client: TestClient) -> None:
    assert client.get("/v1/gallery/nope").status_code == 404
    assert client.get("/v1/gallery/nope/image").status_code == 404
    # Ids are looked up in the manifest; a path-like id never reaches the filesystem.
    assert client.get("/v1/gallery/..%2F..%2Fetc%2Fpasswd/image").status_code == 404
    assert client.get("/v1/gallery/p0020/p0020_01.jpg/image?size=5000").status_code == 422


# --- keys ---------------------------------------------------------------------------------------


def test_writes_need_the_key(client: TestClient) -> None:
    files = {"files": ("a.jpg", jpeg(), "image/jpeg")}
    missing = client.post("/v1/gallery", files=files)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    wrong = client.post("/v1/gallery", files=files, headers={"X-API-Key": "wrong"})
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]
    assert client.delete("/v1/gallery/p0020/p0020_01.jpg").status_code == 401
    assert count(client) == 15


def test_no_configured_key_disables_writes(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(api_key=None))) as c:
        wait_ready(c)
        reply = c.post("/v1/gallery", files={"files": ("a.jpg", jpeg())}, headers=KEY)
        assert reply.status_code == 403
        assert "no API key is configured" in reply.json()["detail"]
        assert c.delete("/v1/gallery/p0020/p0020_01.jpg", headers=KEY).status_code == 403
        assert c.get("/v1/info").json()["writes_enabled"] is False


def test_reads_need_a_key_unless_open(make_settings: Callable[..., Settings]) -> None:
    with TestClient(create_app(make_settings(open_reads=False))) as c:
        wait_ready(c)
        assert c.post("/v1/search", json={"query": "a person"}).status_code == 401
        assert c.get("/v1/gallery/p0020/p0020_01.jpg/image").status_code == 401
        assert c.post("/v1/search", json={"query": "a person"}, headers=KEY).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200


def test_cors_is_off_unless_configured(client: TestClient, make_settings) -> None:
    preflight = {
        "Origin": "https://ui.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type",
    }
    assert (
        "access-control-allow-origin" not in client.options("/v1/search", headers=preflight).headers
    )
    with TestClient(create_app(make_settings(cors_origins="https://ui.example"))) as c:
        reply = c.options("/v1/search", headers=preflight)
        assert reply.headers["access-control-allow-origin"] == "https://ui.example"


# --- startup --------------------------------------------------------------------------------------


def test_an_index_from_another_model_fails_startup(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from index.store import GalleryIndex

    other = tmp_path / "other-index"
    GalleryIndex.create(other, "f" * 64, 128, "flat", "never").close()
    app = create_app(make_settings(index_dir=other))
    fatal: list[str] = []
    app.state.loader.on_fatal = fatal.append
    with TestClient(app) as c:
        with pytest.raises(AssertionError, match="not built by the model"):
            wait_ready(c)
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "failed"
        search = c.post("/v1/search", json={"query": "a person"})
        assert search.status_code == 503 and "not ready" in search.json()["detail"]
    assert fatal and "Rebuild the index" in fatal[0]


def test_a_missing_index_fails_startup(make_settings, tmp_path: Path) -> None:
    app = create_app(make_settings(index_dir=tmp_path / "absent"))
    with TestClient(app) as c, pytest.raises(AssertionError, match="python -m index build"):
        wait_ready(c)


def test_concurrent_requests_share_encoder_calls(make_settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    app = create_app(make_settings(batch_max_wait_ms=100))
    with TestClient(app) as c:
        wait_ready(c)
        calls_before = app.state.metrics.value("tps_query_batch_size_count")
        queries = [f"a person with a {colour} bag" for colour in ("red", "blue", "green") * 4]
        with ThreadPoolExecutor(len(queries)) as pool:
            replies = list(pool.map(lambda q: c.post("/v1/search", json={"query": q}), queries))
        assert all(r.status_code == 200 for r in replies)
        calls = app.state.metrics.value("tps_query_batch_size_count") - calls_before
        assert 1 <= calls < len(queries)


def test_changes_from_another_writer_are_picked_up(make_settings) -> None:
    """`python -m index add` on the served index: the service sees it after a refresh."""
    import time

    import numpy as np

    from index.items import ItemMeta
    from index.store import GalleryIndex

    settings = make_settings(index_refresh_s=0.1)
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        other = GalleryIndex.open(settings.index_dir, use_gpu="never")
        vector = np.zeros((1, 128), np.float32)
        vector[0, 0] = 1.0
        other.add(vector, [ItemMeta("from-cli", "cli", "/nonexistent", "c" * 64, time.time())])
        other.close()
        deadline = time.monotonic() + 10
        while count(c) != 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert count(c) == 16
        everything = c.post("/v1/search", json={"query": "a person", "top_k": 100}).json()
        assert "from-cli" in {r["image_id"] for r in everything["results"]}
