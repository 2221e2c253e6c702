"""Every benchmark answers --help, and the quick modes `make bench` relies on run end to end
and write their JSON (figures are not judged here: benchmarks measure, tests do not time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = sorted(
    p.stem
    for p in (REPO / "bench").glob("*.py")
    if p.stem != "__init__" and "def main" in p.read_text()
)
# Quick modes cheap enough for CI (bench.feedback --quick still trains a model: help only).
QUICK = ("store", "encoders", "index", "service")
# bench.service serves one runtime here (the ONNX paths run in bench.encoders' quick mode):
# every server it starts costs seconds on 2 cores.
QUICK_ARGS = {"service": ("--runtime", "torch")}
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=ENV,
        cwd=REPO,
    )  # fmt: skip


@pytest.mark.parametrize("module", MODULES)
def test_benchmark_answers_help(module: str) -> None:
    done = _run(f"bench.{module}", "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


@pytest.mark.parametrize("module", QUICK)
def test_quick_mode_runs_and_writes_json(module: str, tmp_path: Path) -> None:
    done = _run(f"bench.{module}", "--quick", *QUICK_ARGS.get(module, ()), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(tmp_path.rglob("*.json"))
    assert written, f"bench.{module} --quick wrote no JSON"
    for path in written:
        assert json.loads(path.read_text())
