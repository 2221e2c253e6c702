"""Person detectors behind one interface, chosen by a spec: ``hog`` (OpenCV's built-in
pedestrian detector, nothing to download) or ``onnx:FILE`` (a YOLO-family ONNX export)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from footage.errors import FootageError

DETECTOR_HELP = (
    "hog (OpenCV's built-in pedestrian detector) or onnx:FILE (a YOLO-family ONNX export: "
    "input [1,3,H,W], output [1,4+classes,N], person = class 0)"
)


class Detector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """People in one (H, W, 3) uint8 RGB frame: (N, 5) float32 rows of x1 y1 x2 y2 score,
        in the frame's pixels."""
        ...


def make_detector(spec: str, device: str = "cpu") -> Detector:
    """The detector a ``--detector`` value names, an ONNX one on ``device`` (auto|cpu|cuda);
    FootageError for an unknown name or a file of the wrong layout."""
    if spec == "hog":
        from footage.hog import HogDetector

        return HogDetector()
    kind, sep, rest = spec.partition(":")
    if kind == "onnx" and sep and rest:
        from footage.onnx_detector import OnnxDetector

        return OnnxDetector(Path(rest), device)
    raise FootageError(f"unknown detector {spec!r}: use {DETECTOR_HELP}")
