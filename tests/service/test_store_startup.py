"""Which store the service opens, and when it refuses to start: TPS_STORE forms, creating an
empty store on request, and a store of another model. The Milvus path runs on a milvus-lite
file (the same store class and client as a Milvus server)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service.support import KEY, count, jpeg, wait_ready


def failure(app) -> str:
    fatal: list[str] = []
    app.state.loader.on_fatal = fatal.append
    with TestClient(app) as c, pytest.raises(AssertionError):
        wait_ready(c, timeout=120)
    assert fatal
    return fatal[0]


def test_a_missing_milvus_lite_store_is_refused_unless_created(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    lite = tmp_path / "gallery.db"
    settings = make_settings(index_dir=None, store=str(lite))
    assert "cannot open the gallery store (TPS_STORE=" in failure(create_app(settings))

    settings = make_settings(index_dir=None, store=str(lite), create_store=True)
    with TestClient(create_app(settings)) as c:
        wait_ready(c, timeout=120)
        info = c.get("/v1/info").json()
        assert info["index"]["store"] == "milvus" and count(c) == 0
        reply = c.post(
            "/v1/gallery",
            files={"files": ("a.jpg", jpeg((5, 6, 7)))},
            data={"camera_id": "dock-4", "captured_at": "2024-05-01T12:00:00Z", "tags": "x"},
            headers=KEY,
        )
        assert reply.status_code == 201, reply.text
        [added] = reply.json()["added"]
        assert settings.images_path == tmp_path / "gallery-images"
        assert (settings.images_path / added["sha256"][:2]).is_dir()
        found = c.post(
            "/v1/search", json={"query": "a person", "filters": {"camera_ids": ["dock-4"]}}
        ).json()["results"]
        assert [(r["image_id"], r["captured_at"]) for r in found] == [
            (added["image_id"], "2024-05-01T12:00:00Z")
        ]
        none = c.post("/v1/search", json={"query": "a person", "filters": {"tags": ["y"]}})
        assert none.json()["results"] == []

    # Opened again (no creating this time), the upload is still there.
    with TestClient(create_app(make_settings(index_dir=None, store=str(lite)))) as c:
        wait_ready(c, timeout=120)
        assert c.get(f"/v1/gallery/{added['image_id']}").json()["tags"] == ["x"]


def test_a_milvus_store_of_another_model_is_refused(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from index.stores import create_store

    lite = tmp_path / "other.db"
    create_store(str(lite), "f" * 64, 128).close()
    message = failure(create_app(make_settings(index_dir=None, store=str(lite))))
    assert "not built by the model" in message and "Rebuild the index" in message


def test_an_empty_folder_store_can_be_created(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = tmp_path / "new-index"
    with TestClient(create_app(make_settings(index_dir=folder, create_store=True))) as c:
        wait_ready(c)
        assert count(c) == 0 and c.get("/v1/info").json()["index"]["kind"] == "flat"
    assert (folder / "manifest.sqlite").is_file()
