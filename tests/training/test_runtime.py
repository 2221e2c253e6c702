"""Where training runs: the GPU of each process, and precision without a GPU."""

from __future__ import annotations

import pytest
import torch

from training.runtime import gpu_for_rank, setup_runtime


def test_a_process_without_a_gpu_gets_a_clear_error() -> None:
    assert gpu_for_rank(0, 1) == 0 and gpu_for_rank(3, 4) == 3
    with pytest.raises(ValueError, match=r"only 1 GPU.*--nproc_per_node 1.*--device cpu"):
        gpu_for_rank(1, 1)


def test_cpu_runs_in_fp32_unless_bf16_is_asked_for() -> None:
    assert setup_runtime("cpu", "auto").autocast_dtype is None
    assert setup_runtime("cpu", "bf16").autocast_dtype is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 autocast needs a CUDA device"):
        setup_runtime("cpu", "fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_cuda_without_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        setup_runtime("cuda", "auto")
