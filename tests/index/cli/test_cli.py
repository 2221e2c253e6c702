"""``python -m index``: commands end to end, and bad input as one ``error:`` line."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from index.cli.commands import main
from index.store import GalleryIndex

ROOT = Path(__file__).resolve().parents[3]


def _cli(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "index", *map(str, args)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def _run_in_process(capsys: pytest.CaptureFixture, *args: object) -> object:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def camera(tmp_path: Path, synthetic_root: Path) -> Path:
    """A camera folder: two people's images in per-person folders."""
    folder = tmp_path / "camera"
    for person in ("p0001", "p0002"):
        shutil.copytree(synthetic_root / "imgs" / person, folder / person)
    return folder


def test_build_add_search_remove_rebuild(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    camera: Path,
    synthetic_root: Path,
    random_bundle: Path,
    second_bundle: Path,
    bundle,
) -> None:
    idx = tmp_path / "idx"
    fast = ("--workers", "0", "--device", "cpu")
    built = _run_in_process(
        capsys, "build", "--bundle", random_bundle, "--images", camera, "--person-from-dir",
        "--out", idx, *fast,
    )  # fmt: skip
    assert built["added"] == 6 and built["count"] == 6 and built["path"] == str(idx)
    with GalleryIndex.open(idx) as index:
        assert {i.person_id for i in index.items()} == {"p0001", "p0002"}
        assert index.get("p0001/p0001_01.jpg") is not None

    extra = tmp_path / "extra"
    extra.mkdir()
    shutil.copy(synthetic_root / "imgs/p0003/p0003_01.jpg", extra / "new.jpg")
    shutil.copy(camera / "p0001/p0001_01.jpg", extra / "dup.jpg")
    added = _run_in_process(capsys, "add", idx, "--bundle", random_bundle, "--images", extra, *fast)
    assert added["added"] == 1 and added["duplicates"] == {"dup.jpg": "p0001/p0001_01.jpg"}
    assert added["count"] == 7

    hits = _run_in_process(
        capsys, "search", idx, "--bundle", random_bundle, "--query", "a woman", "-k", "3",
        "--device", "cpu",
    )  # fmt: skip
    with GalleryIndex.open(idx) as index:
        expected = index.search(bundle.encode_text(["a woman"]), 3)[0]
    assert [h["image_id"] for h in hits] == [h.image_id for h in expected]
    assert set(hits[0]) == {"image_id", "person_id", "score"}
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-5)

    removed = _run_in_process(capsys, "remove", idx, "new.jpg")
    assert removed == {"removed": ["new.jpg"], "count": 6}

    rebuilt = _run_in_process(capsys, "rebuild", idx, "--bundle", second_bundle, *fast)
    assert rebuilt["count"] == 6 and rebuilt["fingerprint"] != built_fingerprint(random_bundle)

    # The whole chain once more through the real entry point.
    code, out, err = _finish(_cli("info", idx))
    assert code == 0, err
    info = json.loads(out)
    assert (
        info["count"] == 6 and info["dim"] == 128 and info["fingerprint"] == rebuilt["fingerprint"]
    )


def built_fingerprint(bundle_dir: Path) -> str:
    return json.loads((bundle_dir / "bundle.json").read_text())["fingerprint"]


def test_precision_is_recorded_and_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture, camera: Path, random_bundle: Path
) -> None:
    idx = tmp_path / "idx"
    fast = ("--workers", "0", "--device", "cpu")
    _run_in_process(
        capsys, "build", "--bundle", random_bundle, "--images", camera, "--out", idx, *fast,
        "--precision", "bf16",
    )  # fmt: skip
    assert _run_in_process(capsys, "info", idx)["encoding"] == {
        "precision": "bf16",
        "layout": "global",
    }
    query = ("search", idx, "--bundle", random_bundle, "--query", "a woman", "--device", "cpu")
    assert main([str(a) for a in query]) == 2  # fp32 queries against a bf16 gallery
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--precision bf16" in err and len(err.splitlines()) == 1
    hits = _run_in_process(capsys, *query, "--precision", "bf16")
    assert len(hits) == 6
    assert (
        main(["add", str(idx), "--bundle", str(random_bundle), "--images", str(camera), *fast]) == 2
    )
    assert "encoded in bf16" in capsys.readouterr().err


def test_build_from_dataset_split(
    tmp_path: Path, capsys: pytest.CaptureFixture, synthetic_root: Path, random_bundle: Path
) -> None:
    raw = json.loads((synthetic_root / "reid_raw.json").read_text())
    test_images = {e["file_path"]: str(e["id"]) for e in raw if e["split"] == "test"}
    built = _run_in_process(
        capsys, "build", "--bundle", random_bundle, "--dataset", "cuhk-pedes",
        "--root", synthetic_root, "--split", "test", "--out", tmp_path / "idx", "--workers", "0",
        "--kind", "ivf", "--batch-size", "16",
    )  # fmt: skip
    assert built["count"] == len(test_images)
    with GalleryIndex.open(tmp_path / "idx") as index:
        assert {i.image_id: i.person_id for i in index.items()} == test_images
        assert index.stats()["kind"] == "ivf"


@pytest.mark.parametrize(
    ("flags", "files", "folder"), [((), 0o600, 0o700), (("--group-readable",), 0o640, 0o750)]
)
def test_a_built_index_is_private_on_disk(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    camera: Path,
    random_bundle: Path,
    flags: tuple[str, ...],
    files: int,
    folder: int,
) -> None:
    """The manifest names persons, cameras and times: other local users must not read it."""
    old = os.umask(0o022)
    try:
        out = tmp_path / "idx"
        _run_in_process(
            capsys,
            *flags,
            "build",
            "--bundle",
            random_bundle,
            "--images",
            camera,
            "--out",
            out,
            "--workers",
            "0",
        )
        assert os.umask(0o022) == 0o022  # the caller's umask is back
    finally:
        os.umask(old)
    made = [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
    assert {p.name for p in made} >= {"manifest.sqlite", "index.json"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in made} == {p.name: files for p in made}
    assert stat.S_IMODE(out.stat().st_mode) == folder


def test_entry_point(
    tmp_path: Path, random_bundle: Path, second_bundle: Path, bundle, gallery
) -> None:
    """Through ``python -m index``: a search, then bad inputs (all run at once to save time),
    each one ``error:`` line and exit code 2, the code every CLI of the project uses."""
    idx = tmp_path / "idx"
    with GalleryIndex.create(idx, bundle.fingerprint, bundle.dim) as index:
        index.add(gallery.vectors, gallery.items)
        expected = index.search(bundle.encode_text(["a man with a backpack"]), 5)[0]
    query = ("--query", "a man with a backpack", "-k", "5", "--device", "cpu")
    search = _cli("search", idx, "--bundle", random_bundle, *query)
    snapshot = {p.name: p.read_bytes() for p in idx.iterdir() if p.is_file()}
    images = tmp_path / "images"
    images.mkdir()
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    shutil.copy(gallery.paths[0], pictures / "a.jpg")
    cases = {
        "no command": ((), 2, "required"),
        "unknown kind": (("build", "--bundle", random_bundle, "--images", images, "--out",
                          tmp_path / "x", "--kind", "lsh"), 2, "invalid choice"),
        "missing index": (("info", tmp_path / "nowhere"), 2, "not a gallery index"),
        "unknown id": (("remove", idx, gallery.items[0].image_id, "ghost"), 2,
                       "not in the index: ghost"),
        "index exists": (("build", "--bundle", random_bundle, "--images", images, "--out", idx),
                         2, "already holds an index"),
        "no images": (("build", "--bundle", random_bundle, "--images", images, "--out",
                       tmp_path / "y"), 2, "no images"),
        "root without dataset": (("add", idx, "--bundle", random_bundle, "--images", images,
                                  "--root", images), 2, "--root goes with --dataset"),
        "bad k": (("search", idx, "--bundle", random_bundle, "--query", "x", "-k", "0"), 2,
                  "-k must be"),
        "other bundle": (("search", idx, "--bundle", second_bundle, "--query", "x"), 2,
                         "was built with bundle"),
        "not a bundle": (("add", idx, "--bundle", pictures, "--images", pictures), 2,
                         "is not a bundle"),
    }  # fmt: skip
    running = {name: _cli(*args) for name, (args, _, _) in cases.items()}
    for name, process in running.items():
        code, out, err = _finish(process)
        _, want_code, want_text = cases[name]
        lines = err.strip().splitlines()
        assert code == want_code, (name, err)
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert want_text in lines[0], (name, lines[0])
        assert out == "", name
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    code, out, err = _finish(search)
    assert code == 0, err
    assert [h["image_id"] for h in json.loads(out)] == [h.image_id for h in expected]
    assert {p.name: p.read_bytes() for p in idx.iterdir() if p.is_file()} == snapshot
