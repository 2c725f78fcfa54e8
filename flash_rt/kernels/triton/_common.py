"""Shared host-side helpers of the Triton kernels: launch-config rules, shape/dtype checks, 2-D row views.

Launch configs are fixed functions of the row width (no autotuning), so a kernel compiles once per
(shape class, dtype) during the eager warm-up call and CUDA-graph capture never meets the compiler.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import triton

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
MASK_VALUE = -2.3819763e38

# One program per row reads BLOCK = next_pow2(D) elements; elementwise kernels tile rows in ELT_BLOCK.
ELT_BLOCK = 1024
MAX_ROW_BLOCK = 16384


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(max(int(n), 1))


def row_warps(block: int) -> int:
    """Warps for a one-row program: ~4 fp32 per thread, 1..16 warps. A row program is latency-bound, so more
    warps (more loads in flight, shorter per-thread chains) win. benchmarks/seam_sweep.py --pdl (H100, us per
    call): the expert's gated adaRMS over 4 split-K partials (D 1024) 2.29 on 4 warps, 1.72 on 8, 1.90 on 16;
    the prefix add_rms_norm (576 x 2048) 4.09 on 8, 3.66 on 16; SigLIP's add_layer_norm (512 x 1152) 2.84 on 8,
    2.98 on 16. Whole model, 2 views, h50 (with the merge pass on 8 warps): 9.94 / 9.92 ms -> 9.69 / 9.70 ms
    (~8 fp32 per thread up to 16 warps before; 9.72 / 9.69 ms where only rows <= 1024 changed)."""
    return max(1, min(16, block // 128))


def as_rows(t: torch.Tensor, name: str) -> Tuple[torch.Tensor, int, int, int]:
    """A [M, N] view of ``t`` (last dim contiguous) without copying -> (view, M, N, row_stride)."""
    if t.dim() == 0:
        raise ValueError(f"{name}: expected at least 1 dim, got a scalar")
    if t.dim() == 1:
        t2 = t.view(1, -1)
    elif t.dim() == 2:
        t2 = t
    else:
        try:
            t2 = t.view(-1, t.shape[-1])
        except RuntimeError as e:
            raise ValueError(f"{name}: {tuple(t.shape)} with strides {t.stride()} cannot be viewed as rows") from e
    if t2.shape[1] > 1 and t2.stride(1) != 1:
        raise ValueError(f"{name}: last dim must be contiguous (stride 1), got strides {t.stride()}")
    return t2, t2.shape[0], t2.shape[1], t2.stride(0)


def check_vec(v: Optional[torch.Tensor], n: int, name: str) -> None:
    if v is None:
        return
    if v.dim() != 1 or v.shape[0] != n or (n > 1 and v.stride(0) != 1):
        raise ValueError(f"{name}: expected a contiguous vector [{n}], got {tuple(v.shape)} strides {v.stride()}")


def check_fp32_rows(t: torch.Tensor, shape, name: str) -> None:
    """t must be fp32 of exactly `shape` with a contiguous last dim (the fp32 operands of the flow kernels)."""
    if t.dtype != torch.float32 or tuple(t.shape) != tuple(shape) or t.stride(-1) != 1:
        raise ValueError(f"{name} must be fp32 {list(shape)} with a contiguous last dim, got {t.dtype} "
                         f"{tuple(t.shape)} strides {t.stride()}")


def check_out(out: torch.Tensor, out_scale: Optional[torch.Tensor], name: str) -> bool:
    """Validate the out / out_scale pairing; True when the kernel must quantize to e4m3."""
    if out_scale is None:
        if out.dtype == FP8:
            raise ValueError(f"{name}: out is float8_e4m3fn but no out_scale was given")
        if not out.dtype.is_floating_point:
            raise ValueError(f"{name}: out must be a float tensor, got {out.dtype}")
        return False
    if out.dtype != FP8:
        raise ValueError(f"{name}: out_scale given but out is {out.dtype}; expected torch.float8_e4m3fn")
    check_scale(out_scale, name + " out_scale")
    return True


def check_scale(s: torch.Tensor, name: str) -> None:
    if s.dtype != torch.float32 or s.numel() != 1:
        raise ValueError(f"{name}: expected a device fp32 tensor of shape [1], got {s.dtype} {tuple(s.shape)}")


def same_rows(a: Tuple[torch.Tensor, int, int, int], b: Tuple[torch.Tensor, int, int, int], what: str) -> None:
    if (a[1], a[2]) != (b[1], b[2]):
        raise ValueError(f"{what}: shapes {tuple(a[0].shape)} and {tuple(b[0].shape)} do not agree")
