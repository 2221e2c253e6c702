"""Which device encodes: ``auto`` picks CUDA when present; an explicit ``cuda`` without one fails.

Both runtimes read the same ``--device``/``TPS_DEVICE`` value through here (torch directly, ONNX
Runtime to pick its execution providers, bundle/onnx_providers.py), so one setting means the same
thing whichever runtime encodes.
"""

from __future__ import annotations

import torch

from bundle.format import BundleError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BundleError("--device cuda was asked for but no CUDA device is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise BundleError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)
