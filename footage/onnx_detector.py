"""A user's YOLO-family ONNX detector run by ONNX Runtime, with our own letterboxing and NMS.

The file must have the layout of an ultralytics YOLOv8/YOLO11 export (``yolo export
format=onnx``): one input ``[1, 3, H, W]`` float32 RGB scaled to 0-1 (H and W fixed, or dynamic
and then 640), and a first output ``[1, 4 + classes, N]``: per candidate the box centre x, y,
width and height in input pixels, then one score per class. Person is class 0 (COCO order). A
file of any other layout is refused when it is opened, before a frame is decoded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from footage.boxes import nms
from footage.errors import FootageError
from footage.letterbox import letterbox

DEFAULT_INPUT = 640
PERSON_CLASS = 0


class OnnxDetector:
    def __init__(
        self,
        path: Path,
        device: str = "cpu",
        min_score: float = 0.25,
        nms_iou: float = 0.45,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.name = f"onnx:{Path(path).name}"
        if not Path(path).is_file():
            raise FootageError(f"detector file {path}: no such file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options, providers=_providers(device))
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise FootageError(f"detector file {path}: not an ONNX model ({err})") from None
        self._input, self._size = _check_input(self._session, path)
        self._output = _check_output(self._session, path)
        self._min_score = min_score
        self._nms_iou = nms_iou

    @property
    def input_size(self) -> tuple[int, int]:
        return self._size

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        boxed, box = letterbox(rgb, self._size)
        tensor = (boxed.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        out = self._session.run([self._output], {self._input: np.ascontiguousarray(tensor)})[0]
        if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] < 5:
            raise FootageError(
                f"detector {self.name}: output of shape {list(out.shape)}, expected "
                "[1, 4+classes, N]"
            )
        return decode(out[0], box, rgb.shape[1], rgb.shape[0], self._min_score, self._nms_iou)


def _providers(device: str) -> list:
    """ONNX Runtime's providers for ``device`` as the bundle's graphs choose them, without
    TensorRT (an engine build per detector file is minutes for a few ms a frame)."""
    from bundle.format import BundleError
    from bundle.onnx_providers import TENSORRT, choose_providers

    try:
        providers, _ = choose_providers(device)
    except BundleError as err:
        raise FootageError(f"detector: {err}") from None
    return [p for p in providers if (p[0] if isinstance(p, tuple) else p) != TENSORRT]


def decode(
    raw: np.ndarray, box, width: int, height: int, min_score: float, nms_iou: float
) -> np.ndarray:
    """One image's raw output ``[4 + classes, N]`` → (M, 5) person boxes in frame pixels."""
    scores = raw[4 + PERSON_CLASS]
    keep = scores >= min_score
    if not keep.any():
        return np.zeros((0, 5), np.float32)
    cx, cy, w, h = raw[0][keep], raw[1][keep], raw[2][keep], raw[3][keep]
    boxes = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    boxes = box.to_frame(boxes, width, height)
    scores = scores[keep].astype(np.float32)
    sane = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores = boxes[sane], scores[sane]
    kept = nms(boxes, scores, nms_iou)
    return np.column_stack([boxes[kept], scores[kept]]).astype(np.float32)


def _check_input(session, path: Path) -> tuple[str, tuple[int, int]]:
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise FootageError(
            f"detector file {path}: {len(inputs)} inputs, expected one [1, 3, H, W] image"
        )
    spec = inputs[0]
    shape = list(spec.shape)
    if spec.type != "tensor(float)" or len(shape) != 4 or shape[1] != 3:
        raise FootageError(
            f"detector file {path}: input {spec.name!r} is {spec.type} {shape}, expected "
            "float32 [1, 3, H, W] (a YOLO-family export)"
        )
    if isinstance(shape[0], int) and shape[0] != 1:
        raise FootageError(f"detector file {path}: input batch is {shape[0]}, expected 1")
    h = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else DEFAULT_INPUT
    w = shape[3] if isinstance(shape[3], int) and shape[3] > 0 else DEFAULT_INPUT
    if h % 32 or w % 32:
        raise FootageError(f"detector file {path}: input {h}x{w} is not a multiple of 32")
    return spec.name, (h, w)


def _check_output(session, path: Path) -> str:
    spec = session.get_outputs()[0]
    shape = list(spec.shape)
    channels = shape[1] if len(shape) == 3 else None
    if (
        spec.type != "tensor(float)"
        or len(shape) != 3
        or not isinstance(channels, int)
        or channels < 5
    ):
        raise FootageError(
            f"detector file {path}: output {spec.name!r} is {spec.type} {shape}, expected "
            "float32 [1, 4+classes, N] (box centre x, y, width, height, then class scores)"
        )
    if isinstance(shape[2], int) and shape[2] < channels:
        raise FootageError(
            f"detector file {path}: output {shape} looks transposed ([1, N, 4+classes]); "
            "expected [1, 4+classes, N] as ultralytics exports it"
        )
    return spec.name
