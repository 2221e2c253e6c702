"""ONNX Runtime execution providers for a device setting, chosen the way torch's device is.

``cpu`` → the CPU provider. ``cuda`` (or ``auto`` on a machine with a GPU) → TensorRT when this
onnxruntime build has it, then CUDA, with the CPU provider last for any node neither takes.
``auto`` without a GPU → CPU. Asking for ``cuda`` from a CPU-only onnxruntime is an error that
names the fix, never a silent fall-back to the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bundle.format import BundleError

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
Provider = str | tuple[str, dict[str, Any]]


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def gpu_present() -> bool:
    return torch.cuda.is_available()


def choose_providers(
    device: str,
    available: Sequence[str] | None = None,
    has_gpu: bool | None = None,
    trt_shapes: dict[str, str] | None = None,
) -> tuple[list[Provider], torch.device]:
    """(providers in priority order, the device they run on) for ``device`` (auto|cpu|cuda[:N]).

    ``trt_shapes``: TensorRT optimisation-profile shapes (``trt_profile_min_shapes`` …) for a graph
    with dynamic axes, so TensorRT builds one engine for the whole range instead of one per shape.
    """
    available = list(available_providers() if available is None else available)
    has_gpu = gpu_present() if has_gpu is None else has_gpu
    if device == "cpu":
        return [CPU], torch.device("cpu")
    if device == "auto":
        if CUDA not in available or not has_gpu:
            return [CPU], torch.device("cpu")
        device = "cuda"
    if not device.startswith("cuda"):
        raise BundleError(f"unknown device {device!r}: use auto, cpu or cuda")
    if CUDA not in available:
        raise BundleError(
            "--device cuda was asked for but this onnxruntime has no CUDA provider "
            f"(it has {', '.join(available)}): install onnxruntime-gpu, or use --runtime torch"
        )
    if not has_gpu:
        raise BundleError("--device cuda was asked for but no CUDA device is available")
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    providers: list[Provider] = []
    if TENSORRT in available:
        options: dict[str, Any] = {"device_id": index, **(trt_shapes or {})}
        providers.append((TENSORRT, options))
    providers += [(CUDA, {"device_id": index}), CPU]
    return providers, torch.device(f"cuda:{index}")
