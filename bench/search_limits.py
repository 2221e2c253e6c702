"""The machine's two limits for exact search, measured in the benchmark's own process.

One query is a pass over the gallery, so it can go no faster than the memory bandwidth allows
(bytes scanned / read bandwidth); a batch of queries is a matrix product, so it can go no faster
than the machine's best GEMM rate in the engine's precision (2·n·d·batch FLOP / FLOP/s). Each
limit is the best of a few kernels, so that a slow library does not flatter the engines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from index.search.bf16_engine import packing_available

BANDWIDTH_BYTES = 1 << 30  # 1 GiB: far beyond the caches
GEMM_SIZE = 4096
# A CPU without native bf16 emulates bf16 products (5-6× slower than fp32 on an AVX2 EPYC, and
# 4096³ took minutes): its bf16 probe is sized down, and every probe stops after this long.
EMULATED_BF16_GEMM_SIZE = 1024
PROBE_BOUND_S = 10.0


def _best_seconds(run: Callable[[], object], repeats: int, bound_s: float = PROBE_BOUND_S) -> float:
    """Best of ``repeats`` timed calls after a warm-up; fewer when the calls add up to more than
    ``bound_s`` (a slow kernel is measured, never waited on for minutes)."""
    started = time.perf_counter()
    run()
    best = time.perf_counter() - started
    spent = best
    for _ in range(repeats):
        if spent > bound_s:
            break
        time.sleep(0.05)
        started = time.perf_counter()
        run()
        took = time.perf_counter() - started
        best, spent = min(best, took), spent + took
    return best


def read_bandwidth(repeats: int = 5, nbytes: int = BANDWIDTH_BYTES) -> dict[str, float]:
    """Read GB/s of large streaming kernels (a reduction, a matrix-vector product, a copy,
    counting read + written bytes); ``limit_gbps`` is the best of them."""
    rows = nbytes // (4 * 512)
    matrix = np.random.default_rng(0).standard_normal((rows, 512), dtype=np.float32)
    tensor = torch.from_numpy(matrix)
    ones = np.ones(512, np.float32)
    target = torch.empty_like(tensor)
    rates = {
        "torch_sum_gbps": nbytes / _best_seconds(tensor.sum, repeats) / 1e9,
        "numpy_sgemv_gbps": nbytes / _best_seconds(lambda: matrix @ ones, repeats) / 1e9,
        "torch_copy_gbps": 2 * nbytes / _best_seconds(lambda: target.copy_(tensor), repeats) / 1e9,
    }
    rates = {name: round(rate, 1) for name, rate in rates.items()}
    return {**rates, "limit_gbps": max(rates.values())}


def gemm_flops(repeats: int = 3, size: int = GEMM_SIZE, native_bf16: bool = True) -> dict:
    """GFLOP/s of a large square matrix product: fp32 by numpy (OpenBLAS) and torch (MKL), bf16
    by torch (oneDNN); the limits are the best fp32 and the bf16 rate. Without native bf16 the
    bf16 product is measured at ``EMULATED_BF16_GEMM_SIZE``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flop = 2.0 * size**3
    rates = {
        "numpy_fp32_gflops": flop / _best_seconds(lambda: a @ b, repeats) / 1e9,
        "torch_fp32_gflops": flop / _best_seconds(lambda: torch.mm(ta, tb), repeats) / 1e9,
    }
    half = size if native_bf16 else min(size, EMULATED_BF16_GEMM_SIZE)
    ha, hb = ta[:half, :half].to(torch.bfloat16), tb[:half, :half].to(torch.bfloat16)
    half_flop = 2.0 * half**3
    rates["torch_bf16_gflops"] = half_flop / _best_seconds(lambda: torch.mm(ha, hb), repeats) / 1e9
    if packing_available():  # the bf16 engine's own kernel, on a pre-packed operand
        packed = torch.ops.mkldnn._reorder_linear_weight(hb, half)
        rates["torch_bf16_packed_gflops"] = (
            half_flop
            / _best_seconds(
                lambda: torch.ops.mkldnn._linear_pointwise(ha, packed, None, "none", [], ""),
                repeats,
            )
            / 1e9
        )
    rates = {name: round(rate, 1) for name, rate in rates.items()}
    return {
        **rates,
        "bf16_size": half,
        "fp32_limit_gflops": max(rates["numpy_fp32_gflops"], rates["torch_fp32_gflops"]),
        "bf16_limit_gflops": max(v for name, v in rates.items() if "bf16" in name),
    }


def limit_ms(
    n: int, dim: int, batch: int, precision: str, limits: dict[str, dict[str, float]]
) -> tuple[float, str]:
    """The fastest one call could be, in ms, and which limit says so: bandwidth for batch 1
    (bytes of the scan in ``precision``), GEMM for batches (its FLOP at that precision's rate)."""
    if batch == 1:
        nbytes = n * dim * (2 if precision == "bf16" else 4)
        return nbytes / (limits["bandwidth"]["limit_gbps"] * 1e9) * 1000, "memory-bandwidth"
    rate = limits["gemm"][f"{precision}_limit_gflops"] * 1e9
    return 2.0 * n * dim * batch / rate * 1000, f"gemm-{precision}"


# CUDA driver attributes (cuda.h): peak memory clock in kHz, global memory bus width in bits.
_CU_MEMORY_CLOCK_RATE = 36
_CU_GLOBAL_MEMORY_BUS_WIDTH = 37


def gpu_bandwidth(device: int = 0, given_gbps: float | None = None) -> dict[str, object]:
    """The GPU's peak memory bandwidth and where the figure comes from: ``given`` (a flag),
    ``torch`` (device properties, where this torch exposes the memory clock and bus width),
    ``cuda-driver`` (the same two attributes from libcuda), else None with the reason.

    Peak GB/s = memory clock × 2 (double data rate) × bus width / 8: 3.35 TB/s on an H100
    SXM (HBM3), ~4.9 TB/s on an H200 (HBM3e), so no single default fits every GPU.
    """
    if given_gbps is not None:
        return {"limit_gbps": float(given_gbps), "source": "given (--peak-gbps)"}
    found = _torch_memory_attributes(device)
    source = "torch device properties"
    if found is None:
        found = _driver_memory_attributes(device)
        source = "cuda driver attributes (libcuda)"
    if found is None:
        return {"limit_gbps": None, "source": "unknown: give --peak-gbps"}
    clock_khz, bus_bits = found
    return {
        "limit_gbps": peak_gbps(clock_khz, bus_bits),
        "source": source,
        "memory_clock_khz": clock_khz,
        "bus_width_bits": bus_bits,
    }


def peak_gbps(memory_clock_khz: int, bus_width_bits: int) -> float:
    """Peak bandwidth of a double-data-rate memory bus, in GB/s."""
    return round(memory_clock_khz * 1e3 * 2 * bus_width_bits / 8 / 1e9, 1)


def _torch_memory_attributes(device: int) -> tuple[int, int] | None:
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(device)
    clock = getattr(props, "memory_clock_rate", None)  # kHz, as cudaDeviceProp
    bus = getattr(props, "memory_bus_width", None)
    if not clock or not bus:
        return None
    return int(clock), int(bus)


def _driver_memory_attributes(device: int) -> tuple[int, int] | None:
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    handle, value = ctypes.c_int(), ctypes.c_int()
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(handle), device) != 0:
        return None
    found = []
    for attribute in (_CU_MEMORY_CLOCK_RATE, _CU_GLOBAL_MEMORY_BUS_WIDTH):
        if cuda.cuDeviceGetAttribute(ctypes.byref(value), attribute, handle) != 0:
            return None
        found.append(int(value.value))
    return (found[0], found[1]) if all(found) else None
