"""The service refuses to serve a gallery encoded in another precision than its runtime's
(TPS_PRECISION), before loading the model, and says which setting to change."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.metrics import Metrics
from service.runtime import StartupError, load_runtime
from service.settings import Settings


def test_a_gallery_of_another_precision_is_refused(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(precision="bf16")  # the test index was encoded in fp32 on the CPU
    with pytest.raises(StartupError, match="TPS_PRECISION=fp32") as err:
        load_runtime(settings, Metrics())
    assert "encoded in fp32 but this runtime encodes queries in bf16" in str(err.value)


def test_bf16_on_onnx_is_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(StartupError, match="computes in fp32"):
        load_runtime(make_settings(runtime="onnx", precision="bf16"), Metrics())
