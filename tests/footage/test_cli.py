"""``python -m index footage`` end to end on a tiny synthetic recording with a random bundle."""

from __future__ import annotations

import io
import json
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from footage.boxes import iou_matrix
from footage.job import MANIFEST, FootageJob, prepare
from footage.spans import is_track, span_of, track_person_id
from index.cli import main
from index.ingest.add import ingest
from index.metadata_fields import iso_seconds
from index.stores import open_store
from support.synthetic_footage import read_truth, track_owner

START = "2024-05-01T08:00:00Z"


def _run(store: Path, bundle: Path, *videos: Path) -> tuple[int, dict | None, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            [
                *("-q", "footage", "--bundle", str(bundle), "--out", str(store)),
                *("--camera", "lobby-1", "--start", START, "--sample-fps", "8"),
                *map(str, videos),
            ]
        )
    return code, (json.loads(out.getvalue()) if code == 0 else None), err.getvalue()


@pytest.fixture(scope="module")
def ingested(
    tiny_footage: Path, random_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict]:
    """The tiny recording ingested into a new store: (store, the command's report)."""
    store = tmp_path_factory.mktemp("ingested") / "gallery"
    code, result, err = _run(store, random_bundle, tiny_footage / "video.mp4")
    assert code == 0, err
    return store, result


def _copy(ingested: tuple[Path, dict], to: Path) -> Path:
    store = to / "gallery"
    shutil.copytree(ingested[0], store)
    shutil.copytree(f"{ingested[0]}.crops", f"{store}.crops")
    return store


def test_a_recording_becomes_tracks_of_its_people(
    tiny_footage: Path, random_bundle: Path, tmp_path: Path, ingested: tuple[Path, dict]
) -> None:
    store = _copy(ingested, tmp_path)
    result = ingested[1]
    report = result["recordings"][0]
    assert len(report["tracks"]) == 2  # the two people who walk through
    assert report["added"] == report["crops"] == result["count"]

    start = iso_seconds(START)
    truth = read_truth(tiny_footage / "gt" / "gt.txt")
    manifest = json.loads((Path(f"{store}.crops") / report["recording"] / MANIFEST).read_text())
    boxes = {(t["track"], c["frame"]): c["box"] for t in manifest["tracks"] for c in t["crops"]}
    with open_store(store) as gallery:
        items = list(gallery.items())
    people_of_track: dict[str, set[int]] = {}
    for item in items:
        assert is_track(item.person_id) and item.camera_id == "lobby-1"
        first, last = span_of(item.tags)
        assert start <= first <= item.captured_at <= last <= start + 3.0
        track = int(item.person_id.rsplit(":", 1)[1])
        frame = int(item.image_id.rsplit("-f", 1)[1])
        # The crop's box is one true person's box in that frame (frames count from 1 in MOT).
        people = truth[frame + 1]
        overlap = iou_matrix(np.array([boxes[(track, frame)]]), np.stack([b for _, b, _ in people]))
        assert overlap.max() >= 0.5
        people_of_track.setdefault(item.person_id, set()).add(people[int(overlap.argmax())][0])
    # Each track follows one person, and the two tracks follow different people.
    assert all(len(p) == 1 for p in people_of_track.values())
    assert len(set.union(*people_of_track.values())) == 2

    code, again, err = _run(store, random_bundle, tiny_footage / "video.mp4")
    assert code == 0, err
    assert again["recordings"][0]["added"] == 0 and again["count"] == result["count"]


def test_a_killed_run_resumes_without_analysing_again(
    tiny_footage: Path, random_bundle: Path, tmp_path: Path, ingested: tuple[Path, dict]
) -> None:
    store = tmp_path / "gallery"
    crops = Path(f"{store}.crops")
    # The killed run had analysed the recording (the same analysis as the module's).
    shutil.copytree(f"{ingested[0]}.crops", crops)
    job = FootageJob(tiny_footage / "video.mp4", "lobby-1", iso_seconds(START), "hog")
    from footage.analysis import AnalysisOptions

    job = FootageJob(job.video, job.camera, job.start, options=AnalysisOptions(sample_fps=8))
    key, entries, _, _ = prepare(job, crops, progress=False)
    # The run that was killed: its analysis is kept, and its first batch was added.
    from bundle.encoders import Bundle
    from index.stores import create_store

    bundle = Bundle(random_bundle, device="cpu")
    with create_store(store, bundle.fingerprint, bundle.dim, use_gpu="never") as gallery:
        ingest(gallery, bundle, entries[:2], workers=0, progress=False)
    analysed = (crops / key / MANIFEST).stat().st_mtime_ns

    code, result, err = _run(store, random_bundle, job.video)
    assert code == 0, err
    assert result["recordings"][0]["added"] == len(entries) - 2
    assert result["count"] == len(entries)
    assert (crops / key / MANIFEST).stat().st_mtime_ns == analysed


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("truncated", "not a video"),  # without its index the file is no video at all
        ("truncated-faststart", "truncated"),
        ("huge-frames", "exceed the limit"),
        ("no-frames", "no video stream"),
        ("not-a-video", "not a video"),
        ("absent", "no such file"),
    ],
)
def test_a_hostile_recording_is_refused_and_changes_nothing(
    name: str,
    says: str,
    tiny_footage: Path,
    hostile_footage: dict[str, Path],
    random_bundle: Path,
    tmp_path: Path,
    ingested: tuple[Path, dict],
) -> None:
    store = _copy(ingested, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    with open_store(store) as gallery:
        count = gallery.count()

    bad = hostile_footage.get(name, tmp_path / "absent.mp4")
    code, _, err = _run(store, random_bundle, tiny_footage / "video.mp4", bad)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0]
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before
    with open_store(store) as gallery:
        assert gallery.count() == count


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--duration", "60"), "--duration is for a live stream"),
        (("--reconnect-tries", "3"), "--reconnect-tries is for a live stream"),
        ((), "--start is required for recordings"),
    ],
)
def test_stream_flags_on_a_recording_and_no_start_are_one_error_line(
    tiny_footage: Path,
    random_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    extra: tuple[str, ...],
    says: str,
) -> None:
    start = ("--start", START) if extra else ()
    code = main(
        [
            *("-q", "footage", "--bundle", str(random_bundle), "--out", str(tmp_path / "g")),
            *("--camera", "c", *start, *extra, str(tiny_footage / "video.mp4")),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and says in err[0]
    assert not (tmp_path / "g").exists()


def test_a_detector_file_of_the_wrong_layout_is_one_error_line(
    tiny_footage: Path, random_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from tests.footage.onnx_graphs import constant_detector

    model = constant_detector(tmp_path / "t.onnx", np.ones((6, 100), np.float32), transpose=True)
    code = main(
        [
            *("-q", "footage", "--bundle", str(random_bundle), "--out", str(tmp_path / "g")),
            *("--camera", "c", "--start", START, "--detector", f"onnx:{model}"),
            str(tiny_footage / "video.mp4"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "transposed" in err[0]
    assert not (tmp_path / "g").exists()


def test_a_users_onnx_detector_runs_end_to_end(
    tiny_footage: Path, random_bundle: Path, tmp_path: Path
) -> None:
    """A stand-in export that sees one person at the same place in every frame: one track,
    whose crops' boxes are that place in frame pixels (320x240 letterboxed into 320x320)."""
    from tests.footage.onnx_graphs import constant_detector

    # Frame box (100, 60)-(160, 200) is (100, 100)-(160, 240) in the input: 40 px of grey above.
    person = np.array([[130.0], [170.0], [60.0], [140.0], [0.8], [0.1]], np.float32)
    model = constant_detector(tmp_path / "yolo.onnx", person)
    store = tmp_path / "gallery"
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(
            [
                *("-q", "footage", "--bundle", str(random_bundle), "--out", str(store)),
                *("--camera", "gate-2", "--start", START, "--detector", f"onnx:{model}"),
                str(tiny_footage / "video.mp4"),
            ]
        )
    assert code == 0, err.getvalue()
    [report] = json.loads(out.getvalue())["recordings"]
    assert [t["track"] for t in report["tracks"]] == [1] and report["added"] == 3
    manifest = json.loads((Path(f"{store}.crops") / report["recording"] / MANIFEST).read_text())
    for crop in manifest["tracks"][0]["crops"]:
        np.testing.assert_allclose(crop["box"], [100, 60, 160, 200], atol=1e-3)


def test_each_person_s_description_finds_their_own_track(
    cast_footage: Path, cast_bundle: Path, tmp_path: Path
) -> None:
    """The whole path a user takes: ingest a recording, then search it by description. The
    bundle was trained on these three people (support/builders.py make_cast_bundle), so what
    is judged is the pipeline: a track that mixed people, lost its crops or carried another
    track's id would not come first for its person's words."""
    store = tmp_path / "gallery"
    code, result, err = _run(store, cast_bundle, cast_footage / "video.mp4")
    assert code == 0, err
    report = result["recordings"][0]
    truth = read_truth(cast_footage / "gt" / "gt.txt")
    manifest = json.loads((Path(f"{store}.crops") / report["recording"] / MANIFEST).read_text())
    owner = {
        track_person_id("lobby-1", report["recording"], t["track"]): track_owner(truth, t["crops"])
        for t in manifest["tracks"]
    }
    # Each of the three people has a track (a person whose track broke may have two).
    assert set(owner.values()) == {1, 2, 3}

    captions = json.loads((cast_footage / "people.json").read_text())
    for person, texts in captions.items():
        for text in texts:
            out = io.StringIO()
            with redirect_stdout(out), redirect_stderr(io.StringIO()):
                code = main(
                    [
                        *("-q", "search", str(store), "--bundle", str(cast_bundle)),
                        *("--query", text, "-k", "50", "--use-gpu", "never"),
                    ]
                )
            assert code == 0
            hits = json.loads(out.getvalue())
            assert owner[hits[0]["person_id"]] == int(person), (text, hits[0])
