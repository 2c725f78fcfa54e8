"""Refuse to load when the GPU cannot hold the engine, before a single weight moves.

Why: a load that runs out of memory halfway leaves a half-built weight cache, a CUDA context in a bad state and an
out-of-memory traceback from whichever allocation came last. On Jetson Thor the GPU's memory is the CPU's (128 GB
LPDDR5X, shared): the ROS graph, camera drivers and the checkpoint's page cache compete for the same bytes, so a
clear error that says how much is needed and how much is free is what a robot operator can act on.
"""
from __future__ import annotations

from flash_rt.errors import HardwareError

GB = 1e9


def check_free_memory(need: int, free: int, total: int, *, hardware: str, unified: bool) -> None:
    """Raise HardwareError when `need` bytes exceed `free` (both from the caller: cudaMemGetInfo)."""
    if need <= free:
        return
    where = ("memory shared by the CPU and GPU (unified: other processes' RAM counts too; close them or free the "
             "page cache)" if unified else "GPU memory (other processes on this GPU count too: nvidia-smi lists them)")
    raise HardwareError(f"hardware={hardware!r}: not enough free {where} to load this model: it needs about "
                        f"{need / GB:.1f} GB, {free / GB:.1f} GB of {total / GB:.1f} GB are free. Free memory, use "
                        "precision='fp8' if you asked for bf16, or fewer camera views.")


def require_free_memory(need: int, device, *, hardware: str, unified: bool) -> None:
    import torch
    free, total = torch.cuda.mem_get_info(device)
    check_free_memory(need, free, total, hardware=hardware, unified=unified)
