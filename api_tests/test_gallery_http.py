"""Gallery writes over HTTP: upload → searchable → delete → gone, durability across a restart,
and every bad upload refused with its 4xx and no trace in the index or on disk."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from support.server import UPLOAD_LIMIT, ServiceProcess, index_count
from tests.service.support import png_header_only


@pytest.fixture(scope="module")
def served_ids(quality_root: Path) -> list[str]:
    """Image ids of the indexed test split, as the index build names them."""
    entries = json.loads((quality_root / "reid_raw.json").read_text())
    return [e["file_path"] for e in entries if e["split"] == "test"]


def image_bytes(colour: tuple[int, int, int], fmt: str = "JPEG", size=(64, 160)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def upload(http: httpx.Client, key: dict, *files: tuple[str, bytes], **fields: str):
    parts = [("files", (name, data, "image/jpeg")) for name, data in files]
    return http.post("/v1/gallery", files=parts, data=fields, headers=key)


def uploaded_files(server: ServiceProcess) -> set[Path]:
    root = Path(server.env["TPS_INDEX_DIR"]) / "images"
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_upload_is_searchable_then_deleted(http: httpx.Client, key: dict) -> None:
    before = index_count(http)
    reply = upload(http, key, ("walker.jpg", image_bytes((200, 20, 20))), person_id="visitor-1")
    assert reply.status_code == 201, reply.text
    [item] = reply.json()["added"]
    image_id = item["image_id"]
    assert index_count(http) == before + 1

    found = http.post("/v1/search", json={"query": "a person in red", "top_k": 100}).json()
    assert image_id in [r["image_id"] for r in found["results"]]
    meta = http.get(f"/v1/gallery/{image_id}").json()
    assert meta["person_id"] == "visitor-1" and meta["sha256"] == item["sha256"]
    picture = http.get(meta["image_url"])
    assert picture.status_code == 200 and picture.content == image_bytes((200, 20, 20))
    assert http.get(meta["thumbnail_url"]).headers["content-type"] == "image/jpeg"

    assert http.delete(f"/v1/gallery/{image_id}", headers=key).status_code == 204
    assert http.get(f"/v1/gallery/{image_id}").status_code == 404
    assert http.get(f"/v1/gallery/{image_id}/image").status_code == 404
    found = http.post("/v1/search", json={"query": "a person in red", "top_k": 100}).json()
    assert image_id not in [r["image_id"] for r in found["results"]]
    assert index_count(http) == before
    assert http.delete(f"/v1/gallery/{image_id}", headers=key).status_code == 404


def test_uploads_survive_a_restart(server: ServiceProcess, http: httpx.Client, key: dict) -> None:
    reply = upload(http, key, ("a.png", image_bytes((5, 90, 5), "PNG")), image_id="kept-1")
    assert reply.status_code == 201, reply.text
    count = index_count(http)

    server.restart()

    assert index_count(http) == count
    meta = http.get("/v1/gallery/kept-1")
    assert meta.status_code == 200
    assert http.get("/v1/gallery/kept-1/image").content == image_bytes((5, 90, 5), "PNG")
    found = http.post("/v1/search", json={"query": "someone in green", "top_k": 100}).json()
    assert "kept-1" in [r["image_id"] for r in found["results"]]
    assert http.delete("/v1/gallery/kept-1", headers=key).status_code == 204


def test_writes_need_the_right_key(http: httpx.Client, served_ids: list[str]) -> None:
    before = index_count(http)
    files = ("a.jpg", image_bytes((1, 1, 1)))
    assert upload(http, {}, files).status_code == 401
    assert upload(http, {"X-API-Key": "not-the-key"}, files).status_code in (401, 403)
    assert http.delete(f"/v1/gallery/{served_ids[0]}").status_code == 401
    wrong = http.delete(f"/v1/gallery/{served_ids[0]}", headers={"X-API-Key": "nope"})
    assert wrong.status_code in (401, 403)
    assert index_count(http) == before
    assert http.get(f"/v1/gallery/{served_ids[0]}").status_code == 200


BAD_UPLOADS = {
    "not an image": ([("notes.jpg", b"hello, this is text")], {}, 415),
    "unsupported format": ([("a.gif", image_bytes((9, 9, 9), "GIF"))], {}, 415),
    "corrupt jpeg": ([("cut.jpg", image_bytes((3, 4, 5), size=(400, 400))[:300])], {}, 422),
    "empty file": ([("empty.jpg", b"")], {}, 422),
    "pixel bomb": ([("bomb.png", png_header_only(20_000, 20_000))], {}, 413),
    "over pixel limit": ([("big.png", png_header_only(7000, 7000))], {}, 413),
    "one bad among good": (
        [("ok.jpg", image_bytes((1, 200, 1))), ("bad.jpg", b"\xff\xd8garbage")],
        {},
        415,
    ),
    "image_id with several files": (
        [("a.jpg", image_bytes((2, 2, 2))), ("b.jpg", image_bytes((4, 4, 4)))],
        {"image_id": "two"},
        422,
    ),
    "bad image_id": ([("a.jpg", image_bytes((6, 6, 6)))], {"image_id": "../escape"}, 422),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS), ids=list(BAD_UPLOADS))
def test_bad_uploads_are_refused_and_leave_nothing(
    server: ServiceProcess, http: httpx.Client, key: dict, case: str
) -> None:
    files, fields, status = BAD_UPLOADS[case]
    before, files_before = index_count(http), uploaded_files(server)
    reply = upload(http, key, *files, **fields)
    assert reply.status_code == status, reply.text
    assert reply.json()["detail"]
    assert index_count(http) == before
    assert uploaded_files(server) == files_before


def test_body_over_the_limit_by_content_length(
    server: ServiceProcess, http: httpx.Client, key: dict
) -> None:
    before = index_count(http)
    big = image_bytes((1, 2, 3)) + b"\x00" * UPLOAD_LIMIT
    reply = upload(http, key, ("big.jpg", big))
    assert reply.status_code == 413 and "over the limit" in reply.json()["detail"]
    assert index_count(http) == before and uploaded_files(server) == set()


def test_body_over_the_limit_while_streaming(http: httpx.Client, key: dict) -> None:
    """Chunked transfer has no Content-Length: the limit must hold while the body arrives."""
    before = index_count(http)

    def body():
        yield b'--b0undary\r\nContent-Disposition: form-data; name="files"; filename="x.jpg"\r\n'
        yield b"Content-Type: image/jpeg\r\n\r\n"
        for _ in range(UPLOAD_LIMIT // 65536 + 4):
            yield b"\x00" * 65536
        yield b"\r\n--b0undary--\r\n"

    headers = {**key, "content-type": "multipart/form-data; boundary=b0undary"}
    reply = http.post("/v1/gallery", content=body(), headers=headers)
    assert reply.status_code == 413
    assert index_count(http) == before


def test_not_multipart_is_415(http: httpx.Client, key: dict) -> None:
    reply = http.post("/v1/gallery", json={"files": ["x"]}, headers=key)
    assert reply.status_code == 415


def test_duplicate_upload_is_reported(http: httpx.Client, key: dict, served_ids: list[str]) -> None:
    original = http.get(f"/v1/gallery/{served_ids[1]}/image").content
    before = index_count(http)
    reply = upload(http, key, ("copy.jpg", original))
    assert reply.status_code == 200
    assert reply.json()["duplicates"][0]["existing_image_id"] == served_ids[1]
    assert index_count(http) == before
