"""``python -m index --runtime``: ONNX builds and searches an index like torch does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index.cli.commands import main


def _run(capsys: pytest.CaptureFixture, *args: object) -> object:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_onnx_builds_and_searches_like_torch(
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    onnx_bundle: Path,
    synthetic_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = ["--dataset", "cuhk-pedes", "--root", synthetic_root, "--workers", 0]
    indexes = {}
    for runtime in ("torch", "onnx"):
        indexes[runtime] = tmp_path / runtime
        build = ["build", "--bundle", onnx_bundle, *source, "--out", indexes[runtime]]
        _run(capsys, "-q", *build, "--device", "cpu", "--runtime", runtime)
    query = ["--bundle", onnx_bundle, "--query", "a man in a red coat", "-k", 5]
    hits = {}
    for runtime in ("torch", "onnx"):
        # The same setting as the service's: TPS_RUNTIME, when no flag is given.
        monkeypatch.setenv("TPS_RUNTIME", runtime)
        hits[runtime] = _run(capsys, "-q", "search", indexes["torch"], *query, "--device", "cpu")
    assert [h["image_id"] for h in hits["onnx"]] == [h["image_id"] for h in hits["torch"]]
    scores = np.array([[h["score"] for h in hits[r]] for r in ("torch", "onnx")])
    assert np.abs(scores[0] - scores[1]).max() < 1e-4
    # The index whose images ONNX encoded ranks like the one torch encoded.
    onnx_hits = _run(capsys, "-q", "search", indexes["onnx"], *query, "--runtime", "onnx")
    assert [h["image_id"] for h in onnx_hits] == [h["image_id"] for h in hits["torch"]]
