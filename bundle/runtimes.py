"""The runtime interface: what runs a bundle's towers, behind :class:`~bundle.encoders.Bundle`.

Index, service and evaluation call ``Bundle.encode_text`` / ``encode_images`` and never learn
which runtime computed the vectors. A runtime takes token ids already cut to the batch's
longest caption (``Bundle.tokens``) and preprocessed image tensors, and returns L2-normalised
float32 rows. Three exist:

- ``torch``: open_clip's modules in PyTorch (bf16 autocast on a GPU), the reference;
- ``onnx``: the bundle's exported fp32 graphs in ONNX Runtime (CPU, or CUDA/TensorRT on a GPU);
- ``onnx-int8``: as ``onnx``, with the text tower's weights and per-token activations in INT8
  (CPU serving only; the export accepted it only if its top-10 rankings agree with fp32's and a
  query's vector does not depend on its batch: bundle/int8.py).

Chosen by ``--runtime`` or ``TPS_RUNTIME`` (default ``torch``). The torch runtime's precision
(``--precision`` / ``TPS_PRECISION``: auto, fp32, bf16) is what :func:`runtime_precision` says,
known before any weights load; the ONNX runtimes compute in fp32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from bundle.format import BundleError, BundleMeta
from bundle.torch_runtime import PRECISIONS as PRECISIONS  # the flags' choices, with runtimes
from bundle.torch_runtime import TorchRuntime, check_precision, resolve_precision

RUNTIMES = ("torch", "onnx", "onnx-int8")
RUNTIME_ENV = "TPS_RUNTIME"
RUNTIME_HELP = (
    "torch | onnx | onnx-int8: what runs the towers (onnx needs `python -m bundle export-onnx`; "
    f"default: ${RUNTIME_ENV}, else torch)"
)
PRECISION_ENV = "TPS_PRECISION"
PRECISION_HELP = (
    "auto | fp32 | bf16: the torch runtime's compute precision (auto: bf16 on a GPU, fp32 on "
    f"the CPU; onnx runtimes are fp32); must match the gallery's (default: ${PRECISION_ENV}, "
    "else auto)"
)


class EncoderRuntime(Protocol):
    name: str
    device: torch.device
    text_pool: str  # how the text tower pools: argmax (CLIP), eos, first, last
    text_eos_id: int | None
    text_trimmable: bool  # causal and pooled at one token: cutting the padding is exact

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """int64 token ids ``[batch, length]`` → normalised float32 ``[batch, dim]``."""
        ...

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """Preprocessed images ``[batch, 3, H, W]`` → normalised float32 ``[batch, dim]``."""
        ...


def check_runtime(name: str) -> str:
    if name not in RUNTIMES:
        raise BundleError(f"unknown runtime {name!r}: use {', '.join(RUNTIMES)}")
    return name


def default_runtime(given: str | None = None) -> str:
    """``given`` (a ``--runtime`` flag), else ``$TPS_RUNTIME`` (the service reads the same
    variable), else ``torch``."""
    return check_runtime(given or os.environ.get(RUNTIME_ENV, "").strip() or "torch")


def default_precision(given: str | None = None) -> str:
    """``given`` (a ``--precision`` flag), else ``$TPS_PRECISION``, else ``auto``."""
    return check_precision(given or os.environ.get(PRECISION_ENV, "").strip() or "auto")


def runtime_precision(name: str, device: str, precision: str = "auto") -> str:
    """``fp32`` or ``bf16``: how runtime ``name`` on ``device`` will encode, without loading it
    (so a store can be checked against it first)."""
    check_runtime(name)
    check_precision(precision)
    if name != "torch":
        if precision == "bf16":
            raise BundleError(f"the {name} runtime computes in fp32; bf16 needs --runtime torch")
        return "fp32"
    from bundle.devices import resolve_device

    return resolve_precision(precision, resolve_device(device))


def open_runtime(
    bundle_dir: Path, meta: BundleMeta, name: str, device: str, precision: str = "auto"
) -> EncoderRuntime:
    runtime_precision(name, device, precision)  # refuses bf16 on ONNX before anything loads
    if name == "torch":
        return TorchRuntime(bundle_dir, device, precision)
    from bundle.onnx_runtime import OnnxRuntime

    return OnnxRuntime.from_bundle(bundle_dir, meta, int8=name == "onnx-int8", device=device)
