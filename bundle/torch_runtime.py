"""The torch runtime: open_clip's towers in PyTorch, the reference every other runtime matches.

It runs :class:`~bundle.towers.TextTower`, the very module ONNX export traces, so a trimmed batch
means the same computation in both runtimes. On a GPU it autocasts to bf16 (half the bandwidth);
outputs are cast back to float32.
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


class TorchRuntime:
    name = "torch"

    def __init__(self, bundle_dir: Path, device: str = "cpu") -> None:
        self.device = resolve_device(device)
        clip = load_clip(Path(bundle_dir), self.device)
        self.text = TextTower(clip).eval()
        self.image = ImageTower(clip).eval()
        self.text_pool = self.text.pool_type
        self.text_eos_id = self.text.eos_id
        self.text_trimmable = self.text.trimmable
        # bf16 autocast on GPU halves the bandwidth; outputs are cast back to float32.
        self.autocast_dtype = torch.bfloat16 if self.device.type == "cuda" else None

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
