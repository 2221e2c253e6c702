"""``python -m training export --onnx/--onnx-int8``: graphs for a bundle, the INT8 text tower
checked on a test split's rankings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bundle.format import read_meta
from bundle.onnx_files import read_record
from training.cli import main
from training.export import is_synthetic_bundle


def test_export_int8_on_an_existing_bundle(
    random_bundle: Path, synthetic_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(random_bundle, copy)
    argv = ["export", "--bundle", str(copy), "--onnx-int8", "--check-root", str(synthetic_root)]
    # The bar is lowered: an untrained tower ranks near-ties, where INT8 may well fall short.
    assert main([*argv, "--min-overlap", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bundle"] == str(copy)
    check = out["onnx"]["int8"]
    assert check["k"] == 10 and check["queries"] > 10 and 0 <= check["top_k_overlap"] <= 1
    assert check["batch_sizes"] == [1, 8, 64] and check["batch_invariant"] is True
    record = read_record(read_meta(copy))
    assert record is not None and set(record.graphs) == {"text", "image", "text_int8"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoint", "c.pt"], "--checkpoint needs --out"),
        (["--bundle", "b"], "nothing to export"),
        (["--bundle", "b", "--onnx", "--out", "o"], "--out goes with --checkpoint"),
    ],
)
def test_export_arguments_that_do_not_fit(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", *args]) == 2
    assert message in capsys.readouterr().err


def test_int8_check_of_a_bundle_of_another_data_set_needs_its_check_root(
    random_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The synthetic check set stands in only for synthetic or untrained bundles: one trained on
    a real set is refused before anything is written, naming the set."""
    copy = tmp_path / "b"
    shutil.copytree(random_bundle, copy)
    meta = json.loads((copy / "bundle.json").read_text())
    meta.update(selected_on="best", recipe={"dataset": "icfg-pedes", "root": "/data/ICFG-PEDES"})
    (copy / "bundle.json").write_text(json.dumps(meta))
    assert main(["export", "--bundle", str(copy), "--onnx-int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the INT8 check needs --check-root")
    assert "icfg-pedes at /data/ICFG-PEDES" in err[0]
    assert not (copy / "text.onnx").exists() and "onnx" not in read_meta(copy).extra


def test_which_bundles_the_synthetic_check_set_stands_in_for(
    synthetic_root: Path, tmp_path: Path
) -> None:
    assert is_synthetic_bundle({"selected_on": "untrained"})
    assert is_synthetic_bundle({"recipe": {"dataset": "cuhk-pedes", "root": str(synthetic_root)}})
    real = tmp_path / "CUHK-PEDES"
    real.mkdir()
    (real / "reid_raw.json").write_text("[]")
    assert not is_synthetic_bundle({"recipe": {"dataset": "cuhk-pedes", "root": str(real)}})
    assert not is_synthetic_bundle({"selected_on": "given checkpoint"})


def test_a_checkpoint_of_another_data_set_is_refused_before_its_bundle_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    checkpoint = tmp_path / "best.pt"
    torch.save({"config": {"dataset": "cuhk-pedes", "root": "/data/CUHK-PEDES"}}, checkpoint)
    out = tmp_path / "bundle"
    argv = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--onnx-int8"]
    assert main(argv) == 2
    assert "needs --check-root" in capsys.readouterr().err and not out.exists()
