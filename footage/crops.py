"""Choosing a track's best crops: large, sharp (variance of the Laplacian), not cut by the
frame's edge; at most a few per track, kept as the frames go by."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# A box this close to the frame's edge is taken as cut by it.
EDGE_MARGIN = 2.0
# Context kept around a box, as a fraction of its size on each side.
CONTEXT = 0.05


@dataclass(frozen=True)
class Crop:
    frame: int  # index among the decoded frames
    time: float  # seconds from the recording's start
    box: tuple[float, float, float, float]  # x1 y1 x2 y2 in the frame
    quality: float
    cut: bool  # touches the frame's edge
    rgb: np.ndarray


def sharpness(rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def cut_out(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    dx, dy = (x2 - x1) * CONTEXT, (y2 - y1) * CONTEXT
    left, top = max(0, int(x1 - dx)), max(0, int(y1 - dy))
    right, bottom = min(w, math.ceil(x2 + dx)), min(h, math.ceil(y2 + dy))
    return np.ascontiguousarray(rgb[top:bottom, left:right])


def make_crop(rgb: np.ndarray, box: np.ndarray, frame: int, time: float) -> Crop | None:
    pixels = cut_out(rgb, box)
    if pixels.shape[0] < 8 or pixels.shape[1] < 4:
        return None
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    cut = x1 <= EDGE_MARGIN or y1 <= EDGE_MARGIN or x2 >= w - EDGE_MARGIN or y2 >= h - EDGE_MARGIN
    # Size counts more than sharpness: a sharp tiny crop still says little about a person.
    quality = math.sqrt(pixels.shape[0] * pixels.shape[1]) * math.log1p(sharpness(pixels))
    return Crop(frame, time, (x1, y1, x2, y2), quality, cut, pixels)


class BestCrops:
    """The ``keep`` best crops of one track so far; crops cut by the edge only when the track
    has too few others."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._whole: list[Crop] = []
        self._cut: list[Crop] = []

    def offer(self, crop: Crop) -> None:
        pool = self._cut if crop.cut else self._whole
        pool.append(crop)
        pool.sort(key=lambda c: (-c.quality, c.frame))
        del pool[self.keep :]

    def best(self) -> list[Crop]:
        chosen = (self._whole + self._cut)[: self.keep]
        return sorted(chosen, key=lambda c: c.frame)
