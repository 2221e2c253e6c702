"""A short run of the soak (`make soak` runs it for 5 minutes): mixed load, no errors, and the
JSON and the plot it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from support.server import REPO

SECONDS = 12


def test_short_soak(tmp_path: Path, random_bundle: Path, small_index: Path) -> None:
    out = tmp_path / "soak"
    command = [sys.executable, "-m", "bench.soak", "--duration", str(SECONDS), "--sample-s", "1"]
    command += ["--clients", "4", "--bundle", str(random_bundle), "--index", str(small_index)]
    command += ["--out", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    result = json.loads((out / "soak.json").read_text())
    assert result["errors"] == 0, result["error_statuses"]
    assert result["server_alive_at_end"]
    assert result["by_kind"]["search"]["requests"] >= 50
    assert result["by_kind"]["upload"]["requests"] >= 3
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    assert len(result["timeline"]) == SECONDS
    assert all(row["rss_mib"] and row["rss_mib"] > 50 for row in result["timeline"])
    assert result["rss_mib"]["max"] >= result["rss_mib"]["end"] > 50
    # The original index was copied, never written.
    assert not (small_index / "images").exists()
    with Image.open(out / "soak.png") as plot:
        assert plot.format == "PNG" and plot.size[0] >= 600 and plot.size[1] >= 600
