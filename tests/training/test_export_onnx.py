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
