"""Where training runs: device, mixed precision and (under torchrun) the process group."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32
    use_grad_scaler: bool  # fp16 only; bf16 has fp32's exponent range
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def _pick_precision(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    # Master weights stay fp32 in every mode; only autocast regions run in half precision.
    if precision == "auto":
        if device.type != "cuda":
            return None, False
        # Emulated bf16 (pre-Ampere GPUs) is slower than fp16 with loss scaling: native only.
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        precision = "bf16" if native else "fp16"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    if device.type != "cuda":
        raise ValueError("fp16 autocast needs a CUDA device; use bf16 or fp32 on CPU")
    return torch.float16, True


def setup_runtime(device: str, precision: str) -> Runtime:
    """Single process, or one process per GPU when launched by ``torchrun`` (WORLD_SIZE > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    dev = torch.device(device)
    if dev.type == "cuda":
        index = local_rank if world_size > 1 else (dev.index or 0)
        dev = torch.device("cuda", gpu_for_rank(index, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            # device_id binds the NCCL communicator to this GPU up front (no lazy guessing).
            dist.init_process_group(backend="nccl", device_id=dev)
        else:
            dist.init_process_group(backend="gloo")
    dtype, scaler = _pick_precision(precision, dev)
    return Runtime(dev, dtype, scaler, rank, world_size)


def gpu_for_rank(index: int, visible: int) -> int:
    """The GPU a process uses; a clear error when this process has none (e.g. torchrun with more
    processes per node than GPUs), instead of CUDA's 'invalid device ordinal' later on."""
    if index >= visible:
        raise ValueError(
            f"this process wants GPU {index} but only {visible} GPU(s) are visible: run at most "
            f"{visible} processes per node (torchrun --nproc_per_node {max(visible, 1)}) or use "
            "--device cpu"
        )
    return index


def shutdown(runtime: Runtime) -> None:
    """Leave the process group cleanly: every rank waits for the others, then it is destroyed
    (NCCL warns about, and may hang on, a group left alive at exit)."""
    if runtime.world_size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
