"""bench/device_check.sh: the dry run gives the full report's shape on a CPU (the wheels it
carries to a GPU machine: tests/locks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.device_check import ROWS

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "device_check.sh"
ENV = {
    **os.environ,
    "PYTHON": sys.executable,
    "HF_HUB_OFFLINE": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}


def _run(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**ENV, "DEVICE_SITE": str(tmp / "site")}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=900, env=env,
        cwd=REPO,
    )  # fmt: skip


def test_dry_run_reports_every_row_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    done = _run("--dry-run", "--out", str(out), tmp=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert json.loads(done.stdout) == report
    rows = report["rows"]
    assert tuple(rows) == ROWS
    assert report["dry_run"] is True
    statuses = {name: row["status"] for name, row in rows.items()}
    # faiss-gpu is not installed here; every other row runs on the CPU.
    assert statuses == {**dict.fromkeys(ROWS, "ok"), "faiss_gpu": "skipped"}, rows
    assert "faiss-gpu" in rows["faiss_gpu"]["reason"]

    precision = rows["encode_precision"]
    assert precision["compared"] == "cpu bf16 vs cpu fp32"
    for side in ("image_cosine", "text_cosine"):
        assert 0.9 < precision[side]["min"] <= precision[side]["mean"] <= 1.0 + 1e-6
    assert 0.0 <= precision["ranking"]["top1_agreement"] <= 1.0

    train = rows["train_step"]
    assert set(train) >= {"paper", "reference", "paper_with_parts"}
    assert "parts" in train["paper_with_parts"]["losses"]
    assert all(train[c]["samples_per_s"] > 0 for c in ("paper", "reference", "paper_with_parts"))
    assert rows["gallery_encode"]["images_per_s"] > 0
    assert {f"batch_{b}" for b in (1, 32, 256)} <= set(rows["text_encode"])
    for dtype in ("fp32", "bf16"):
        assert rows["exact_search"][dtype]["batch_32"]["queries_per_s"] > 0
    assert rows["faiss_cpu"]["batch_1"]["queries_per_s"] > 0


def test_only_runs_the_rows_asked_for(tmp_path: Path) -> None:
    done = _run("--dry-run", "--only", "environment,faiss_gpu", tmp=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout)["rows"]
    assert rows["environment"]["status"] == "ok"
    assert rows["train_step"] == {"status": "skipped", "reason": "not asked for (--only)"}


def test_unknown_rows_are_refused(tmp_path: Path) -> None:
    done = _run("--dry-run", "--only", "environment,warp_drive", tmp=tmp_path)
    assert done.returncode == 2
    assert "unknown rows: warp_drive" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_a_gpu_only_the_dry_run_runs(tmp_path: Path) -> None:
    done = _run(tmp=tmp_path)
    assert done.returncode == 2
    assert "--dry-run" in done.stderr.strip().splitlines()[-1]
