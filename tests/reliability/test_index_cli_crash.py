"""`python -m index add` killed (SIGKILL) at a random moment after its model loaded: the index
opens consistent (FAISS and manifest agree), holds no stale FAISS file, and the add happened
wholly or not at all.

The commit protocol itself is killed inside each of its steps by tests/index/faiss/test_crash.py;
this is the same promise one level up, through the command a user runs. `make crash-test` runs more
trials than CI.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from api_tests.reliability.support import env_int, noise_image

REPO = Path(__file__).resolve().parents[2]
IMAGES_PER_ADD = 40


def start_add(index: Path, bundle: Path, images: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "index", "add", str(index), "--bundle", str(bundle)]
    command += ["--images", str(images), "--device", "cpu", "--workers", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wait_for_model(process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the CLI logs its loaded bundle: from then on it encodes and commits."""
    assert process.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line or " bundle " in line:
            return
    raise AssertionError("the CLI never loaded its bundle")


def image_ids(index_dir: Path) -> set[str]:
    from index.store import GalleryIndex

    with GalleryIndex.open(index_dir, use_gpu="never") as index:  # checks FAISS vs manifest
        ids = {item.image_id for item in index.items()}
        assert index.stats()["count"] == len(ids)
        generation = index.stats()["generation"]
    faiss_files = sorted(p.name for p in index_dir.iterdir() if p.name.endswith(".faiss"))
    assert faiss_files == [f"vectors.{generation}.faiss"]
    return ids


def test_sigkill_of_index_add_is_all_or_nothing(tmp_path: Path, random_bundle: Path) -> None:
    from bundle.format import read_meta
    from index.store import GalleryIndex

    trials = env_int("TPS_CLI_CRASH_TRIALS", 1)
    rng = random.Random(env_int("TPS_CRASH_SEED", 0))
    meta = read_meta(random_bundle)
    index_dir = tmp_path / "index"
    GalleryIndex.create(index_dir, meta.fingerprint, meta.embed_dim, "flat", "never").close()
    present: set[str] = set()
    outcomes = {"landed": 0, "not landed": 0, "finished before the kill": 0}
    for trial in range(trials):
        folder = tmp_path / f"batch{trial}"
        folder.mkdir()
        for n in range(IMAGES_PER_ADD):
            (folder / f"t{trial}_{n:02d}.jpg").write_bytes(noise_image(trial * 1000 + n))
        batch = {f"t{trial}_{n:02d}.jpg" for n in range(IMAGES_PER_ADD)}
        process = start_add(index_dir, random_bundle, folder)
        wait_for_model(process)
        time.sleep(rng.uniform(0.0, 0.4))  # encoding and the commit take about 0.2 s
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
        after = image_ids(index_dir)
        assert after in (present, present | batch), "a partial add is visible"
        if process.returncode == 0:
            outcomes["finished before the kill"] += 1
            assert after == present | batch
        else:
            assert process.returncode == -signal.SIGKILL
            outcomes["landed" if after != present else "not landed"] += 1
        present = after
    print(json.dumps({"trials": trials, **outcomes}))
    if out := os.environ.get("TPS_RELIABILITY_OUT"):
        Path(out).mkdir(parents=True, exist_ok=True)
        summary = {"trials": trials, **outcomes}
        (Path(out) / "crash-index-cli.json").write_text(json.dumps(summary, indent=2) + "\n")
