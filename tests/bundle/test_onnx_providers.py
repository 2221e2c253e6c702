"""ONNX Runtime providers follow the device setting the way torch's device does; the CUDA path
itself runs only where a GPU and onnxruntime-gpu are (skipped visibly elsewhere)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bundle.format import BundleError
from bundle.onnx_providers import CPU, CUDA, TENSORRT, available_providers, choose_providers

GPU_BUILD = [TENSORRT, CUDA, CPU]


def test_cpu_and_auto_without_a_gpu_use_the_cpu_provider() -> None:
    assert choose_providers("cpu", GPU_BUILD, has_gpu=True)[0] == [CPU]
    assert choose_providers("auto", [CPU], has_gpu=True)[0] == [CPU]
    assert choose_providers("auto", GPU_BUILD, has_gpu=False)[1].type == "cpu"


def test_a_gpu_gets_tensorrt_then_cuda_then_cpu() -> None:
    providers, device = choose_providers("auto", GPU_BUILD, has_gpu=True)
    assert [p[0] if isinstance(p, tuple) else p for p in providers] == [TENSORRT, CUDA, CPU]
    assert str(device) == "cuda:0"
    providers, device = choose_providers("cuda:1", [CUDA, CPU], has_gpu=True)
    assert providers == [(CUDA, {"device_id": 1}), CPU] and str(device) == "cuda:1"


def test_cuda_that_cannot_be_had_is_an_error() -> None:
    with pytest.raises(BundleError, match=r"no CUDA provider.*onnxruntime-gpu"):
        choose_providers("cuda", [CPU], has_gpu=True)
    with pytest.raises(BundleError, match="no CUDA device"):
        choose_providers("cuda", GPU_BUILD, has_gpu=False)
    with pytest.raises(BundleError, match="unknown device"):
        choose_providers("tpu", GPU_BUILD, has_gpu=True)


@pytest.mark.gpu
def test_onnx_on_cuda_agrees_with_torch(onnx_bundle: Path) -> None:
    import torch

    if not torch.cuda.is_available() or CUDA not in available_providers():
        pytest.skip("needs a CUDA device and onnxruntime-gpu (not run on this machine)")
    from bundle.encoders import Bundle

    texts = ["a man", "a woman in a red coat carrying a white bag"]
    gpu = Bundle(onnx_bundle, runtime="onnx", device="cuda")
    assert gpu.device.type == "cuda"
    want = Bundle(onnx_bundle, runtime="torch", device="cpu").encode_text(texts)
    assert np.min(np.sum(gpu.encode_text(texts) * want, axis=1)) >= 0.999


def test_tensorrt_profiles_span_the_dynamic_axes() -> None:
    from bundle.onnx_runtime import trt_profiles

    text, image = trt_profiles(77, (384, 128))
    assert text["trt_profile_min_shapes"] == "input:1x1"
    assert text["trt_profile_max_shapes"] == "input:64x77"
    assert image["trt_profile_opt_shapes"] == "input:32x3x384x128"
    providers, _ = choose_providers("cuda", GPU_BUILD, has_gpu=True, trt_shapes=text)
    assert providers[0] == (TENSORRT, {"device_id": 0, **text})
