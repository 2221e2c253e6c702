"""ByteTrack (Zhang et al., 2022): tracking by associating every detection box, the confident
ones first and then the weak ones, to tracks predicted forward by their motion.

No tracker library fits the product's environment: supervision 0.31 moved ByteTrack to the
`trackers` package, which needs the GUI OpenCV build (opencv-python, libGL) beside the headless
one, and norfair pins numpy below 2. So the algorithm is kept here, small: IoU association by
the Hungarian method (scipy), a constant-velocity prediction in place of the Kalman filter, and
a buffer of frames a lost track survives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from footage.boxes import iou_matrix


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # x1 y1 x2 y2 at its last match
    velocity: np.ndarray  # per step
    last_step: int
    hits: int = 1

    def predicted(self, step: int) -> np.ndarray:
        return self.box + self.velocity * (step - self.last_step)

    def update(self, box: np.ndarray, step: int) -> None:
        gap = max(1, step - self.last_step)
        self.velocity = 0.6 * self.velocity + 0.4 * (box - self.box) / gap
        self.box = box
        self.last_step = step
        self.hits += 1


@dataclass(frozen=True)
class TrackedBox:
    track_id: int
    box: np.ndarray  # x1 y1 x2 y2
    score: float


class ByteTracker:
    def __init__(
        self,
        high_score: float = 0.5,
        match_iou: float = 0.2,
        low_match_iou: float = 0.5,
        lost_steps: int = 10,
    ) -> None:
        self.high_score = high_score
        self.match_iou = match_iou
        self.low_match_iou = low_match_iou
        self.lost_steps = lost_steps
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._step = -1

    def holds(self, track_id: int) -> bool:
        """Whether the track may still be continued (it is not lost for good)."""
        return any(t.track_id == track_id for t in self._tracks)

    def update(self, detections: np.ndarray) -> list[TrackedBox]:
        """One sampled frame's (N, 5) detections → the boxes matched or started this step."""
        self._step += 1
        step = self._step
        detections = np.asarray(detections, np.float32).reshape(-1, 5)
        high = np.flatnonzero(detections[:, 4] >= self.high_score)
        low = np.flatnonzero(detections[:, 4] < self.high_score)
        out: list[TrackedBox] = []

        pairs, free_tracks, free_high = self._match(self._tracks, detections, high, self.match_iou)
        for track, d in pairs:
            track.update(detections[d, :4], step)
            out.append(TrackedBox(track.track_id, detections[d, :4], float(detections[d, 4])))
        # The weak boxes only continue tracks seen in the previous step (not lost ones): a
        # weak box is often an occluded person, rarely a new one.
        recent = [t for t in free_tracks if t.last_step == step - 1]
        pairs, _, _ = self._match(recent, detections, low, self.low_match_iou)
        for track, d in pairs:
            track.update(detections[d, :4], step)
            out.append(TrackedBox(track.track_id, detections[d, :4], float(detections[d, 4])))
        for d in free_high:
            track = _Track(self._next_id, detections[d, :4], np.zeros(4, np.float32), step)
            self._next_id += 1
            self._tracks.append(track)
            out.append(TrackedBox(track.track_id, detections[d, :4], float(detections[d, 4])))
        self._tracks = [t for t in self._tracks if step - t.last_step <= self.lost_steps]
        return out

    def _match(
        self, tracks: list[_Track], detections: np.ndarray, rows: np.ndarray, min_iou: float
    ) -> tuple[list[tuple[_Track, int]], list[_Track], list[int]]:
        if not tracks or not len(rows):
            return [], list(tracks), [int(r) for r in rows]
        predicted = np.stack([t.predicted(self._step) for t in tracks])
        iou = iou_matrix(predicted, detections[rows, :4])
        ti, di = linear_sum_assignment(-iou)
        pairs = [
            (tracks[t], int(rows[d])) for t, d in zip(ti, di, strict=True) if iou[t, d] >= min_iou
        ]
        matched_t = {id(t) for t, _ in pairs}
        matched_d = {d for _, d in pairs}
        return (
            pairs,
            [t for t in tracks if id(t) not in matched_t],
            [int(r) for r in rows if int(r) not in matched_d],
        )
