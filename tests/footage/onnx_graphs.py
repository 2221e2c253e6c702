"""Stand-in detector graphs with the layout of an ultralytics YOLOv8 export: input
images [1, 3, H, W], output [1, 4 + classes, N] of box centre, size and class scores. The
output is fixed (it still reads the input, as a real network does), so the decoding of the
boxes can be checked exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def constant_detector(
    path: Path,
    candidates: np.ndarray,
    input_shape: tuple = (1, 3, 320, 320),
    transpose: bool = False,
) -> Path:
    """``candidates`` (4 + classes, N): what the graph outputs for any image, padded with
    empty candidates to 64 (a real export has thousands: N is far above 4 + classes)."""
    padding = np.zeros((candidates.shape[0], max(0, 64 - candidates.shape[1])), np.float32)
    raw = np.concatenate([candidates.astype(np.float32), padding], axis=1)[None]
    if transpose:
        raw = raw.transpose(0, 2, 1)
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "stand_in_yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))],
        [
            numpy_helper.from_array(raw, "raw"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path
