"""POST /v1/footage and GET /v1/footage/{job} in-process: a recording becomes searchable
tracks; a hostile file is answered 4xx and changes nothing."""

from __future__ import annotations

import io
import json
import time
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from footage.job import MANIFEST
from footage.spans import track_person_id
from footage.stream_session import read_stream_tracks
from index.cli import main as index_main
from service.app import create_app
from support.rtsp_camera import RtspCamera
from support.synthetic_footage import read_truth, track_owner
from tests.service.support import KEY, count, wait_ready

START = "2024-05-01T08:00:00Z"


@pytest.fixture(scope="module")
def client(make_settings) -> TestClient:
    settings = make_settings(
        footage_sample_fps=8.0, footage_max_bytes=2 * 1024 * 1024, retention_days=365 * 50
    )
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        yield c


def post(client: TestClient, data: bytes, name: str = "rec.mp4", **fields: str):
    form = {"camera_id": "lobby-1", "start": START} | fields
    files = {"file": (name, data, "video/mp4")}
    return client.post("/v1/footage", files=files, data=form, headers=KEY)


def finished(client: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/v1/footage/{job_id}").json()
        if state["status"] in ("done", "failed"):
            return state
        time.sleep(0.2)
    raise AssertionError(f"footage job {job_id} still {state['status']} after {timeout}s")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def incoming(client: TestClient) -> list[Path]:
    folder = client.app.state.settings.images_path / "footage" / "incoming"
    return sorted(folder.glob("*")) if folder.is_dir() else []


def test_a_recording_becomes_searchable_tracks(client: TestClient, tiny_footage: Path) -> None:
    before = count(client)
    reply = post(client, (tiny_footage / "video.mp4").read_bytes())
    assert reply.status_code == 202, reply.text
    assert reply.json()["status"] in ("queued", "running")
    state = finished(client, reply.json()["job_id"])
    assert state["status"] == "done", state["error"]
    assert len(state["tracks"]) == 2 and state["added"] == sum(t["crops"] for t in state["tracks"])
    assert count(client) == before + state["added"]
    assert incoming(client) == []  # the recording itself is not kept

    tracks = {t["person_id"]: t for t in state["tracks"]}
    body = {"query": "a person walking", "top_k": 100, "unique_persons": True}
    results = client.post("/v1/search", json=body).json()["results"]
    found = [r for r in results if r["person_id"] in tracks]
    assert len(found) == 2  # one hit per track
    for hit in found:
        track = tracks[hit["person_id"]]
        assert hit["camera_id"] == "lobby-1"
        assert hit["track_start"] == track["first_seen"] and hit["track_end"] == track["last_seen"]
        first, seen, last = (when(hit[k]) for k in ("track_start", "captured_at", "track_end"))
        assert first <= seen <= last
    assert all(r["track_start"] is None for r in results if r["person_id"] not in tracks)

    again = finished(
        client, post(client, (tiny_footage / "video.mp4").read_bytes()).json()["job_id"]
    )
    assert again["status"] == "done" and again["added"] == 0
    assert again["already_present"] == state["added"] and count(client) == before + state["added"]

    audit = client.get("/v1/audit", params={"limit": 1000}, headers=KEY).json()["entries"]
    actions = [e["action"] for e in audit]
    assert "footage_upload" in actions and "footage_status" in actions


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("not-a-video", 415),
        ("truncated", 415),  # without its index the file is no video at all
        ("no-frames", 415),
        ("truncated-faststart", 422),
        ("huge-frames", 413),
        ("too-many-bytes", 413),  # over footage_max_bytes
    ],
)
def test_a_hostile_recording_is_refused_and_changes_nothing(
    client: TestClient, hostile_footage: dict[str, Path], name: str, code: int
) -> None:
    before = count(client)
    data = hostile_footage[name].read_bytes() if name in hostile_footage else b"\0" * 3 * 2**20
    reply = post(client, data)
    assert reply.status_code == code, reply.text
    assert "detail" in reply.json()
    assert count(client) == before and incoming(client) == []


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"camera_id": "bad camera!"}, "camera_id"),
        ({"start": "yesterday"}, "yesterday"),
        ({"other": "x"}, "unknown form field"),
        ({"start": "1971-01-01T00:00:00Z"}, "retention"),
    ],
)
def test_bad_fields_are_422(client: TestClient, fields: dict, says: str) -> None:
    reply = post(client, b"unused", **fields)
    assert reply.status_code == 422 and says in reply.json()["detail"]


def test_an_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/v1/footage/0123456789abcdef").status_code == 404


def test_each_person_s_description_finds_their_own_track(
    make_settings, cast_footage: Path, cast_bundle: Path, tmp_path: Path
) -> None:
    """A recording sent to the service, then searched by each person's words: the first
    result is that person's track. The bundle was trained on these three people
    (support/builders.py make_cast_bundle), so what is judged is the pipeline."""
    settings = make_settings(
        bundle=cast_bundle,
        index_dir=tmp_path / "index",
        create_store=True,
        footage_sample_fps=8.0,
        retention_days=365 * 50,
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        state = finished(
            client, post(client, (cast_footage / "video.mp4").read_bytes()).json()["job_id"]
        )
        assert state["status"] == "done", state["error"]
        recording = state["tracks"][0]["person_id"].split(":")[2]
        crops = settings.images_path / "footage" / "crops" / recording / MANIFEST
        truth = read_truth(cast_footage / "gt" / "gt.txt")
        owner = {
            track_person_id("lobby-1", recording, t["track"]): track_owner(truth, t["crops"])
            for t in json.loads(crops.read_text())["tracks"]
        }
        assert set(owner.values()) == {1, 2, 3}

        captions = json.loads((cast_footage / "people.json").read_text())
        for person, texts in captions.items():
            for text in texts:
                body = {"query": text, "top_k": 10, "unique_persons": True}
                first = client.post("/v1/search", json=body).json()["results"][0]
                assert owner[first["person_id"]] == int(person), (text, first)
                assert first["camera_id"] == "lobby-1" and first["track_start"] is not None


def test_a_camera_followed_beside_the_service_is_searched_by_it(
    make_settings, cast_footage: Path, cast_bundle: Path, tmp_path: Path
) -> None:
    """How a deployment watches a camera: ``python -m index footage rtsp://...`` adds tracks to
    the store the service serves, which picks up each new generation by itself."""
    settings = make_settings(
        bundle=cast_bundle, index_dir=tmp_path / "index", create_store=True, index_refresh_s=0.2
    )
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        out = io.StringIO()
        with (
            RtspCamera(cast_footage / "video.mp4") as camera,
            redirect_stdout(out),
            redirect_stderr(io.StringIO()),
        ):
            code = index_main(
                [
                    *("-q", "footage", "--bundle", str(cast_bundle)),
                    *("--out", str(settings.index_dir), "--crops", str(tmp_path / "crops")),
                    *("--camera", "lobby-1", "--sample-fps", "8", "--reconnect-tries", "0"),
                    camera.url,
                ]
            )
        assert code == 0
        report = json.loads(out.getvalue())["stream"]
        deadline = time.monotonic() + 30
        while count(client) < report["added"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count(client) == report["added"] > 0

        truth = read_truth(cast_footage / "gt" / "gt.txt")
        owner = {
            t["person_id"]: track_owner(truth, t["crops"])
            for t in read_stream_tracks(tmp_path / "crops" / report["session"])
        }
        captions = json.loads((cast_footage / "people.json").read_text())
        for person, texts in captions.items():
            for text in texts:
                body = {"query": text, "top_k": 10, "unique_persons": True}
                first = client.post("/v1/search", json=body).json()["results"][0]
                assert owner[first["person_id"]] == int(person), (text, first)
        image = client.get(f"/v1/gallery/{first['image_id']}/image")
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
