"""Every benchmark answers --help, and the quick modes `make bench` relies on run end to end
and write their JSON (figures are not judged here: benchmarks measure, tests do not time)."""

from __future__ import annotations

import importlib
import json
import re
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
# bench.store: the folder store, one served cell (each store served costs a service start, and
# the real Milvus server's start and fill a minute; the store tests cover the other engines).
QUICK_ARGS = {
    "service": ("--runtime", "torch"),
    "store": ("--stores", "faiss", "--clients", "4", "--top-k", "100"),
}
ENV = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_WAIT_POLICY": "PASSIVE"}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=ENV,
        cwd=REPO,
    )  # fmt: skip


def source(module: str) -> str:
    return (REPO / "bench" / f"{module}.py").read_text()


@pytest.mark.parametrize("module", MODULES)
def test_benchmark_answers_help(module: str, capsys: pytest.CaptureFixture) -> None:
    """In this process (a Python start with torch costs seconds per module); the quick modes
    below run `python -m bench.X` for real, and every module runs its main as a script."""
    bench = importlib.import_module(f"bench.{module}")
    with pytest.raises(SystemExit) as exited:
        bench.main(["--help"])
    assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out
    source = (REPO / "bench" / f"{module}.py").read_text()
    assert re.search(r'if __name__ == "__main__":\n    (sys\.exit\()?main\(\)', source)


@pytest.mark.parametrize("module", QUICK)
def test_quick_mode_runs_and_writes_json(module: str, tmp_path: Path) -> None:
    done = _run(f"bench.{module}", "--quick", *QUICK_ARGS.get(module, ()), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(tmp_path.rglob("*.json"))
    assert written, f"bench.{module} --quick wrote no JSON"
    for path in written:
        assert json.loads(path.read_text())
