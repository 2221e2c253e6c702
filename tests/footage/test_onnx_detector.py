from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from footage.detectors import make_detector
from footage.errors import FootageError
from tests.footage.onnx_graphs import constant_detector


def _column(cx: float, cy: float, w: float, h: float, person: float, other: float) -> list:
    return [cx, cy, w, h, person, other]


def test_boxes_come_back_in_frame_pixels_after_letterbox_and_nms(tmp_path: Path) -> None:
    # A 400x200 frame fits a 320x320 input at scale 0.8, 320x160, with 80 px of grey above.
    # The frame box (100, 50)-(200, 150) is (80, 120)-(160, 200) in the input.
    candidates = np.array(
        [
            _column(120, 160, 80, 80, 0.9, 0.0),  # the person
            _column(122, 161, 80, 80, 0.6, 0.0),  # the same person again, weaker: NMS drops it
            _column(280, 160, 40, 60, 0.1, 0.0),  # below the score threshold
            _column(40, 140, 30, 30, 0.05, 0.95),  # another class (a car)
            _column(200, 150, 32, 64, 0.7, 0.0),  # a second person: (230, 47.5)-(270, 127.5)
        ],
        np.float32,
    ).T
    detector = make_detector(f"onnx:{constant_detector(tmp_path / 'yolo.onnx', candidates)}")
    found = detector.detect(np.zeros((200, 400, 3), np.uint8))
    assert found.shape == (2, 5)
    np.testing.assert_allclose(found[0], [100, 50, 200, 150, 0.9], atol=1e-4)
    np.testing.assert_allclose(found[1], [230, 47.5, 270, 127.5, 0.7], atol=1e-4)


def test_dynamic_input_size_means_640(tmp_path: Path) -> None:
    candidates = np.array([_column(320, 320, 64, 128, 0.8, 0.1)], np.float32).T
    path = constant_detector(tmp_path / "d.onnx", candidates, ("batch", 3, "height", "width"))
    found = make_detector(f"onnx:{path}").detect(np.zeros((640, 640, 3), np.uint8))
    np.testing.assert_allclose(found[0, :4], [288, 256, 352, 384], atol=1e-4)


@pytest.mark.parametrize(
    ("shape", "transpose", "says"),
    [
        ((1, 3, 320, 320), True, "transposed"),
        ((1, 320, 320), False, r"expected float32 \[1, 3, H, W\]"),
        ((1, 1, 320, 320), False, r"expected float32 \[1, 3, H, W\]"),
        ((1, 3, 300, 300), False, "multiple of 32"),
    ],
)
def test_a_file_of_another_layout_is_refused(
    tmp_path: Path, shape: tuple, transpose: bool, says: str
) -> None:
    candidates = np.ones((6, 100), np.float32)
    path = constant_detector(tmp_path / "x.onnx", candidates, shape, transpose)
    with pytest.raises(FootageError, match=says):
        make_detector(f"onnx:{path}")


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(FootageError, match="not an ONNX model"):
        make_detector(f"onnx:{path}")
    with pytest.raises(FootageError, match="unknown detector"):
        make_detector("yolo")


def _cuda_ready() -> bool:
    import onnxruntime as ort
    import torch

    return torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.skipif(_cuda_ready(), reason="this machine can run the detector on CUDA")
def test_cuda_asked_for_where_it_cannot_run_is_one_error(tmp_path: Path) -> None:
    candidates = np.array([_column(320, 320, 64, 128, 0.8, 0.1)], np.float32).T
    path = constant_detector(tmp_path / "d.onnx", candidates)
    with pytest.raises(FootageError, match="--device cuda was asked for"):
        make_detector(f"onnx:{path}", device="cuda")
    assert make_detector(f"onnx:{path}", device="auto").detect(np.zeros((64, 64, 3), np.uint8)).size


@pytest.mark.skipif(not _cuda_ready(), reason="GPU only: needs CUDA and onnxruntime-gpu")
def test_the_detector_runs_on_cuda_with_the_cpu_s_boxes(tmp_path: Path) -> None:
    from bench.yolov8n_graph import export_yolov8n

    path = export_yolov8n(tmp_path / "y.onnx", size=320)
    images = np.random.default_rng(0).random((1, 3, 320, 320), dtype=np.float32)
    gpu, cpu = make_detector(f"onnx:{path}", "cuda"), make_detector(f"onnx:{path}", "cpu")
    assert "CUDAExecutionProvider" in gpu._session.get_providers()
    # The raw candidates (random weights find no one, so compare what NMS would see).
    on_gpu, on_cpu = (d._session.run(None, {"images": images})[0] for d in (gpu, cpu))
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-2, atol=1e-2)
