"""Which GPU cell can run honestly in this process (the GPU tests' skip rule, shared by test/gpu and the precision
matrix, which also runs its CPU rows in CI)."""
from __future__ import annotations

import torch

GPU_CELLS = ("hopper", "thor", "rtx_sm120", "rtx_sm89")
# cells whose lowering differs from Hopper's in ways that matter run here only under Triton's arch override
_LOWERING = {"rtx_sm120": "sm120", "rtx_sm89": "sm89"}


def cell_skip_reason(hardware: str):
    """Why `hardware`'s cell cannot run honestly in this process, or None.

    On the H200 (the GPU we have) a Thor or RTX cell runs by override: thor with its own tuning table and Hopper's
    lowering (tcgen05 cannot execute here), rtx_sm120 with the sm120 lowering only under TRITON_OVERRIDE_ARCH=sm120,
    which then applies to every kernel of the process. So the suite runs twice on an H200 (docs/hardware.md): once
    plain (hopper, thor) and once under the override (rtx_sm120 only). On a real Thor or 5090 its own cell runs."""
    import os

    from flash_rt.hardware import detect_hardware

    if not torch.cuda.is_available():
        return "needs a CUDA GPU (run with -m gpu on the device)"
    native, override = detect_hardware(), os.environ.get("TRITON_OVERRIDE_ARCH")
    if override and _LOWERING.get(hardware) != override:
        return f"TRITON_OVERRIDE_ARCH={override} lowers every kernel of this process: only its own cell runs here"
    if hardware in _LOWERING and native != hardware and override != _LOWERING[hardware]:
        return (f"the {hardware} cell runs here only under TRITON_OVERRIDE_ARCH={_LOWERING[hardware]} "
                "(its own pytest run)")
    return None
