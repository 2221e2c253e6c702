"""Generate a synthetic pedestrian text-to-image data set in the CUHK-PEDES layout.

    python -m training.synthetic --out data/synth --ids 400 --images-per-id 4 --seed 0

writes ``DIR/reid_raw.json`` (CUHK-PEDES entries), ``DIR/imgs/pNNNN/pNNNN_KK.jpg`` and
``DIR/attributes.json`` (each identity's attributes and each image's view, for checking captions).
Every image is a pure function of (seed, person id, image index), so any number of workers writes
byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from bundle.cli import OneLineParser, run_command, setup_logging
from training.synthetic.attributes import Identity, sample_identities
from training.synthetic.captions import make_captions
from training.synthetic.render import hidden_items, render, sample_variation

SPLITS = ("train", "val", "test")
MIN_SIDE = 16


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from its parts, stable across processes and Python versions."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def split_counts(ids: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Identities per split; a non-zero fraction gets at least one identity when there are 3+."""
    n_val, n_test = round(ids * val_fraction), round(ids * test_fraction)
    if ids >= 3:
        n_val = max(n_val, 1 if val_fraction > 0 else 0)
        n_test = max(n_test, 1 if test_fraction > 0 else 0)
    n_train = ids - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{ids} identities leave none for training with these fractions")
    return {"train": n_train, "val": n_val, "test": n_test}


def assign_splits(people: Sequence[Identity], counts: dict[str, int]) -> dict[int, str]:
    """Contiguous pid ranges, so a group of look-alikes mostly lands in one split (and the test
    gallery keeps its hard negatives)."""
    names = [s for s in SPLITS for _ in range(counts[s])]
    return {p.pid: name for p, name in zip(people, names, strict=True)}


def image_path(pid: int, index: int, id_width: int, index_width: int) -> str:
    person = f"p{pid:0{id_width}d}"
    return f"{person}/{person}_{index:0{index_width}d}.jpg"


@dataclasses.dataclass(frozen=True)
class _Job:
    identity: Identity
    index: int
    seed: int
    size: tuple[int, int]
    path: Path
    rel: str


def _make_image(job: _Job) -> dict:
    """Render, caption and write one image; returns its annotation and view."""
    who = job.identity
    rng = random.Random(derive_seed(job.seed, who.pid, job.index, "image"))
    variation = sample_variation(rng, who)
    img = render(who, variation, job.size)
    job.path.parent.mkdir(parents=True, exist_ok=True)
    img.save(job.path, "JPEG", quality=variation.jpeg_quality)
    caption_rng = random.Random(derive_seed(job.seed, who.pid, job.index, "caption"))
    hidden = hidden_items(variation)
    captions = make_captions(who, variation.view, caption_rng, hidden)
    return {"rel": job.rel, "captions": captions, "view": variation.view, "hidden": sorted(hidden)}


def generate(
    out_dir: Path,
    ids: int,
    images_per_id: int,
    seed: int,
    size: tuple[int, int] = (384, 128),
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    workers: int = 1,
    progress: bool = False,
    cast: Sequence[Identity] | None = None,
) -> dict:
    """Write the data set under ``out_dir`` and return summary statistics.

    ``size`` is (height, width). ``cast``: these ``ids`` people (pids 1..ids) instead of
    sampled ones, e.g. the people of a synthetic recording. Raises ValueError on impossible
    arguments.
    """
    if ids < 1 or images_per_id < 1:
        raise ValueError("--ids and --images-per-id must be at least 1")
    if min(size) < MIN_SIDE:
        raise ValueError(f"image size {size[0]}x{size[1]} is below {MIN_SIDE} pixels")
    for name, frac in (("val", val_fraction), ("test", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"--{name}-fraction must be in [0, 1), got {frac}")
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if cast is not None and [p.pid for p in cast] != list(range(1, ids + 1)):
        raise ValueError(f"the cast must be {ids} identities with pids 1..{ids}")
    counts = split_counts(ids, val_fraction, test_fraction)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    people = (
        list(cast)
        if cast is not None
        else sample_identities(random.Random(derive_seed(seed, "identities")), ids)
    )
    splits = assign_splits(people, counts)
    id_width, index_width = max(4, len(str(ids))), max(2, len(str(images_per_id)))
    jobs = []
    for who in people:
        for index in range(1, images_per_id + 1):
            rel = image_path(who.pid, index, id_width, index_width)
            jobs.append(_Job(who, index, seed, size, out_dir / "imgs" / rel, rel))
    out_dir.mkdir(parents=True, exist_ok=True)

    bar = tqdm(total=len(jobs), unit="img", disable=not progress, desc="rendering")
    if workers == 1:
        results = []
        for job in jobs:
            results.append(_make_image(job))
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            results = []
            for result in pool.map(_make_image, jobs, chunksize=16):
                results.append(result)
                bar.update()
    bar.close()

    entries, per_person = [], {}
    for job, result in zip(jobs, results, strict=True):
        pid = job.identity.pid
        entries.append(
            {
                "split": splits[pid],
                "captions": result["captions"],
                "file_path": result["rel"],
                "id": pid,
                "processed_tokens": [],
            }
        )
        images = per_person.setdefault(pid, [])
        images.append(
            {"file_path": result["rel"], "view": result["view"], "hidden": result["hidden"]}
        )
    attributes = {
        str(p.pid): {
            **dataclasses.asdict(p),
            "split": splits[p.pid],
            "colours": sorted(p.colours()),
            "images": per_person[p.pid],
        }
        for p in people
    }
    (out_dir / "reid_raw.json").write_text(json.dumps(entries))
    (out_dir / "attributes.json").write_text(json.dumps(attributes, indent=1, sort_keys=True))

    seconds = time.perf_counter() - started
    return {
        "out": str(out_dir),
        "ids": ids,
        "images": len(entries),
        "captions": sum(len(e["captions"]) for e in entries),
        "splits": {
            s: {"ids": counts[s], "images": sum(e["split"] == s for e in entries)} for s in SPLITS
        },
        "seconds": round(seconds, 3),
        "images_per_s": round(len(entries) / seconds, 1) if seconds > 0 else None,
    }


def parse_size(text: str) -> tuple[int, int]:
    """'384x128' -> (384, 128): height then width."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size must look like HxW (e.g. 384x128), got {text!r}")
    h, w = int(match[1]), int(match[2])
    if min(h, w) < MIN_SIDE:
        raise argparse.ArgumentTypeError(f"size {h}x{w} is below {MIN_SIDE} pixels")
    return h, w


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m training.synthetic", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--ids", type=_positive, required=True, help="number of identities")
    p.add_argument("--images-per-id", type=_positive, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--size", type=parse_size, default=(384, 128), help="HxW, default 384x128")
    p.add_argument("--val-fraction", type=_fraction, default=0.1)
    p.add_argument("--test-fraction", type=_fraction, default=0.2)
    p.add_argument("--workers", type=_positive, default=1)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()

    def run() -> int:
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out} exists and is not a directory")
        summary = generate(
            args.out,
            args.ids,
            args.images_per_id,
            args.seed,
            size=args.size,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            workers=args.workers,
            progress=True,
        )
        print(json.dumps(summary))
        return 0

    return run_command(run, (ValueError, OSError))
