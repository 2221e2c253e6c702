from __future__ import annotations

import numpy as np

from footage.boxes import iou_matrix, nms


def test_iou_of_known_boxes() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [50 / 150, 0.0, 1.0], rtol=1e-6)


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    kept = nms(boxes, np.array([0.6, 0.9, 0.5]), 0.45)
    assert kept.tolist() == [1, 2]
