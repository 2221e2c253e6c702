"""Uploads and deletes in-process: all or nothing, durable, searchable, cleaned up."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.support import KEY, count, jpeg, png_header_only, wait_ready


def stored_files(client: TestClient) -> set[Path]:
    root = client.app.state.settings.images_path
    return {p for p in root.rglob("*") if p.is_file()}


def upload(client: TestClient, *files: tuple[str, bytes], **fields: str):
    parts = [("files", (name, data, "application/octet-stream")) for name, data in files]
    return client.post("/v1/gallery", files=parts, data=fields, headers=KEY)


def test_upload_search_delete(client: TestClient) -> None:
    reply = upload(client, ("walker.jpg", jpeg()), person_id="cam7-42")
    assert reply.status_code == 201, reply.text
    [added] = reply.json()["added"]
    assert added["person_id"] == "cam7-42" and reply.json()["duplicates"] == []
    image_id = added["image_id"]
    assert image_id == added["sha256"][:24]
    assert count(client) == 16
    [path] = stored_files(client)
    assert path.name == f"{added['sha256']}.jpg"  # named by content, not by the client

    everything = client.post("/v1/search", json={"query": "a person", "top_k": 100}).json()
    assert image_id in {r["image_id"] for r in everything["results"]}
    assert client.get(f"/v1/gallery/{image_id}/image").content == jpeg()

    assert client.delete(f"/v1/gallery/{image_id}", headers=KEY).status_code == 204
    assert client.get(f"/v1/gallery/{image_id}").status_code == 404
    assert client.delete(f"/v1/gallery/{image_id}", headers=KEY).status_code == 404
    assert count(client) == 15 and stored_files(client) == set()


def test_several_files_with_chosen_ids(client: TestClient) -> None:
    reply = upload(client, ("a.jpg", jpeg((1, 2, 3))), ("b.png", jpeg((3, 2, 1))))
    assert reply.status_code == 201 and len(reply.json()["added"]) == 2
    assert count(client) == 17
    named = upload(client, ("c.jpg", jpeg((9, 9, 9))), image_id="front-door_0001")
    assert named.json()["added"][0]["image_id"] == "front-door_0001"
    for item in [*reply.json()["added"], *named.json()["added"]]:
        client.delete(f"/v1/gallery/{item['image_id']}", headers=KEY)
    assert count(client) == 15 and stored_files(client) == set()


def test_duplicates_are_reported_not_added(client: TestClient) -> None:
    first = upload(client, ("a.jpg", jpeg((50, 60, 70))))
    image_id = first.json()["added"][0]["image_id"]
    again = upload(client, ("copy.jpg", jpeg((50, 60, 70))), ("copy2.jpg", jpeg((50, 60, 70))))
    assert again.status_code == 200
    assert again.json()["added"] == []
    assert {d["existing_image_id"] for d in again.json()["duplicates"]} == {image_id}
    # The data set's own images dedupe too: the bytes of a gallery image are not stored twice.
    original = client.get("/v1/gallery/p0020/p0020_01.jpg/image").content
    same = upload(client, ("again.jpg", original))
    assert same.json()["duplicates"][0]["existing_image_id"] == "p0020/p0020_01.jpg"
    assert count(client) == 16 and len(stored_files(client)) == 1
    client.delete(f"/v1/gallery/{image_id}", headers=KEY)


@pytest.fixture
def encoded(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Images per call of the runtime's image encoder, from the start of the test on."""
    bundle = client.app.state.runtime.bundle
    real = bundle.encode_images
    calls: list[int] = []

    def counting(batch):
        calls.append(len(batch))
        return real(batch)

    monkeypatch.setattr(bundle, "encode_images", counting)
    return calls


def test_duplicates_are_settled_before_the_encoder(client: TestClient, encoded: list[int]) -> None:
    red = jpeg((90, 10, 10))
    first = upload(client, ("a.jpg", red), ("same.jpg", red))
    assert first.status_code == 201 and encoded == [1]  # a repeat in one request: encoded once
    [added] = first.json()["added"]
    image_id, sha = added["image_id"], added["sha256"]
    assert first.json()["duplicates"] == [
        {"image_id": image_id, "existing_image_id": image_id, "sha256": sha}
    ]

    again = upload(client, ("copy.jpg", red))
    assert again.status_code == 200 and encoded == [1]
    assert again.json() == {
        "added": [],
        "duplicates": [{"image_id": image_id, "existing_image_id": image_id, "sha256": sha}],
    }
    named = upload(client, ("copy.jpg", red), image_id="red-again")  # same bytes, another id
    assert named.json()["duplicates"][0]["existing_image_id"] == image_id and encoded == [1]
    original = client.get("/v1/gallery/p0021/p0021_02.jpg/image").content
    dataset = upload(client, ("d.jpg", original))
    assert dataset.json()["duplicates"][0]["existing_image_id"] == "p0021/p0021_02.jpg"
    clash = upload(client, ("other.jpg", jpeg((1, 90, 1))), image_id=image_id)
    assert clash.status_code == 409 and "different content" in clash.json()["detail"]
    assert encoded == [1]

    mixed = upload(client, ("copy.jpg", red), ("new.jpg", jpeg((10, 10, 90))))
    assert mixed.status_code == 201 and encoded == [1, 1]  # only the new file
    assert [d["existing_image_id"] for d in mixed.json()["duplicates"]] == [image_id]
    assert count(client) == 17 and len(stored_files(client)) == 2
    for item in [added, *mixed.json()["added"]]:
        client.delete(f"/v1/gallery/{item['image_id']}", headers=KEY)
    assert count(client) == 15 and stored_files(client) == set()


def test_stored_files_get_the_mode_of_the_index_files(client: TestClient) -> None:
    reply = upload(client, ("walker.jpg", jpeg((4, 5, 6))))
    assert reply.status_code == 201
    [path] = stored_files(client)
    index_dir = client.app.state.settings.index_dir
    # index.json is rewritten by every commit, by bundle/fsio.py: the rule the index's files get.
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(
        (index_dir / "index.json").stat().st_mode
    )
    client.delete(f"/v1/gallery/{reply.json()['added'][0]['image_id']}", headers=KEY)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("file_mode", "files", "folders"), [("owner", 0o600, 0o700), ("group", 0o640, 0o750)]
)
def test_footage_and_the_index_are_private_on_disk(
    make_settings, file_mode: str, files: int, folders: int
) -> None:
    """Whatever the umask the server was started with: no other local user reads the images,
    the vectors or the manifest's persons, cameras and times."""
    old = os.umask(0o022)
    try:
        settings = make_settings(file_mode=file_mode)
        with TestClient(create_app(settings)) as client:
            wait_ready(client)
            assert upload(client, ("walker.jpg", jpeg((7, 8, 9)))).status_code == 201
            [path] = stored_files(client)
            index_dir = settings.index_dir
            vectors = max(index_dir.glob("vectors.*"), key=lambda p: p.stat().st_mtime)
            assert [mode(p) for p in (path, vectors, index_dir / "index.json")] == [files] * 3
            assert mode(path.parent) == mode(settings.images_path) == folders
            assert mode(settings.audit_path) == 0o600  # always the owner's alone
        assert os.umask(0o022) == 0o022  # the process's own umask is back once it stops
    finally:
        os.umask(old)


def test_one_bad_file_rejects_the_whole_request(client: TestClient) -> None:
    before_files = stored_files(client)
    cases = [
        ((("ok.jpg", jpeg()), ("bad.jpg", b"not an image")), 415),
        ((("ok.jpg", jpeg()), ("cut.jpg", jpeg(size=(300, 300))[:400])), 422),
        ((("ok.jpg", jpeg()), ("huge.png", png_header_only(8000, 8000))), 413),
        ((("ok.jpg", jpeg()), ("empty.jpg", b"")), 422),
    ]
    for files, status in cases:
        reply = upload(client, *files)
        assert reply.status_code == status, (files[1][0], reply.text)
        assert files[1][0] in reply.json()["detail"]
        assert count(client) == 15 and stored_files(client) == before_files


def test_bad_form_fields(client: TestClient) -> None:
    two = upload(client, ("a.jpg", jpeg()), ("b.jpg", jpeg((0, 0, 0))), image_id="x")
    assert two.status_code == 422 and "single file" in two.json()["detail"]
    bad_id = upload(client, ("a.jpg", jpeg()), image_id="../../etc/passwd")
    assert bad_id.status_code == 422 and "image_id must be" in bad_id.json()["detail"]
    none = client.post("/v1/gallery", files={"person_id": (None, "x")}, headers=KEY)
    assert none.status_code == 422 and "no files" in none.json()["detail"]
    unknown = upload(client, ("a.jpg", jpeg()), colour="red")
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]
    as_json = client.post("/v1/gallery", json={"files": []}, headers=KEY)
    assert as_json.status_code == 415
    assert count(client) == 15 and stored_files(client) == set()


def test_taken_image_id_is_409(client: TestClient) -> None:
    reply = upload(client, ("a.jpg", jpeg((7, 7, 7))), image_id="p0020/p0020_01.jpg")
    assert reply.status_code == 422  # '/' is not allowed in uploaded ids
    first = upload(client, ("a.jpg", jpeg((7, 7, 7))), image_id="gate-1")
    assert first.status_code == 201
    clash = upload(client, ("b.jpg", jpeg((8, 8, 8))), image_id="gate-1")
    assert clash.status_code == 409 and "different content" in clash.json()["detail"]
    assert count(client) == 16 and len(stored_files(client)) == 1
    client.delete("/v1/gallery/gate-1", headers=KEY)


def test_too_many_files_and_too_many_bytes(client: TestClient) -> None:
    limit = client.app.state.settings.max_files
    files = [(f"{i}.jpg", jpeg((i, i, i))) for i in range(limit + 1)]
    too_many = upload(client, *files)
    assert too_many.status_code == 413 and f"at most {limit} files" in too_many.json()["detail"]
    big = b"\xff" * (client.app.state.settings.max_upload_bytes + 1)
    reply = upload(client, ("big.jpg", big))
    assert reply.status_code == 413 and "over the limit" in reply.json()["detail"]
    assert count(client) == 15 and stored_files(client) == set()


def test_deleting_a_data_set_image_keeps_its_file(client: TestClient) -> None:
    meta = client.get("/v1/gallery/p0024/p0024_03.jpg")
    source = Path(client.app.state.runtime.store.get("p0024/p0024_03.jpg").source_path)
    assert meta.status_code == 200 and source.is_file()
    assert client.delete("/v1/gallery/p0024/p0024_03.jpg", headers=KEY).status_code == 204
    assert source.is_file()  # outside the image folder: never deleted by the service
    assert count(client) == 14


def test_uploads_are_served_from_wherever_the_image_folder_is_mounted(make_settings) -> None:
    """An upload stores its path relative to the image folder: another host (or this one after
    a move) that mounts the folder elsewhere serves it from its own TPS_IMAGE_DIR."""
    settings = make_settings()
    with TestClient(create_app(settings)) as first:
        wait_ready(first)
        reply = upload(first, ("walker.jpg", jpeg((40, 90, 200))), person_id="moved")
        assert reply.status_code == 201, reply.text
        image_id = reply.json()["added"][0]["image_id"]
        stored = first.app.state.runtime.store.get(image_id).source_path
        root = first.app.state.settings.images_path
    assert not Path(stored).is_absolute() and (root / stored).is_file()
    moved = root.parent / "mounted-elsewhere"
    root.rename(moved)
    with TestClient(create_app(make_settings(index_dir=settings.index_dir, image_dir=moved))) as c:
        wait_ready(c)
        assert c.get(f"/v1/gallery/{image_id}/image").content == jpeg((40, 90, 200))
        assert c.delete(f"/v1/gallery/{image_id}", headers=KEY).status_code == 204
    assert not (moved / stored).exists()  # the delete found the file in the new place
