"""Inference encoders of a bundle: tokenise, trim, encode, whatever runtime computes the towers.

:class:`Bundle` is what index, service and evaluation hold. It owns the parts that must not
differ between runtimes: the tokenizer (open_clip's), the image preprocessing, the fingerprint
check and the cutting of a text batch to its longest caption; a runtime (bundle/runtimes.py)
only runs the towers. Outputs are L2-normalised float32 numpy arrays, whatever runtime, device
or precision computed them; in parts mode they are the block vectors of bundle/parts_layout.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bundle.devices import resolve_device
from bundle.format import BundleError, read_meta, verify_fingerprint
from bundle.openclip_import import import_open_clip
from bundle.parts_encoder import PartsEncoder, check_parts_runtime
from bundle.parts_layout import GLOBAL_LAYOUT
from bundle.preprocess import load_preprocess
from bundle.runtimes import EncoderRuntime, open_runtime
from bundle.towers import trimmed_length

__all__ = ["Bundle", "BundleError", "resolve_device"]


class Bundle:
    """Loaded encoders with their tokenizer and preprocessing; outputs are L2-normalised float32.

    ``runtime``: ``torch``, ``onnx`` or ``onnx-int8`` (bundle/runtimes.py). ``trim_text``: run
    the text tower only up to the batch's longest caption (exact, see bundle/towers.py); off
    only to measure the full-context baseline. ``parts``: parts mode on a parts bundle (torch
    runtime only): gallery vectors G and queries Q of docs/parts.md, not unit-norm.
    """

    def __init__(
        self,
        bundle_dir: Path,
        device: str = "cpu",
        verify: bool = True,
        runtime: str = "torch",
        trim_text: bool = True,
        precision: str = "auto",
        parts: bool = False,
    ) -> None:
        self.path = Path(bundle_dir)
        self.meta = read_meta(self.path)
        if verify:
            verify_fingerprint(self.path, self.meta)
        if parts:
            check_parts_runtime(runtime)
        open_clip = import_open_clip()
        self.runtime: EncoderRuntime = open_runtime(
            self.path, self.meta, runtime, device, precision
        )
        self.preprocess = load_preprocess(self.path)
        self.tokenizer = open_clip.get_tokenizer(f"local-dir:{self.path}")
        self.trim_text = trim_text and self.runtime.text_trimmable
        # Parts mode (bundle/parts_encoder.py): vectors in the parts layout, NOT unit-norm.
        self.parts: PartsEncoder | None = (
            PartsEncoder(self.path, self.meta, self.runtime) if parts else None
        )

    @property
    def fingerprint(self) -> str:
        return self.meta.fingerprint

    @property
    def dim(self) -> int:
        return self.parts.layout.dim if self.parts else self.meta.embed_dim

    @property
    def layout(self) -> str:
        """What an index records: ``global``, or the parts layout (bundle/parts_layout.py)."""
        return self.parts.layout.name if self.parts else GLOBAL_LAYOUT

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def runtime_name(self) -> str:
        return self.runtime.name

    @property
    def precision(self) -> str:
        """``fp32`` or ``bf16``: what the towers compute in (ONNX runtimes: fp32)."""
        return str(getattr(self.runtime, "precision", "fp32"))

    def token_count(self, text: str) -> int:
        """Tokens a caption needs including start/end tokens (over context_length = truncated)."""
        return len(self.tokenizer.encode(text)) + 2

    def tokens(self, texts: list[str]) -> np.ndarray:
        """int64 token ids, cut after the batch's last end-of-text token when trimming is on."""
        tokens = self.tokenizer(texts).numpy().astype(np.int64, copy=False)
        if not self.trim_text:
            return tokens
        length = trimmed_length(tokens, self.runtime.text_pool, self.runtime.text_eos_id)
        return tokens[:, :length]

    def encode_text(self, texts: list[str], weights: dict[str, float] | None = None) -> np.ndarray:
        """Text features; in parts mode the queries Q weighted by ``weights`` (validated;
        names left out keep the bundle's defaults)."""
        if self.parts is None and weights is not None:
            raise BundleError("part weights need parts mode: Bundle(..., parts=True)")
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.parts is not None:
            return self.parts.query(self.tokens(texts), weights)
        return self.runtime.encode_tokens(self.tokens(texts))

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """Encode a batch already passed through ``self.preprocess``."""
        if images.shape[0] == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.parts is not None:
            return self.parts.images(images)
        return self.runtime.encode_images(images)
