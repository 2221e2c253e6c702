"""A recording → its tracks: decode at the sampling rate, detect, track, keep the best crops.

Nothing is written here; the whole recording is read first, so a damaged one is refused before
anything changes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from footage.crops import BestCrops, Crop, make_crop
from footage.detectors import Detector
from footage.tracker import ByteTracker
from footage.video import DEFAULT_MAX_PIXELS, Frame, probe, sampled_frames


@dataclass(frozen=True)
class AnalysisOptions:
    sample_fps: float = 5.0
    crops_per_track: int = 3
    # Tracks seen in fewer sampled frames are dropped: mostly false detections.
    min_track_frames: int = 3
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Track:
    number: int  # 1, 2, ... in order of first appearance
    first_time: float  # seconds from the recording's start
    last_time: float
    frames: int  # sampled frames it was seen in
    crops: list[Crop]


@dataclass
class FrameBoxes:
    """What was found in one sampled frame (for measuring detection and tracking)."""

    frame: int
    time: float
    detections: np.ndarray  # (N, 5)
    tracked: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (track number, box)


@dataclass(frozen=True)
class Analysis:
    tracks: list[Track]
    frames: list[FrameBoxes]
    sampled: int
    seconds_detecting: float


class TrackBuilder:
    """Successive sampled frames and their detections → tracks with their best crops. A track
    is finished once the tracker has let it go (lost for longer than it waits)."""

    def __init__(self, options: AnalysisOptions) -> None:
        self.options = options
        self.tracker = ByteTracker()
        self._best: dict[int, BestCrops] = {}
        self._spans: dict[int, list[float]] = {}  # raw id -> [first, last, frames]

    def add(self, frame: Frame, found: np.ndarray) -> FrameBoxes:
        boxes = FrameBoxes(frame.index, frame.time, found)
        for tracked in self.tracker.update(found):
            boxes.tracked.append((tracked.track_id, tracked.box))
            span = self._spans.setdefault(tracked.track_id, [frame.time, frame.time, 0])
            span[1] = frame.time
            span[2] += 1
            crop = make_crop(frame.rgb, tracked.box, frame.index, frame.time)
            if crop is not None:
                self._best.setdefault(tracked.track_id, BestCrops(self.options.crops_per_track))
                self._best[tracked.track_id].offer(crop)
        return boxes

    def take_finished(self) -> list[tuple[int, Track]]:
        """(raw id, track) of the tracks finished since the last call, numbered 0; a track
        seen in too few frames (mostly a false detection) is dropped."""
        return self._take([i for i in sorted(self._spans) if not self.tracker.holds(i)])

    def take_all(self) -> list[tuple[int, Track]]:
        """Every track not taken yet, finished or not (the end of the frames)."""
        return self._take(sorted(self._spans))

    def _take(self, ids: list[int]) -> list[tuple[int, Track]]:
        out = []
        for i in ids:
            first, last, frames = self._spans.pop(i)
            best = self._best.pop(i, None)
            if frames >= self.options.min_track_frames and best is not None:
                out.append((i, Track(0, first, last, int(frames), best.best())))
        return out


def analyse(
    path: Path,
    detector: Detector,
    options: AnalysisOptions = AnalysisOptions(),
    progress: bool = True,
    on_frame: Callable[[int, int], None] | None = None,
) -> Analysis:
    """``on_frame(sampled so far, expected)`` is called after each sampled frame."""
    info = probe(path, options.max_pixels)
    expected = _expected_samples(info.declared_frames, info.fps, options.sample_fps)
    builder = TrackBuilder(options)
    frames: list[FrameBoxes] = []
    detecting = 0.0
    with tqdm(total=expected or None, unit="frame", desc="detecting", disable=not progress) as bar:
        for frame in sampled_frames(path, options.sample_fps, options.max_pixels):
            began = time.perf_counter()
            found = detector.detect(frame.rgb)
            detecting += time.perf_counter() - began
            frames.append(builder.add(frame, found))
            bar.update(1)
            if on_frame is not None:
                on_frame(len(frames), max(expected, len(frames)))
    # Numbered in order of first appearance.
    kept = builder.take_all()
    number = {raw: n for n, (raw, _) in enumerate(kept, start=1)}
    tracks = [dataclasses.replace(track, number=number[raw]) for raw, track in kept]
    for boxes in frames:
        boxes.tracked = [(number[i], b) for i, b in boxes.tracked if i in number]
    return Analysis(tracks, frames, len(frames), detecting)


def _expected_samples(declared: int, fps: float, sample_fps: float) -> int:
    if declared <= 0 or fps <= 0:
        return 0
    return int(declared / fps * min(sample_fps, fps)) + 1
