"""``python -m bundle export-onnx``: JSON on stdout, one-line errors, nothing half-written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bundle.commands import main
from bundle.format import read_meta
from bundle.onnx_files import read_record


def test_export_onnx_writes_and_records_the_graphs(
    random_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(random_bundle, copy)
    assert main(["-q", "export-onnx", str(copy)]) == 0
    out = json.loads(capsys.readouterr().out)  # only the JSON: the exporter's chatter is kept off
    assert set(out["graphs"]) == {"image", "text"}
    record = read_record(read_meta(copy))
    assert record is not None and record.exported_from == out["exported_from"]


def test_int8_without_check_data_is_one_line(
    random_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export-onnx", str(random_bundle), "--int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --int8 needs --check-captions")
    assert read_record(read_meta(random_bundle)) is None  # nothing was exported


def test_not_a_bundle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export-onnx", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
