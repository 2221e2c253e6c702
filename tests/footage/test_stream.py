"""``python -m index footage`` following a live RTSP stream from a camera on 127.0.0.1
(support/rtsp_camera.py): tracks are added as people leave, a camera that reboots is followed
again, SIGTERM ends the session with its open tracks added, and a wrong URL is one line."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from footage.errors import FootageError
from footage.stream_session import STREAM_MANIFEST, read_stream_tracks
from index.cli import main
from index.errors import StoreUnavailableError
from index.metadata_fields import iso_seconds
from index.stores import open_store
from support.rtsp_camera import RtspCamera
from support.synthetic_footage import read_truth, track_owner

REPO = Path(__file__).resolve().parents[2]


def _with_password(url: str) -> str:
    return url.replace("rtsp://", "rtsp://admin:hunter2@")


def _follow(store: Path, bundle: Path, url: str, *extra: str) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            [
                *("footage", "--bundle", str(bundle), "--out", str(store)),
                *("--camera", "lobby-1", "--sample-fps", "8", *extra, url),
            ]
        )
    return code, (json.loads(out.getvalue()) if code == 0 else None), err.getvalue()


def _owners(store: Path, report: dict, truth: dict) -> dict[str, int | None]:
    tracks = read_stream_tracks(Path(f"{store}.crops") / report["session"])
    return {t["person_id"]: track_owner(truth, t["crops"]) for t in tracks}


def test_a_camera_stream_becomes_tracks_of_its_people(
    cast_footage: Path, cast_bundle: Path, tmp_path: Path
) -> None:
    store = tmp_path / "gallery"
    before = time.time()
    with RtspCamera(cast_footage / "video.mp4") as camera:
        url = _with_password(camera.url)
        code, result, err = _follow(store, cast_bundle, url, "--reconnect-tries", "0")
    after = time.time()
    assert code == 0, err
    report = result["stream"]
    assert report["ended"] == "stream ended" and report["connections"] == 1
    assert report["added"] == report["crops"] == result["count"] > 0
    # The camera's password is in no report, log or file.
    manifest = (Path(f"{store}.crops") / report["session"] / STREAM_MANIFEST).read_text()
    assert all("hunter2" not in text for text in (json.dumps(result), err, manifest))
    assert report["stream"] == _with_password(camera.url).replace("hunter2", "***")

    # The stream's frames are the recording's, in order, so its truth judges the tracks.
    owner = _owners(store, report, read_truth(cast_footage / "gt" / "gt.txt"))
    assert set(owner.values()) == {1, 2, 3}
    with open_store(store) as gallery:
        items = list(gallery.items())
    for item in items:
        assert before <= item.captured_at <= after and item.camera_id == "lobby-1"


def test_a_camera_that_reboots_is_followed_again(
    cast_footage: Path, cast_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "gallery"
    # The first connection breaks off after 16 of 40 frames; the second plays them all, and
    # then the camera is off: one try to reach it again, and the session ends.
    with RtspCamera(cast_footage / "video.mp4", plays=2, drop_after=16, speed=2.0) as camera:
        code, result, err = _follow(store, cast_bundle, camera.url, "--reconnect-tries", "1")
    assert code == 0, err
    report = result["stream"]
    assert report["connections"] == 2 and report["ended"] == "stream ended"
    assert "opening it again in 1 s (try 1 of 1)" in caplog.text
    # Tracks of both connections: the people in view when it broke off were added then.
    starts = sorted(t["first"] for t in report["tracks"])
    assert starts[-1] - starts[0] > 2.0
    assert len(report["tracks"]) >= 4


class RefusingStore:
    """A real FAISS store that refuses its first ``outage`` writes as a Milvus store does while
    its server restarts (StoreUnavailableError): fault injection, the store itself is real."""

    def __init__(self, store, outage: int) -> None:
        self._store, self.outage, self.refused = store, outage, 0

    def add(self, vectors, items):
        if self.refused < self.outage:
            self.refused += 1
            raise StoreUnavailableError("the store's server is restarting", retry_after_s=0.2)
        return self._store.add(vectors, items)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def test_tracks_wait_while_the_store_is_unavailable_and_are_added_after(
    cast_footage: Path, cast_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bundle.encoders import Bundle
    from footage.stream import StreamJob, follow_stream
    from index.stores import create_store

    bundle = Bundle(cast_bundle, device="cpu")
    with create_store(tmp_path / "g1", bundle.fingerprint, bundle.dim, use_gpu="never") as faiss:
        store = RefusingStore(faiss, outage=3)
        with RtspCamera(cast_footage / "video.mp4", speed=2.0) as camera:
            job = StreamJob(camera.url, "lobby-1", reconnect_tries=0)
            report = follow_stream(lambda: store, bundle, job, tmp_path / "crops", progress=False)
        assert store.refused == 3 and "track(s) wait to be added" in caplog.text
        assert report.added == report.crops == faiss.count() > 0
    tracks = read_stream_tracks(tmp_path / "crops" / report.session)
    assert [t["track"] for t in tracks] == list(range(1, len(report.tracks) + 1))
    assert all(t["added"] for t in tracks)

    # A store that never comes back: the command fails, saying where the tracks wait.
    with create_store(tmp_path / "g2", bundle.fingerprint, bundle.dim, use_gpu="never") as faiss:
        never = RefusingStore(faiss, outage=10**6)
        with RtspCamera(cast_footage / "video.mp4", speed=2.0) as camera:
            job = StreamJob(camera.url, "lobby-1", duration=2.0)
            with pytest.raises(FootageError, match="could not be added: the store is still"):
                follow_stream(lambda: never, bundle, job, tmp_path / "crops", progress=False)
        assert faiss.count() == 0
    waiting = [
        read_stream_tracks(d) for d in (tmp_path / "crops").iterdir() if d.name != report.session
    ]
    assert waiting[0] and not any(t["added"] for t in waiting[0])


def test_sigterm_ends_the_session_and_adds_the_open_tracks(
    cast_footage: Path, cast_bundle: Path, tmp_path: Path
) -> None:
    store = tmp_path / "gallery"
    with RtspCamera(cast_footage / "video.mp4") as camera:
        command = [
            *(sys.executable, "-m", "index", "-q", "footage", "--bundle", str(cast_bundle)),
            *("--out", str(store), "--camera", "lobby-1", "--sample-fps", "8", camera.url),
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            # Once a first track was added, the command is well inside its loop, and the
            # three people who walk through the whole recording are in view.
            manifests = Path(f"{store}.crops")
            deadline = time.monotonic() + 60
            while not list(manifests.glob(f"*/{STREAM_MANIFEST}")):
                assert time.monotonic() < deadline and process.poll() is None, "no track added"
                time.sleep(0.05)
            at_signal = len(read_stream_tracks(next(manifests.glob("*"))))
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=60)
        finally:
            process.kill()
    assert process.returncode == 0, err
    report = json.loads(out)["stream"]
    assert report["ended"] == "stopped" and report["sampled_frames"] < 40
    # The tracks open at the signal were added before it ended.
    assert len(report["tracks"]) > at_signal
    assert report["added"] == report["crops"] == json.loads(out)["count"]
    last = max(t["last"] for t in report["tracks"])
    assert last >= iso_seconds("2026-01-01T00:00:00Z")  # timed by the clock


def test_a_stream_that_ends_before_its_first_frame_is_one_error_line(
    cast_footage: Path, random_bundle: Path, tmp_path: Path
) -> None:
    with RtspCamera(cast_footage / "video.mp4", drop_after=0) as camera:
        code, _, err = _follow(tmp_path / "gallery", random_bundle, camera.url)
    assert code == 2 and err.strip().endswith("the stream ended before its first frame")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "gallery").exists()


def test_the_url_may_come_from_the_environment(
    cast_footage: Path, random_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RtspCamera(cast_footage / "video.mp4") as camera:
        monkeypatch.setenv("CAMERA_URL", _with_password(camera.url))
        code, result, err = _follow(
            tmp_path / "gallery", random_bundle, "env:CAMERA_URL", "--duration", "1"
        )
    assert code == 0, err
    assert result["stream"]["stream"] == _with_password(camera.url).replace("hunter2", "***")
    assert result["stream"]["ended"] == "duration"
    monkeypatch.delenv("CAMERA_URL")
    code, _, err = _follow(tmp_path / "gallery", random_bundle, "env:CAMERA_URL")
    assert code == 2 and "env:CAMERA_URL: the environment variable CAMERA_URL is not set" in err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ((), "cannot be opened"),
        (("--start", "2024-05-01T08:00:00Z"), "--start is for recordings"),
        (("--duration", "0"), "--duration must be above 0"),
        (("--reconnect-tries", "-1"), "--reconnect-tries must be 0 or more"),
    ],
)
def test_a_wrong_stream_command_is_one_line_and_creates_nothing(
    random_bundle: Path, tmp_path: Path, extra: tuple[str, ...], says: str
) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"rtsp://admin:hunter2@127.0.0.1:{probe.getsockname()[1]}/lobby"
    store = tmp_path / "gallery"
    code, _, err = _follow(store, random_bundle, url, *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], err
    assert "hunter2" not in err and not store.exists()


def test_a_mistyped_scheme_is_one_line_without_the_password(
    random_bundle: Path, tmp_path: Path
) -> None:
    code, _, err = _follow(tmp_path / "gallery", random_bundle, "rstp://admin:hunter2@cam/s1")
    assert code == 2 and "not a stream this command reads" in err and "hunter2" not in err
