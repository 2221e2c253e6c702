"""The runtime interface: what runs a bundle's towers, behind :class:`~bundle.encoders.Bundle`.

Index, service and evaluation call ``Bundle.encode_text`` / ``encode_images`` and never learn
which runtime computed the vectors. A runtime takes token ids already cut to the batch's
longest caption (``Bundle.tokens``) and preprocessed image tensors, and returns L2-normalised
float32 rows. Three exist:

- ``torch``: open_clip's modules in PyTorch (bf16 autocast on a GPU), the reference;
- ``onnx``: the bundle's exported fp32 graphs in ONNX Runtime (CPU, or CUDA/TensorRT on a GPU);
- ``onnx-int8``: as ``onnx``, with the text tower's weights dynamically quantised to INT8 (CPU
  serving only; the export accepted it only if its top-10 rankings agree with fp32's).

Chosen by ``--runtime`` or ``TPS_RUNTIME`` (default ``torch``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from bundle.format import BundleError, BundleMeta

RUNTIMES = ("torch", "onnx", "onnx-int8")
RUNTIME_ENV = "TPS_RUNTIME"
RUNTIME_HELP = (
    "torch | onnx | onnx-int8: what runs the towers (onnx needs `python -m bundle export-onnx`; "
    f"default: ${RUNTIME_ENV}, else torch)"
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


def open_runtime(bundle_dir: Path, meta: BundleMeta, name: str, device: str) -> EncoderRuntime:
    check_runtime(name)
    if name == "torch":
        from bundle.torch_runtime import TorchRuntime

        return TorchRuntime(bundle_dir, device)
    from bundle.onnx_runtime import OnnxRuntime

    return OnnxRuntime.from_bundle(bundle_dir, meta, int8=name == "onnx-int8", device=device)
