"""The torch runtime: open_clip's towers in PyTorch, the reference every other runtime matches.

It runs :class:`~bundle.towers.TextTower`, the very module ONNX export traces, so a trimmed batch
means the same computation in both runtimes. ``precision``: ``auto`` autocasts to bf16 on a GPU
(half the bandwidth) and runs fp32 on the CPU; ``fp32`` and ``bf16`` force one (CPU autocast
takes bf16 too). Outputs are cast back to float32 either way. The precision is recorded with a
gallery (index/encoding.py): a bf16 gallery is searched with bf16 queries, and vice versa.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bundle.devices import resolve_device
from bundle.format import BundleError
from bundle.openclip_import import import_open_clip
from bundle.towers import ImageTower, TextTower


def load_clip(bundle_dir: Path, device: torch.device) -> nn.Module:
    """open_clip's model from the bundle folder, in eval mode on ``device``."""
    open_clip = import_open_clip()
    try:
        model = open_clip.create_model(f"local-dir:{bundle_dir}", device=device)
    except (RuntimeError, ValueError) as err:
        raise BundleError(f"{bundle_dir}: open_clip could not load the bundle: {err}") from err
    return model.eval()


PRECISIONS = ("auto", "fp32", "bf16")


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``precision`` means on ``device``."""
    if check_precision(precision) == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


class TorchRuntime:
    name = "torch"

    def __init__(self, bundle_dir: Path, device: str = "cpu", precision: str = "auto") -> None:
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        clip = load_clip(Path(bundle_dir), self.device)
        self.text = TextTower(clip).eval()
        self.image = ImageTower(clip).eval()
        self.text_pool = self.text.pool_type
        self.text_eos_id = self.text.eos_id
        self.text_trimmable = self.text.trimmable
        # bf16 autocast halves the bandwidth; outputs are cast back to float32.
        self.autocast_dtype = torch.bfloat16 if self.precision == "bf16" else None

    def run(self, fn: Callable[..., Any], *inputs: torch.Tensor) -> Any:
        """``fn(*inputs)`` on this runtime's device and precision, without autograd: the one
        place the towers (and the part head, bundle/parts_encoder.py) are computed."""
        with torch.inference_mode():
            inputs = tuple(x.to(self.device, non_blocking=True) for x in inputs)
            if self.autocast_dtype is None:
                return fn(*inputs)
            with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                return fn(*inputs)

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(tokens, np.int64))
        return self.run(self.text, x).float().cpu().numpy()

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        return self.run(self.image, images).float().cpu().numpy()
