"""Inference encoders of a bundle: device choice, autocast, tokenise and encode.

Outputs are L2-normalised float32 numpy arrays, whatever device or precision computed them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bundle.format import META_FILE, WEIGHTS_FILE, BundleError, read_meta, sha256_file
from bundle.openclip_import import import_open_clip


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BundleError("--device cuda was asked for but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise BundleError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


class Bundle:
    """Loaded encoders with their tokenizer and preprocessing; outputs are L2-normalised float32."""

    def __init__(self, bundle_dir: Path, device: str = "cpu", verify: bool = True) -> None:
        self.path = Path(bundle_dir)
        self.meta = read_meta(self.path)
        if verify and sha256_file(self.path / WEIGHTS_FILE) != self.meta.fingerprint:
            raise BundleError(f"{self.path}: weights do not match the fingerprint in {META_FILE}")
        open_clip = import_open_clip()
        self.device = resolve_device(device)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                f"local-dir:{self.path}", device=self.device
            )
        except (RuntimeError, ValueError) as err:
            raise BundleError(f"{self.path}: open_clip could not load the bundle: {err}") from err
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(f"local-dir:{self.path}")
        # bf16 autocast on GPU halves the bandwidth; outputs are cast back to float32.
        self.autocast_dtype = torch.bfloat16 if self.device.type == "cuda" else None

    @property
    def fingerprint(self) -> str:
        return self.meta.fingerprint

    @property
    def dim(self) -> int:
        return self.meta.embed_dim

    def token_count(self, text: str) -> int:
        """Tokens a caption needs including start/end tokens (over context_length = truncated)."""
        return len(self.tokenizer.encode(text)) + 2

    def _run(self, fn, x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            if self.autocast_dtype is not None:
                with torch.autocast(self.device.type, dtype=self.autocast_dtype):
                    out = fn(x)
            else:
                out = fn(x)
            out = torch.nn.functional.normalize(out.float(), dim=-1)
        return out.cpu().numpy().astype(np.float32, copy=False)

    def encode_text(self, texts: list[str]) -> np.ndarray:
        return self._run(self.model.encode_text, self.tokenizer(texts))

    def encode_images(self, images: torch.Tensor) -> np.ndarray:
        """Encode a batch already passed through ``self.preprocess``."""
        return self._run(self.model.encode_image, images)
