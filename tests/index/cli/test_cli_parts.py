"""``python -m index ... --parts``: a parts index holds the parts layout, records it, and its
search scores are S = ⟨G, Q⟩ of docs/parts.md; the modes are never mixed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bundle.encoders import Bundle
from bundle.images import decode_file
from index.cli.commands import main
from index.store import GalleryIndex
from tests.bundle.parts_bundles import TINY_PARTS_DIM, make_parts_bundle

QUERY = "a man in a red coat"


@pytest.fixture(scope="module")
def parts_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_parts_bundle(tmp_path_factory.mktemp("parts") / "tiny")


@pytest.fixture
def camera(tmp_path: Path, synthetic_root: Path) -> Path:
    folder = tmp_path / "camera"
    for person in ("p0001", "p0002", "p0003"):
        shutil.copytree(synthetic_root / "imgs" / person, folder / person)
    return folder


def _run(capsys: pytest.CaptureFixture, *args: object) -> object:
    code = main(["-q", *[str(a) for a in args]])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def _fails(capsys: pytest.CaptureFixture, *args: object) -> str:
    code = main(["-q", *[str(a) for a in args]])
    _, err = capsys.readouterr()
    assert code != 0
    return err


def test_a_parts_index_scores_s(
    tmp_path: Path, capsys: pytest.CaptureFixture, camera: Path, parts_bundle: Path
) -> None:
    index = tmp_path / "idx"
    common = ["--bundle", parts_bundle, "--device", "cpu", "--workers", "0"]
    _run(capsys, "build", *common, "--images", camera, "--out", index, "--parts")
    info = _run(capsys, "info", index)
    assert info["dim"] == TINY_PARTS_DIM
    assert info["encoding"]["layout"] == "parts:M=4,K=6,dp=32"
    hits = _run(
        capsys, "search", index, "--bundle", parts_bundle, "--query", QUERY, "-k", "50",
        "--device", "cpu", "--use-gpu", "never", "--parts",
    )  # fmt: skip
    bundle = Bundle(parts_bundle, parts=True)
    query = bundle.encode_text([QUERY])[0]
    files = {str(p.relative_to(camera)): p for p in camera.rglob("*.jpg")}
    assert len(hits) == len(files)
    for hit in hits:
        image = bundle.preprocess(decode_file(files[hit["image_id"]]))[None]
        s = float(bundle.encode_images(image)[0] @ query)
        assert hit["score"] == pytest.approx(s, abs=1e-4)
    with GalleryIndex.open(index, use_gpu="never") as opened:
        stored = opened.vectors([hits[0]["image_id"]])[hits[0]["image_id"]]
    # The store holds G/√(1+M+K): unit rows, the parts layout's blocks each of norm 1/√11.
    assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-4)
    # An example image as the query: its blocks weighted like a caption's.
    by_example = _run(
        capsys, "search", index, "--bundle", parts_bundle, "--positive", hits[0]["image_id"],
        "--keep-examples", "--device", "cpu", "--use-gpu", "never", "--parts",
    )  # fmt: skip
    assert by_example[0]["image_id"] == hits[0]["image_id"]
    assert by_example[0]["score"] == pytest.approx(3.0, abs=1e-3)  # w_g + w_c + w_f, all cos 1
    # Per-query part weights: scores are S with those weights.
    weights = {"global": 0.5, "fine": 3.0}
    weighed = _run(
        capsys, "search", index, "--bundle", parts_bundle, "--query", QUERY, "-k", "50",
        "--device", "cpu", "--use-gpu", "never", "--parts", "--weights", "global=0.5,fine=3",
    )  # fmt: skip
    query = bundle.encode_text([QUERY], weights)[0]
    for hit in weighed:
        image = bundle.preprocess(decode_file(files[hit["image_id"]]))[None]
        s = float(bundle.encode_images(image)[0] @ query)
        assert hit["score"] == pytest.approx(s, abs=1e-4)
    assert [h["image_id"] for h in weighed] != [h["image_id"] for h in hits]
    search = ["search", index, "--bundle", parts_bundle, "--query", QUERY, "--device", "cpu"]
    assert "parts mode only" in _fails(capsys, *search, "--weights", "fine=2")
    assert "must be in [0, 100]" in _fails(capsys, *search, "--parts", "--weights", "fine=-1")
    assert "unknown weights" in _fails(capsys, *search, "--parts", "--weights", "hands=1")
    with pytest.raises(SystemExit) as bad_syntax:  # argparse: exit 2 with one line
        main([*[str(a) for a in search], "--parts", "--weights", "fine"])
    assert bad_syntax.value.code == 2 and "NAME=NUMBER" in capsys.readouterr().err
    # Rebuild re-encodes global galleries only: a parts gallery is refused, untouched.
    err = _fails(capsys, "rebuild", index, *common)
    assert "holds parts vectors" in err and "--parts" in err
    assert _run(capsys, "info", index)["encoding"]["layout"] == "parts:M=4,K=6,dp=32"


def test_modes_are_never_mixed(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    camera: Path,
    parts_bundle: Path,
    random_bundle: Path,
) -> None:
    index = tmp_path / "idx"
    common = ["--device", "cpu", "--workers", "0"]
    _run(capsys, "build", "--bundle", parts_bundle, *common, "--images", camera, "--out", index)
    before = _run(capsys, "info", index)
    assert before["dim"] == 128 and before["encoding"]["layout"] == "global"
    # A global index of a parts bundle refuses parts-mode vectors and queries ...
    err = _fails(capsys, "add", index, "--bundle", parts_bundle, *common, "--images", camera,
                 "--parts")  # fmt: skip
    assert "holds global vectors" in err and "parts mode" in err
    err = _fails(capsys, "search", index, "--bundle", parts_bundle, "--query", QUERY,
                 "--device", "cpu", "--parts")  # fmt: skip
    assert "parts mode" in err
    assert _run(capsys, "info", index)["count"] == before["count"]
    # ... and a global-only bundle has no parts mode at all.
    err = _fails(capsys, "build", "--bundle", random_bundle, *common, "--images", camera,
                 "--out", tmp_path / "other", "--parts")  # fmt: skip
    assert "no part head" in err and not (tmp_path / "other").exists()
    err = _fails(capsys, "build", "--bundle", parts_bundle, *common, "--images", camera,
                 "--out", tmp_path / "onnx", "--parts", "--runtime", "onnx")  # fmt: skip
    assert "TPS_RUNTIME=torch" in err and not (tmp_path / "onnx").exists()
