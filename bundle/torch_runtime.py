"""The torch runtime: open_clip's towers in PyTorch, the reference every other runtime matches.

It runs :class:`~bundle.towers.TextTower`, the very module ONNX export traces, so a trimmed batch
means the same computation in both runtimes. ``precision``: ``auto`` autocasts to bf16 on a GPU
(half the bandwidth) and runs fp32 on the CPU; ``fp32`` and ``bf16`` force one (CPU autocast
takes bf16 too). Outputs are cast back to float32 either way. The precision is recorded with a
gallery (index/encoding.py): a bf16 gallery is searched with bf16 queries, and vice versa.
"""

from __future__ import annotations

from pathlib import Path

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


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``precision`` means on ``device``."""
    if precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision == "auto":
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

    def _run(self, module: nn.Module, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    out = module(x)
            else:
                out = module(x)
        return out.float().cpu().numpy()

    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        return self._run(self.text, torch.from_numpy(np.ascontiguousarray(tokens, np.int64)))

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        return self._run(self.image, images)
