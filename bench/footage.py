"""From footage to search, measured on synthetic recordings with ground truth.

Why: a user choosing a detector needs to know what it finds, how well the tracks hold, how
often a description finds the right track, and what it costs on their CPU. Each sequence is
made by support/synthetic_footage.py: the synthetic set's people walking across a street scene
(crossings, a pillar in front of them, scale change), with their true boxes and identities per
frame in the MOT challenge format. Per detector it reports:

- detection recall and precision at IoU 0.5 over every frame (people less than half visible
  are neither required nor counted as false boxes when found);
- tracking IDF1, ID switches and MOTA (motmetrics) over the same frames;
- frames/s of the detector alone and of the whole analysis (decode, detect, track, crops);
- with ``--bundle``: text → track retrieval after ``python -m index footage``'s job at its
  default sampling rate: each caption of each person queries the gallery of every track of
  every sequence, one result per track, R1/R5 = the share of queries with a track of that
  person first / in the top 5;
- with ``--known-people``: the same retrieval with the tiny model trained on the recordings'
  own people (drawn in other poses, lights and occlusions; support/builders.py
  make_cast_bundle): what detection, tracking and cropping lose when the model is not the
  limit.

    python -m bench.footage --out out/bench --bundle runs/tiny/bundle
    python -m bench.footage --quick                        # one short sequence, HOG only
    python -m bench.footage --detector onnx:yolov8n.onnx   # HOG and a user's export
    python -m bench.footage --yolov8n-cost                 # HOG and YOLOv8n's cost

``--yolov8n-cost`` measures only frames/s of the ONNX detector path with a graph of YOLOv8n's
architecture and random weights (bench/yolov8n_graph.py) at input 640 and 320: what a user's
export of that size costs here. Its boxes mean nothing, so it reports no accuracy.

JSON on stdout and in OUT/footage.json; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from index.search.cpu_features import detect

if TYPE_CHECKING:
    from footage.detectors import Detector

os.environ.setdefault("HF_HUB_OFFLINE", "1")

MIN_VISIBLE = 0.5
IOU = 0.5
SEED = 100  # of the first sequence


def _match(truth: list, boxes: np.ndarray) -> tuple[list[tuple[int, int]], set[int]]:
    """(matched (truth index, box index) at IoU >= 0.5, box indices matched to people less
    than half visible: neither hits nor false boxes)."""
    from footage.boxes import iou_matrix

    if not truth or not len(boxes):
        return [], set()
    iou = iou_matrix(np.stack([b for _, b, _ in truth]), boxes[:, :4])
    rows, cols = linear_sum_assignment(-iou)
    pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= IOU]
    ignored = {c for r, c in pairs if truth[r][2] < MIN_VISIBLE}
    return [(r, c) for r, c in pairs if truth[r][2] >= MIN_VISIBLE], ignored


def evaluate(seq: Path, detector_spec: str | Detector) -> dict[str, Any]:
    """Detection and tracking figures of one detector (a spec, or a detector itself) on one
    sequence, every frame analysed."""
    import motmetrics as mm

    from footage.analysis import AnalysisOptions, analyse
    from footage.detectors import make_detector
    from support.synthetic_footage import read_truth

    info = json.loads((seq / "seqinfo.json").read_text())
    truth = read_truth(seq / "gt" / "gt.txt")
    detector = make_detector(detector_spec) if isinstance(detector_spec, str) else detector_spec
    began = time.perf_counter()
    analysis = analyse(
        seq / "video.mp4", detector, AnalysisOptions(sample_fps=info["fps"]), progress=False
    )
    seconds = time.perf_counter() - began
    hits = misses = false = 0
    acc = mm.MOTAccumulator(auto_id=True)
    for frame in analysis.frames:
        people = truth.get(frame.frame + 1, [])
        counted = [p for p in people if p[2] >= MIN_VISIBLE]
        pairs, ignored = _match(people, frame.detections)
        hits += len(pairs)
        misses += len(counted) - len(pairs)
        false += len(frame.detections) - len(pairs) - len(ignored)
        tracked = np.array([b for _, b in frame.tracked], np.float32).reshape(-1, 4)
        t_pairs, t_ignored = _match(people, tracked)
        keep = [n for n in range(len(tracked)) if n not in t_ignored]
        distance = np.full((len(counted), len(keep)), np.nan)
        index = {id(p): n for n, p in enumerate(counted)}
        for r, c in t_pairs:
            if c in keep:
                distance[index[id(people[r])], keep.index(c)] = 0.0
        acc.update([p[0] for p in counted], [frame.tracked[n][0] for n in keep], distance)
    summary = mm.metrics.create().compute(acc, metrics=["idf1", "num_switches", "mota"], name="seq")
    return {
        "frames": analysis.sampled,
        "hits": hits,
        "misses": misses,
        "false_boxes": false,
        "idf1": float(summary["idf1"].iloc[0]),
        "id_switches": int(summary["num_switches"].iloc[0]),
        "mota": float(summary["mota"].iloc[0]),
        "tracks": len(analysis.tracks),
        "people": info["people"],
        "detect_seconds": analysis.seconds_detecting,
        "analysis_seconds": seconds,
    }


def combine(per_seq: list[dict[str, Any]]) -> dict[str, Any]:
    hits = sum(s["hits"] for s in per_seq)
    misses = sum(s["misses"] for s in per_seq)
    false = sum(s["false_boxes"] for s in per_seq)
    frames = sum(s["frames"] for s in per_seq)
    return {
        "recall": round(hits / max(1, hits + misses), 4),
        "precision": round(hits / max(1, hits + false), 4),
        # Frame-weighted over the sequences (motmetrics per sequence).
        "idf1": round(sum(s["idf1"] * s["frames"] for s in per_seq) / max(1, frames), 4),
        "id_switches": sum(s["id_switches"] for s in per_seq),
        "mota": round(sum(s["mota"] * s["frames"] for s in per_seq) / max(1, frames), 4),
        "tracks": sum(s["tracks"] for s in per_seq),
        "people": sum(s["people"] for s in per_seq),
        "frames": frames,
        "detector_fps": round(frames / max(1e-9, sum(s["detect_seconds"] for s in per_seq)), 2),
        "analysis_fps": round(frames / max(1e-9, sum(s["analysis_seconds"] for s in per_seq)), 2),
        "per_sequence": per_seq,
    }


def yolov8n_cost(seqs: list[Path], work: Path) -> dict[str, Any]:
    """Frames/s of the ONNX path with YOLOv8n-sized graphs of random weights: cost only."""
    from bench.yolov8n_graph import export_yolov8n

    out: dict[str, Any] = {}
    for size in (640, 320):
        print(f"measuring a YOLOv8n-sized graph at {size}", file=sys.stderr, flush=True)
        graph = export_yolov8n(work / f"yolov8n-{size}.onnx", size=size)
        runs = [evaluate(seq, f"onnx:{graph}") for seq in seqs]
        frames = sum(r["frames"] for r in runs)
        out[f"yolov8n-architecture-{size} (random weights: cost only)"] = {
            "frames": frames,
            "detector_fps": round(frames / sum(r["detect_seconds"] for r in runs), 2),
            "analysis_fps": round(frames / sum(r["analysis_seconds"] for r in runs), 2),
        }
    return out


def known_people_bundle(sequences: int, people: int, work: Path) -> Path:
    """The tiny model trained on every sequence's people (make_cast_bundle)."""
    import dataclasses

    from support.builders import make_cast_bundle
    from support.synthetic_footage import people_of

    cast = [p for n in range(sequences) for p in people_of(SEED + n, people)]
    cast = [dataclasses.replace(p, pid=i) for i, p in enumerate(cast, start=1)]
    return make_cast_bundle(cast, work, epochs=40)


def retrieval(seqs: list[Path], bundle_path: Path, detector: str, work: Path) -> dict[str, Any]:
    """Ingest every sequence with the footage job (default sampling), then query with each
    person's captions; a track is that person's when most of its crops' boxes are theirs."""
    from bundle.encoders import Bundle
    from footage.analysis import AnalysisOptions
    from footage.job import MANIFEST, FootageJob, ingest_recording
    from footage.spans import track_person_id
    from index.stores import create_store
    from support.synthetic_footage import read_truth, track_owner

    bundle = Bundle(bundle_path, device="cpu")
    work.mkdir(parents=True, exist_ok=True)
    store = create_store(work / "gallery", bundle.fingerprint, bundle.dim, use_gpu="never")
    owner: dict[str, str] = {}  # track person_id -> "SEQ/PERSON"
    all_tracks: list[str] = []
    queries: list[tuple[str, str]] = []  # (caption, "SEQ/PERSON")
    began = time.perf_counter()
    options = AnalysisOptions()
    for n, seq in enumerate(seqs):
        job = FootageJob(
            seq / "video.mp4", f"cam-{n}", 1_714_550_400.0 + 3600 * n, detector, options
        )
        report = ingest_recording(store, bundle, job, work / "crops", progress=False)
        all_tracks += [t["person_id"] for t in report.tracks]
        truth = read_truth(seq / "gt" / "gt.txt")
        saved = json.loads((work / "crops" / report.recording / MANIFEST).read_text())
        for track in saved["tracks"]:
            who = track_owner(truth, track["crops"], IOU)
            if who is not None:
                person = track_person_id(job.camera, report.recording, track["track"])
                owner[person] = f"{n}/{who}"
        people = json.loads((seq / "people.json").read_text())
        queries += [(c, f"{n}/{pid}") for pid, caps in people.items() for c in caps]
    ingest_seconds = time.perf_counter() - began
    vectors = bundle.encode_text([q for q, _ in queries])
    results = store.search(vectors, k=min(store.count(), 200))
    ranks = []
    for (_, who), hits in zip(queries, results, strict=True):
        tracks = list(dict.fromkeys(h.person_id for h in hits))
        found = [r for r, t in enumerate(tracks) if owner.get(t) == who]
        ranks.append(found[0] + 1 if found else None)
    store.close()
    own = Counter(owner.values())
    # A random ranking of the tracks puts one of the person's first with this probability.
    chance = sum(own[who] / max(1, len(all_tracks)) for _, who in queries) / len(queries)
    return {
        "queries": len(queries),
        "people": len({who for _, who in queries}),
        "tracks": len(all_tracks),
        "tracks_of_a_person": len(owner),
        "people_with_a_track": len(own),
        "r1": round(sum(r == 1 for r in ranks) / len(ranks), 4),
        "r5": round(sum(r is not None and r <= 5 for r in ranks) / len(ranks), 4),
        "chance_r1": round(chance, 4),
        "ingest_seconds": round(ingest_seconds, 2),
        "bundle": str(bundle_path),
        "bundle_fingerprint": bundle.fingerprint[:12],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.footage", description=__doc__)
    parser.add_argument("--out", type=Path, help="write OUT/footage.json too")
    parser.add_argument("--quick", action="store_true", help="one short sequence")
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=100, help="frames per sequence (10 fps)")
    parser.add_argument("--people", type=int, default=5, help="people per sequence")
    parser.add_argument(
        "--detector", action="append", default=[], help="onnx:FILE to measure besides hog"
    )
    parser.add_argument(
        "--yolov8n-cost",
        action="store_true",
        help="frames/s of a YOLOv8n-sized ONNX graph (random weights) at input 640 and 320",
    )
    parser.add_argument("--bundle", type=Path, help="a trained bundle: text → track retrieval")
    parser.add_argument(
        "--known-people",
        action="store_true",
        help="text → track retrieval with a model trained on the recordings' own people",
    )
    parser.add_argument("--data", type=Path, help="where the sequences are made (kept)")
    args = parser.parse_args(argv)
    n_seq, frames, people = (1, 40, 3) if args.quick else (args.sequences, args.frames, args.people)
    from support.synthetic_footage import make_footage

    with tempfile.TemporaryDirectory(prefix="bench-footage-") as tmp:
        data = args.data or Path(tmp) / "data"
        seqs = []
        for n in range(n_seq):
            tag = f"seq{n}-{frames}f-{people}p"
            print(f"making {tag}", file=sys.stderr, flush=True)
            seqs.append(make_footage(data / tag, people=people, frames=frames, seed=SEED + n))
        detectors = {}
        for spec in ["hog", *args.detector]:
            print(f"detecting and tracking with {spec}", file=sys.stderr, flush=True)
            detectors[spec] = combine([evaluate(seq, spec) for seq in seqs])
        if args.yolov8n_cost:
            detectors.update(yolov8n_cost(seqs, Path(tmp)))
        report: dict[str, Any] = {
            "bench": "footage",
            "cpu": detect().model,
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "sequences": n_seq,
            "frames_per_sequence": frames,
            "people_per_sequence": people,
            "frame_size": "640x360",
            "fps": 10,
            "detectors": detectors,
        }
        if args.bundle is not None:
            print("ingesting and searching", file=sys.stderr, flush=True)
            report["retrieval"] = retrieval(seqs, args.bundle, "hog", Path(tmp))
        else:
            report["retrieval"] = "needs a trained bundle: --bundle DIR"
        if args.known_people:
            print("training on the recordings' people", file=sys.stderr, flush=True)
            known = known_people_bundle(n_seq, people, Path(tmp) / "known")
            report["retrieval_known_people"] = retrieval(seqs, known, "hog", Path(tmp) / "k")
    text = json.dumps(report, indent=2)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "footage.json").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
