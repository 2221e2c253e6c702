"""The YOLOv8n-sized cost graph: YOLOv8n's size and an export layout the ONNX detector takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.yolov8n_graph import export_yolov8n, parameter_count
from footage.onnx_detector import OnnxDetector


def test_the_graph_has_yolov8n_s_parameters() -> None:
    # ultralytics reports 3,157,200 for yolov8n.yaml with 80 classes; 16 of them are its fixed
    # DFL projection (0..15), a buffer here.
    assert parameter_count() == 3_157_200 - 16


def test_the_onnx_detector_opens_the_export_and_random_weights_find_no_one(
    tmp_path: Path,
) -> None:
    detector = OnnxDetector(export_yolov8n(tmp_path / "y.onnx", size=320))
    assert detector.input_size == (320, 320)
    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    assert detector.detect(frame).shape == (0, 5)
