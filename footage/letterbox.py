"""Letterboxing as YOLO-family exports expect it: scale to fit, pad the rest with grey 114,
centred; and the inverse for boxes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    scale: float
    pad_x: float
    pad_y: float

    def to_frame(self, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
        """x1 y1 x2 y2 in the network's input → in the original frame, clipped to it."""
        out = boxes.astype(np.float32).copy()
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
        return out


def letterbox(rgb: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """``rgb`` (H, W, 3) fitted into ``size`` (height, width)."""
    height, width = size
    h, w = rgb.shape[:2]
    scale = min(height / h, width / w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (width - new_w) / 2, (height - new_h) / 2
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    left, top = round(pad_x - 0.1), round(pad_y - 0.1)
    canvas[top : top + new_h, left : left + new_w] = resized
    return canvas, Letterbox(scale, float(left), float(top))
