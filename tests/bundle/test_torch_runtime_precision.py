"""The torch runtime's precision: auto is bf16 on a GPU and fp32 on the CPU, either can be
forced (CPU autocast takes bf16), ONNX runtimes are fp32, and the bundle says which it uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bundle.encoders import Bundle
from bundle.format import BundleError
from bundle.runtimes import PRECISION_ENV, default_precision, runtime_precision
from bundle.torch_runtime import resolve_precision


def test_what_each_setting_means() -> None:
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("fp32", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with pytest.raises(BundleError, match="unknown precision"):
        resolve_precision("fp16", torch.device("cpu"))


def test_known_before_loading() -> None:
    assert runtime_precision("torch", "cpu") == "fp32"
    assert runtime_precision("torch", "cpu", "bf16") == "bf16"
    assert runtime_precision("torch", "auto") == ("bf16" if torch.cuda.is_available() else "fp32")
    assert runtime_precision("onnx", "auto") == "fp32"
    with pytest.raises(BundleError, match="computes in fp32"):
        runtime_precision("onnx-int8", "cpu", "bf16")


def test_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert default_precision() == "auto"
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    assert default_precision() == "bf16" and default_precision("fp32") == "fp32"
    monkeypatch.setenv(PRECISION_ENV, "half")
    with pytest.raises(BundleError, match="unknown precision"):
        default_precision()


def test_bf16_on_the_cpu_is_close_to_fp32(random_bundle: Path) -> None:
    fp32 = Bundle(random_bundle, device="cpu")
    bf16 = Bundle(random_bundle, device="cpu", precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    texts = ["a woman in a red coat", "a man with a black backpack"]
    a, b = fp32.encode_text(texts), bf16.encode_text(texts)
    assert b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-3)
    assert not np.array_equal(a, b)  # bf16 really ran
    assert float(np.min(np.sum(a * b, axis=1))) > 0.98
