"""bench/footage.py's measures, checked against a detector that knows the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.footage import combine, evaluate
from support.synthetic_footage import read_truth


class Oracle:
    """Returns each frame's true boxes (every frame is analysed in order)."""

    name = "oracle"

    def __init__(self, seq: Path, drop_every: int = 0) -> None:
        self.truth = read_truth(seq / "gt" / "gt.txt")
        self.frame = 0
        self.drop_every = drop_every

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        self.frame += 1
        boxes = [b for _, b, v in self.truth.get(self.frame, []) if v >= 0.5]
        if self.drop_every and self.frame % self.drop_every == 0:
            boxes = boxes[1:]
        rows = [[*b, 0.9] for b in boxes] + [[0, 0, 20, 40, 0.9]]  # one false box a frame
        return np.array(rows, np.float32)


def test_the_truth_scores_full_marks_and_a_false_box_a_frame_costs_precision(
    tiny_footage: Path,
) -> None:
    figures = combine([evaluate(tiny_footage, Oracle(tiny_footage))])
    frames = figures["frames"]
    assert figures["recall"] == 1.0 and figures["id_switches"] == 0
    hits = figures["per_sequence"][0]["hits"]
    assert figures["precision"] == round(hits / (hits + frames), 4)
    # Each person is one track all along, and the false box one more track of no one:
    # IDF1 = 2 IDTP / (2 IDTP + IDFP + IDFN) with IDTP = hits, IDFP = frames, IDFN = 0.
    assert abs(figures["idf1"] - 2 * hits / (2 * hits + frames)) < 1e-3


def test_missed_boxes_lower_recall(tiny_footage: Path) -> None:
    figures = combine([evaluate(tiny_footage, Oracle(tiny_footage, drop_every=2))])
    seq = figures["per_sequence"][0]
    assert seq["misses"] > 0 and figures["recall"] == round(
        seq["hits"] / (seq["hits"] + seq["misses"]), 4
    )
    assert figures["recall"] < 1.0
