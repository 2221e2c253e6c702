"""The INT8 text tower: written only when its top-10 rankings agree with fp32's and a caption's
vector does not depend on the batch it is encoded in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import bundle.int8 as int8_module
from bundle.encoders import Bundle
from bundle.format import META_FILE, BundleError, read_meta, sha256_file
from bundle.int8 import (
    CHECK_BATCHES,
    MAX_BATCH_DEVIATION,
    Int8Rejected,
    quantize_text,
    top_k_overlap,
)
from bundle.onnx_files import read_record

# Lengths from 8 to about 40 tokens, so batches pad their shorter captions.
QUERIES = [
    f"a {size} person in a {colour} {thing}" + ", carrying a bag and walking fast" * (n % 3)
    for n, (size, colour, thing) in enumerate(
        (size, colour, thing)
        for size in ("tall", "short")
        for colour in ("red", "blue", "black", "white")
        for thing in ("coat", "shirt", "dress")
    )
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


def _batch_deviation(bundle: Bundle, batch: int) -> float:
    """Largest |alone − in a batch of ``batch``| over the queries' vector components."""
    alone = np.concatenate([bundle.encode_text([q]) for q in QUERIES])
    batched = np.concatenate(
        [bundle.encode_text(QUERIES[i : i + batch]) for i in range(0, len(QUERIES), batch)]
    )
    return float(np.max(np.abs(alone - batched)))


def test_an_agreeing_int8_tower_is_recorded_and_served(copy: Path) -> None:
    fp32 = Bundle(copy, runtime="onnx")
    check = quantize_text(fp32, QUERIES, _gallery(fp32), threshold=0.5)
    assert check["top_k_overlap"] >= 0.5 and check["queries"] == len(QUERIES)
    assert check["batch_sizes"] == list(CHECK_BATCHES) and check["batch_invariant"] is True
    assert set(check["per_batch"]) == {str(b) for b in CHECK_BATCHES}
    record = read_record(read_meta(copy))
    assert record is not None
    assert record.graphs["text_int8"] == sha256_file(copy / "text.int8.onnx")
    assert record.extra["int8"]["min_overlap"] == 0.5
    int8 = Bundle(copy, runtime="onnx-int8")
    vectors = int8.encode_text(QUERIES[:3])
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, 1e-5)
    assert np.min(np.sum(vectors * fp32.encode_text(QUERIES[:3]), axis=1)) > 0.9
    # As served: each caption alone equals itself inside batches of 8 and 32 of captions of
    # other lengths (MAX_BATCH_DEVIATION says why that bound).
    assert len({int8.tokens([q]).shape[1] for q in QUERIES}) > 2  # batches do pad
    for batch in (8, 32):
        assert _batch_deviation(int8, batch) <= MAX_BATCH_DEVIATION
    with pytest.raises(BundleError, match="onnx-int8 is for CPU serving"):
        Bundle(copy, runtime="onnx-int8", device="cuda")
    # A bundle exported before INT8 was batch-invariant records no such claim: not served.
    meta = json.loads((copy / META_FILE).read_text())
    del meta["onnx"]["int8"]["batch_invariant"]
    (copy / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match=r"quantises activations per batch.*--onnx-int8"):
        Bundle(copy, runtime="onnx-int8")


def test_per_batch_activation_scales_are_caught_and_refused(
    copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check itself: dynamic quantisation with one activation scale per batch (what the
    bound must tell apart) moves captions between batches far beyond it, and is not written."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def per_batch_scales(fp32_path: Path, out: Path) -> None:
        quantize_dynamic(str(fp32_path), str(out), weight_type=QuantType.QInt8, per_channel=True)

    monkeypatch.setattr(int8_module, "quantise_graph", per_batch_scales)
    fp32 = Bundle(copy, runtime="onnx")
    with pytest.raises(Int8Rejected, match="depends on its batch") as refused:
        quantize_text(fp32, QUERIES, _gallery(fp32), threshold=0.0, batch_sizes=(1, 8))
    assert "max deviation" in str(refused.value)
    assert not (copy / "text.int8.onnx").exists()


def test_a_disagreeing_int8_tower_is_not_written(copy: Path) -> None:
    fp32 = Bundle(copy, runtime="onnx")
    with pytest.raises(Int8Rejected, match=r"top-10 overlap with fp32 .* < 1.01 at batch size"):
        quantize_text(fp32, QUERIES, _gallery(fp32), threshold=1.01)
    assert not (copy / "text.int8.onnx").exists()
    assert not list(copy.glob(".text.int8.onnx.*"))
    record = read_record(read_meta(copy))
    assert record is not None and "text_int8" not in record.graphs
    with pytest.raises(BundleError, match="at least 1"):
        quantize_text(fp32, QUERIES, _gallery(fp32), batch_sizes=(0, 8))
