"""INT8 text tower for CPU serving, accepted only when it ranks like the fp32 tower.

``onnxruntime.quantization.quantize_dynamic`` stores the text graph's weights as INT8 and
quantises activations per batch at run time: a smaller file and faster matrix products on a CPU,
at some cost in precision. Whether that cost matters is a question about rankings, so the
quantised graph is written into the bundle only if, over the given queries against the given
gallery vectors, its top-``k`` lists overlap the fp32 graph's by at least ``threshold`` on
average (``MIN_OVERLAP`` = 0.99: at k=10, at most one image in ten queries differs).
Otherwise :class:`Int8Rejected` reports the figure and nothing is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np

from bundle.encoders import Bundle
from bundle.format import BundleError, sha256_file
from bundle.fsio import temp_sibling
from bundle.onnx_files import GRAPH_FILES, verified_graph, write_record
from bundle.onnx_runtime import OnnxRuntime

log = logging.getLogger(__name__)

MIN_OVERLAP = 0.99
TOP_K = 10
BATCH = 32
# MatMul weights only, one scale per output channel: of the settings tried on the random-init
# ViT-B-16 and a trained tiny tower (README "Performance"), the one whose rankings came closest
# to fp32's; the token-embedding table (a Gather) stays fp32.
QUANTISE = {"per_channel": True, "op_types_to_quantize": ["MatMul"]}


class Int8Rejected(BundleError):
    """The INT8 text tower does not rank like the fp32 one: it was not written."""


def top_k_overlap(
    reference: np.ndarray, candidate: np.ndarray, gallery: np.ndarray, k: int
) -> float:
    """Mean |top-k(reference) ∩ top-k(candidate)| / k over the queries (rows), by inner product."""
    k = min(k, gallery.shape[0])
    if k == 0 or reference.shape[0] == 0:
        raise BundleError("the agreement check needs at least one query and one gallery vector")
    ref = np.argpartition(-(reference @ gallery.T), k - 1, axis=1)[:, :k]
    cand = np.argpartition(-(candidate @ gallery.T), k - 1, axis=1)[:, :k]
    shared = [len(set(a) & set(b)) for a, b in zip(ref.tolist(), cand.tolist(), strict=True)]
    return float(np.mean(shared)) / k


def _encode(runtime: OnnxRuntime, tokens: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([runtime.encode_tokens(t) for t in tokens])


def quantize_text(
    bundle: Bundle,
    queries: list[str],
    gallery: np.ndarray,
    threshold: float = MIN_OVERLAP,
    k: int = TOP_K,
) -> dict[str, Any]:
    """Quantise the bundle's ``text.onnx`` and keep it as ``text.int8.onnx`` if rankings agree.

    ``queries``: the check's captions; ``gallery``: normalised image vectors (the fp32 image
    tower's). Returns the check's figures (also recorded in bundle.json); raises
    :class:`Int8Rejected` below ``threshold``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    bundle_dir = bundle.path
    fp32_path, record = verified_graph(bundle_dir, bundle.meta, "text")
    tokens = [bundle.tokens(queries[i : i + BATCH]) for i in range(0, len(queries), BATCH)]
    final = bundle_dir / GRAPH_FILES["text_int8"]
    tmp = temp_sibling(final)
    try:
        _quiet_quantizer()
        quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8, **QUANTISE)
        reference = _encode(OnnxRuntime(fp32_path, None, record), tokens)
        candidate = _encode(OnnxRuntime(tmp, None, record, int8=True), tokens)
        overlap = top_k_overlap(reference, candidate, gallery, k)
        cosine = float(np.min(np.sum(reference * candidate, axis=1)))
        check = {
            "queries": int(reference.shape[0]),
            "gallery": int(gallery.shape[0]),
            "k": k,
            "top_k_overlap": round(overlap, 4),
            "min_overlap": threshold,
            "min_cosine_to_fp32": round(cosine, 5),
            "quantised": "MatMul weights, INT8 per output channel; activations per batch",
        }
        if overlap < threshold:
            raise Int8Rejected(
                f"INT8 text tower rejected: top-{k} overlap with fp32 {overlap:.4f} < "
                f"{threshold} over {check['queries']} queries × {check['gallery']} images "
                "(serve --runtime onnx instead)"
            )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    graphs = {**record.graphs, "text_int8": sha256_file(final)}
    extra = {**record.extra, "int8": check}
    write_record(bundle_dir, dataclasses.replace(record, graphs=graphs, extra=extra))
    log.info("INT8 text tower accepted: %s", check)
    return check


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quiet_quantizer() -> None:
    """The quantizer warns on the root logger to run its pre-processing; the agreement check is
    what decides here, so the hint is dropped (once)."""
    root = logging.getLogger()
    if not any(isinstance(f, _DropPreprocessHint) for f in root.filters):
        root.addFilter(_DropPreprocessHint())
