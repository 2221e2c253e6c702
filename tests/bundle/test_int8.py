"""The INT8 text tower: written only when its top-10 rankings agree with fp32's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bundle.encoders import Bundle
from bundle.format import BundleError, read_meta, sha256_file
from bundle.int8 import Int8Rejected, quantize_text, top_k_overlap
from bundle.onnx_files import read_record

QUERIES = [
    f"a {size} person in a {colour} {thing}"
    for size in ("tall", "short")
    for colour in ("red", "blue", "black", "white")
    for thing in ("coat", "shirt", "dress")
]


def test_top_k_overlap_counts_shared_results() -> None:
    gallery = np.eye(4, dtype=np.float32)
    a = np.array([[4, 3, 2, 1]], np.float32)
    assert top_k_overlap(a, a, gallery, k=2) == 1.0
    assert top_k_overlap(a, np.array([[4, 1, 2, 3]], np.float32), gallery, k=2) == 0.5
    assert top_k_overlap(a, a, gallery, k=10) == 1.0  # k beyond the gallery: all of it
    with pytest.raises(BundleError):
        top_k_overlap(a[:0], a[:0], gallery, k=2)


@pytest.fixture
def copy(onnx_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "b"
    shutil.copytree(onnx_bundle, out)
    return out


def _gallery(bundle: Bundle, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((n, 3, *bundle.meta.image_size)).astype(np.float32)
    import torch

    return bundle.encode_images(torch.from_numpy(images))


def test_an_agreeing_int8_tower_is_recorded_and_served(copy: Path) -> None:
    fp32 = Bundle(copy, runtime="onnx")
    check = quantize_text(fp32, QUERIES, _gallery(fp32), threshold=0.5)
    assert check["top_k_overlap"] >= 0.5 and check["queries"] == len(QUERIES)
    record = read_record(read_meta(copy))
    assert record is not None
    assert record.graphs["text_int8"] == sha256_file(copy / "text.int8.onnx")
    assert record.extra["int8"]["min_overlap"] == 0.5
    int8 = Bundle(copy, runtime="onnx-int8")
    vectors = int8.encode_text(QUERIES[:3])
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, 1e-5)
    assert np.min(np.sum(vectors * fp32.encode_text(QUERIES[:3]), axis=1)) > 0.9
    with pytest.raises(BundleError, match="onnx-int8 is for CPU serving"):
        Bundle(copy, runtime="onnx-int8", device="cuda")


def test_a_disagreeing_int8_tower_is_not_written(copy: Path) -> None:
    fp32 = Bundle(copy, runtime="onnx")
    with pytest.raises(Int8Rejected, match=r"top-10 overlap with fp32 .* < 1.01"):
        quantize_text(fp32, QUERIES, _gallery(fp32), threshold=1.01)
    assert not (copy / "text.int8.onnx").exists()
    assert not list(copy.glob(".text.int8.onnx.*"))
    record = read_record(read_meta(copy))
    assert record is not None and "text_int8" not in record.graphs
