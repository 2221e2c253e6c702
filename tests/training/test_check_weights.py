"""``python -m training check-weights``: the JSON report, zero-shot metrics, one-line errors."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bundle.openclip_import import import_open_clip
from tests.training.model.test_weights import openai_source, write_torchscript
from training.check_weights import OPENAI_PUBLISHED, published_as
from training.cli import main
from training.model.towers import TowerSpec, build_towers

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def openai_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The TorchScript stand-in of OpenAI's ViT-B-16.pt and its tensor element count."""
    source = openai_source()
    path = write_torchscript(source, tmp_path_factory.mktemp("openai") / "ViT-B-16.pt")
    return path, sum(t.numel() for t in source.values())


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    torch.save(build_towers(TowerSpec("tiny"))[0].state_dict(), path)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_reports_the_openai_archive(
    openai_file: tuple[Path, int], capsys: pytest.CaptureFixture
) -> None:
    path, elements = openai_file
    report = _run(["check-weights", str(path), "--quiet"], capsys)
    assert report["path"] == str(path)
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["published_as"] is None  # a stand-in, not OpenAI's file
    assert report["format"] == "openai-torchscript"
    assert report["architecture"]["name"] == "ViT-B-16"
    assert report["architecture"]["grid"] == [14, 14]
    assert report["model"]["name"] == "ViT-B-16"
    assert report["model"]["image_size"] == [384, 128]
    # auto: OpenAI's archive means QuickGELU
    assert report["model"]["quick_gelu"] is True
    assert report["model"]["quick_gelu_source"] == "OpenAI's TorchScript archive"
    assert report["model"]["architecture"]["grid"] == [24, 8]
    # Every CLIP parameter of the file, with 197 positions of width 768 resized to 1 + 24×8.
    assert report["parameters"] == elements + (1 + 24 * 8 - 197) * 768
    assert report["resized"] == [
        {
            "key": "visual.positional_embedding",
            "from": [197, 768],
            "to": [193, 768],
            "describe": "visual.positional_embedding 197x768 -> 193x768 (grid 14x14 -> 24x8)",
        }
    ]
    assert "zero_shot" not in report


def test_zero_shot_metrics_on_a_split(
    tiny_file: Path, synthetic_root: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["check-weights", str(tiny_file), "--model", "tiny", "--dataset", "cuhk-pedes"]
    argv += ["--root", str(synthetic_root), "--split", "test", "--device", "cpu"]
    argv += ["--quick-gelu", "false"]  # a bare state dict does not record it
    report = _run([*argv, "--workers", "0", "--quiet"], capsys)
    assert report["format"] == "state-dict"
    assert report["resized"] == []  # saved at the tiny model's own 192×64
    metrics = report["zero_shot"]
    assert (metrics["dataset"], metrics["split"]) == ("cuhk-pedes", "test")
    for key in ("R1", "R5", "R10", "mAP", "mINP"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["gallery_images"] > 0


def test_a_bad_file_exits_2_with_one_stderr_line(tmp_path: Path) -> None:
    bad = tmp_path / "ViT-B-16.pt"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 64)  # a zip archive cut short
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "training", "check-weights", str(bad), "--model", "tiny"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: could not load {bad}: truncated or corrupt zip archive")


def test_the_digest_openai_publishes_is_named() -> None:
    # OpenAI's clip package (and open_clip after it) downloads ViT-B-16.pt from a URL whose
    # folder is the file's SHA-256, and checks the download against it.
    url = import_open_clip().get_pretrained_url("ViT-B-16", "openai")
    digest = url.split("/")[-2]
    assert url.endswith("/ViT-B-16.pt") and set(OPENAI_PUBLISHED) == {digest}
    assert "ViT-B/16" in (published_as(digest.upper()) or "")
    assert published_as(hashlib.sha256(b"another file").hexdigest()) is None


def test_quick_gelu_is_asked_for_when_the_file_does_not_record_it(
    tiny_file: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["check-weights", str(tiny_file), "--model", "tiny", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tiny_file} does not record whether") and "\n" not in err
    assert "--quick-gelu true or --quick-gelu false" in err
    report = _run([*argv, "--quick-gelu", "true"], capsys)
    assert report["model"]["quick_gelu"] is True
    assert report["model"]["quick_gelu_source"] == "--quick-gelu true"


def test_a_missing_path_names_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    absent = tmp_path / "ViT-B-16.pt"
    assert main(["check-weights", str(absent), "--model", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: check-weights PATH {absent}: no such file (give the weights file itself)"
