"""OpenCV's HOG + linear SVM pedestrian detector (Dalal & Triggs), shipped inside OpenCV 4.x.

Its window is 64x128, and a box is given as the person within it: people smaller than about
100 px tall are found only after the frame is enlarged (``upscale``), which costs time in
proportion to the area.
"""

from __future__ import annotations

import cv2
import numpy as np

from footage.boxes import nms

# The 64x128 detection window holds the person with about 16 px of margin on every side
# (Dalal & Triggs): the person is its central 32x96.
_MARGIN_X, _MARGIN_Y = 16 / 64, 16 / 128
# SVM margins below this are mostly background; HOG has no calibrated score.
_MIN_WEIGHT = 0.3
_NMS_IOU = 0.45


class HogDetector:
    name = "hog"

    def __init__(self, upscale: float = 1.0, win_stride: int = 8, scale: float = 1.05) -> None:
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self._upscale = upscale
        self._stride = (win_stride, win_stride)
        self._scale = scale

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if self._upscale != 1.0:
            grey = cv2.resize(grey, None, fx=self._upscale, fy=self._upscale)
        rects, weights = self._hog.detectMultiScale(
            grey, winStride=self._stride, padding=(8, 8), scale=self._scale
        )
        if len(rects) == 0:
            return np.zeros((0, 5), np.float32)
        rects = np.asarray(rects, np.float32) / self._upscale
        rects[:, 0] += rects[:, 2] * _MARGIN_X
        rects[:, 1] += rects[:, 3] * _MARGIN_Y
        rects[:, 2] *= 1 - 2 * _MARGIN_X
        rects[:, 3] *= 1 - 2 * _MARGIN_Y
        scores = np.asarray(weights, np.float32).reshape(-1)
        boxes = np.column_stack([rects[:, :2], rects[:, :2] + rects[:, 2:4], scores])
        boxes = boxes[scores >= _MIN_WEIGHT]
        return boxes[nms(boxes[:, :4], boxes[:, 4], _NMS_IOU)].astype(np.float32)
