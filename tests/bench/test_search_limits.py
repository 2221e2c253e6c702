"""The GPU bandwidth bound: computed from the device's memory clock and bus width, and always
saying where the figure came from."""

from __future__ import annotations

import torch

from bench.search_limits import gpu_bandwidth, peak_gbps


def test_peak_bandwidth_from_clock_and_bus_width() -> None:
    # cudaDeviceProp of an H100 SXM (HBM3) and an H200 (HBM3e): kHz, bits.
    assert peak_gbps(2_619_000, 5120) == 3352.3
    assert peak_gbps(3_201_000, 6144) == 4916.7


def test_the_source_is_always_said() -> None:
    given = gpu_bandwidth(given_gbps=4800.0)
    assert given == {"limit_gbps": 4800.0, "source": "given (--peak-gbps)"}
    found = gpu_bandwidth()
    if torch.cuda.is_available():
        assert found["limit_gbps"] and "memory_clock_khz" in found, found
    elif found["limit_gbps"] is None:
        assert found["source"] == "unknown: give --peak-gbps"
    else:  # a driver without torch CUDA: read from libcuda
        assert found["source"].startswith("cuda driver"), found
