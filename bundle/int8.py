"""INT8 text tower for CPU serving, accepted only when it ranks like the fp32 tower and a query's
vector does not depend on the other queries in its batch.

A query is encoded alone or inside one of the service's micro-batches, depending on what else
arrived in the same few milliseconds; its vector must be the same either way. Dynamic
quantisation with one activation scale per tensor (``quantize_dynamic``) fails that: the scale
of a batch comes from its largest activation, so the same caption alone and among 7 others came
out up to 0.01 apart. The graph here uses ONNX Runtime's ``MatMulNBits`` instead: every MatMul
weight as 8-bit integers with one scale per 32 input values of each output column, and at run
time each token's activations quantised to INT8 with their own scale per block of 32
(``accuracy_level`` 4). A token's scale comes from its own values only, and under the causal
mask its values come from its own caption only, so neither the other rows of a batch nor the
padding to the batch's longest caption reach its vector.

The quantised graph is written into the bundle only if, over the check captions against the
check gallery vectors, (1) encoding each caption alone and in batches of every size in
``batch_sizes`` gives the same vectors (within ``MAX_BATCH_DEVIATION``), and (2) at every one of
those sizes its top-``k`` lists overlap the fp32 graph's by at least ``threshold`` on average
(``MIN_OVERLAP`` = 0.99: at k=10, at most one image in ten queries differs). Otherwise
:class:`Int8Rejected` reports the figures and nothing is written.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
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
# The batch sizes the service encodes queries at: one query alone, a full micro-batch
# (TPS_BATCH_MAX_SIZE, 8 by default) and the largest batch request (TPS_MAX_BATCH_QUERIES, 64);
# tests/service/test_settings.py keeps them equal to the service's defaults.
CHECK_BATCHES = (1, 8, 64)
# Per-token quantisation is the same integer arithmetic on the same values alone or in a batch,
# so a caption's vector could differ only by float re-association in the fp32 operators around
# it (measured: not at all, on an AMD EPYC). Per-batch scales moved vectors by up to 1e-2, so
# 1e-6 tells batch-dependent quantisation apart from float rounding.
MAX_BATCH_DEVIATION = 1e-6
BLOCK = 32
QUANTISED = (
    f"MatMulNBits: MatMul weights INT8, one scale per {BLOCK} inputs of each output column; "
    f"activations INT8 per token, one scale per {BLOCK} values (batch-invariant)"
)


class Int8Rejected(BundleError):
    """The INT8 text tower does not rank like the fp32 one, or depends on its batch: it was
    not written."""


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


def encode_in_batches(
    bundle: Bundle, runtime: OnnxRuntime, queries: Sequence[str], batch: int
) -> np.ndarray:
    """The queries' vectors encoded ``batch`` at a time, each batch tokenised and trimmed to its
    longest caption as the service does."""
    parts = [
        runtime.encode_tokens(bundle.tokens(list(queries[i : i + batch])))
        for i in range(0, len(queries), batch)
    ]
    return np.concatenate(parts)


def quantise_graph(fp32_path: Path, out: Path) -> None:
    """Write the batch-invariant INT8 version of the text graph ``fp32_path`` to ``out``."""
    import onnx

    quantizer_type, config_type = _nbits_quantizer()
    config = config_type(block_size=BLOCK, is_symmetric=True, accuracy_level=4, bits=8)
    quantizer = quantizer_type(onnx.load(str(fp32_path)), algo_config=config)
    quantizer.process()
    quantizer.model.save_model_to_file(str(out), use_external_data_format=False)


def quantize_text(
    bundle: Bundle,
    queries: list[str],
    gallery: np.ndarray,
    threshold: float = MIN_OVERLAP,
    k: int = TOP_K,
    batch_sizes: Sequence[int] = CHECK_BATCHES,
) -> dict[str, Any]:
    """Quantise the bundle's ``text.onnx`` and keep it as ``text.int8.onnx`` if it passes.

    ``queries``: the check's captions; ``gallery``: normalised image vectors (the fp32 image
    tower's); ``batch_sizes``: the sizes queries are encoded at when served. Returns the check's
    figures (also recorded in bundle.json); raises :class:`Int8Rejected` when a caption's vector
    depends on its batch or the overlap at some batch size is below ``threshold``.
    """
    sizes = sorted({int(b) for b in batch_sizes})
    if not sizes or sizes[0] < 1:
        raise BundleError(f"the INT8 check's batch sizes must be at least 1, got {batch_sizes}")
    bundle_dir = bundle.path
    fp32_path, record = verified_graph(bundle_dir, bundle.meta, "text")
    final = bundle_dir / GRAPH_FILES["text_int8"]
    tmp = temp_sibling(final)
    try:
        quantise_graph(fp32_path, tmp)
        fp32 = OnnxRuntime(fp32_path, None, record)
        int8 = OnnxRuntime(tmp, None, record, int8=True)
        reference = encode_in_batches(bundle, fp32, queries, sizes[-1])
        vectors = {b: encode_in_batches(bundle, int8, queries, b) for b in sizes}
        check = _figures(reference, vectors, gallery, k, threshold)
        _accept_or_refuse(check, threshold, k)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    graphs = {**record.graphs, "text_int8": sha256_file(final)}
    extra = {**record.extra, "int8": check}
    write_record(bundle_dir, dataclasses.replace(record, graphs=graphs, extra=extra))
    log.info("INT8 text tower accepted: %s", check)
    return check


def _figures(
    reference: np.ndarray,
    vectors: dict[int, np.ndarray],
    gallery: np.ndarray,
    k: int,
    threshold: float,
) -> dict[str, Any]:
    """The check's record: overlap and cosine to fp32 per batch size, and how far any caption's
    vector moved between being encoded alone (the smallest size) and in a batch."""
    alone = vectors[min(vectors)]
    per_batch = {
        str(b): {
            "top_k_overlap": round(top_k_overlap(reference, v, gallery, k), 4),
            "min_cosine_to_fp32": round(float(np.min(np.sum(reference * v, axis=1))), 5),
            "max_deviation_from_alone": float(np.max(np.abs(v - alone))),
        }
        for b, v in vectors.items()
    }
    deviation = max(row["max_deviation_from_alone"] for row in per_batch.values())
    return {
        "queries": int(reference.shape[0]),
        "gallery": int(gallery.shape[0]),
        "k": k,
        "batch_sizes": sorted(vectors),
        "top_k_overlap": min(row["top_k_overlap"] for row in per_batch.values()),
        "min_overlap": threshold,
        "min_cosine_to_fp32": min(row["min_cosine_to_fp32"] for row in per_batch.values()),
        "max_batch_deviation": deviation,
        "max_allowed_batch_deviation": MAX_BATCH_DEVIATION,
        "batch_invariant": deviation <= MAX_BATCH_DEVIATION,
        "per_batch": per_batch,
        "quantised": QUANTISED,
    }


def _accept_or_refuse(check: dict[str, Any], threshold: float, k: int) -> None:
    if not check["batch_invariant"]:
        raise Int8Rejected(
            f"INT8 text tower rejected: a caption's vector depends on its batch (max deviation "
            f"{check['max_batch_deviation']:.3g} > {MAX_BATCH_DEVIATION:g} between batch sizes "
            f"{check['batch_sizes']}) (serve --runtime onnx instead)"
        )
    if check["top_k_overlap"] < threshold:
        worst = min(check["per_batch"], key=lambda b: check["per_batch"][b]["top_k_overlap"])
        raise Int8Rejected(
            f"INT8 text tower rejected: top-{k} overlap with fp32 {check['top_k_overlap']:.4f} < "
            f"{threshold} at batch size {worst} over {check['queries']} queries × "
            f"{check['gallery']} images (serve --runtime onnx instead)"
        )


def _nbits_quantizer() -> tuple[Any, Any]:
    """ONNX Runtime's MatMulNBits quantizer and its config. Importing it calls
    ``logging.basicConfig(level=INFO)``: undone here when the root logger had no handler, so a
    library call does not reconfigure its caller's logging; its per-node INFO lines are muted."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    for handler in root.handlers[len(handlers) :]:
        root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger(MatMulNBitsQuantizer.__module__).setLevel(logging.WARNING)
    return MatMulNBitsQuantizer, DefaultWeightOnlyQuantConfig
