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

from index.bf16_engine import packing_available

BANDWIDTH_BYTES = 1 << 30  # 1 GiB: far beyond the caches
GEMM_SIZE = 4096


def _best_seconds(run: Callable[[], object], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        time.sleep(0.05)
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
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


def gemm_flops(repeats: int = 3, size: int = GEMM_SIZE) -> dict[str, float]:
    """GFLOP/s of a large square matrix product: fp32 by numpy (OpenBLAS) and torch (MKL), bf16
    by torch (oneDNN); the limits are the best fp32 and the bf16 rate."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    ha, hb = ta.to(torch.bfloat16), tb.to(torch.bfloat16)
    flop = 2.0 * size**3
    rates = {
        "numpy_fp32_gflops": flop / _best_seconds(lambda: a @ b, repeats) / 1e9,
        "torch_fp32_gflops": flop / _best_seconds(lambda: torch.mm(ta, tb), repeats) / 1e9,
        "torch_bf16_gflops": flop / _best_seconds(lambda: torch.mm(ha, hb), repeats) / 1e9,
    }
    if packing_available():  # the bf16 engine's own kernel, on a pre-packed operand
        packed = torch.ops.mkldnn._reorder_linear_weight(hb, size)
        rates["torch_bf16_packed_gflops"] = (
            flop
            / _best_seconds(
                lambda: torch.ops.mkldnn._linear_pointwise(ha, packed, None, "none", [], ""),
                repeats,
            )
            / 1e9
        )
    rates = {name: round(rate, 1) for name, rate in rates.items()}
    return {
        **rates,
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
