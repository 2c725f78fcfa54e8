"""Elementwise activations and FP8 quantization, each one launch with the quantize fused in.

Why fused: the MLP activation output exists only to be fed to the next (FP8) GEMM. Computing
gelu(gate) * up and quantizing in the same pass reads the [M, 2F] GEMM output once and writes [M, F]
e4m3 once (1 byte/elem) instead of activation -> bf16 -> quantize (an extra 2+2 bytes/elem of HBM
traffic and an extra ~1 us launch). For Gemma-2B's prefix (M=562, F=16384) that is ~37 MB -> ~27 MB.

Grid: (rows, column tiles of ELT_BLOCK) -- no reduction, so rows are tiled for parallelism even when
M is small (the action expert has M = horizon = 10..50 rows).

geglu also reads a transposed gu (the transposed view of a [2F, M] buffer: the prefix gate+up GEMM run as
W @ act.T, see runtime/quant.linear) in [BLOCK_F, BLOCK_M] tiles and writes act row-major.

gelu_tanh(x) = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as x * sigmoid(2u)
(the same function, but with no tanh call and no cancellation; exp overflow gives exactly 0 or x).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import ELT_BLOCK, as_rows, check_out, check_scale, next_pow2
from .fp8_quant import e4m3_range, e4m3_rcp
from .launch import launch_kw, pdl_enter

__all__ = ["gelu_tanh", "geglu", "quantize_fp8"]

_K0 = tl.constexpr(0.7978845608028654)   # sqrt(2/pi)
_K1 = tl.constexpr(0.044715)

ACT_NONE, ACT_GELU, ACT_GEGLU = 0, 1, 2


@triton.jit
def _gelu_tanh_f32(x):
    u = _K0 * (x + _K1 * x * x * x)
    return x / (1.0 + tl.exp(-2.0 * u))


@triton.jit
def _eltwise_kernel(X, sx, OUT, so, SCALE, N, F_OFF, ACT: tl.constexpr, QUANT: tl.constexpr,
                    BLOCK: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < N
    x = tl.load(X + row * sx + cols, mask=mask, other=0.0).to(tl.float32)
    if ACT == 1:
        y = _gelu_tanh_f32(x)
    elif ACT == 2:
        up = tl.load(X + row * sx + F_OFF + cols, mask=mask, other=0.0).to(tl.float32)
        y = _gelu_tanh_f32(x) * up
    else:
        y = x
    if QUANT:
        y = e4m3_range(y, e4m3_rcp(SCALE))
    tl.store(OUT + row * so + cols, y.to(OUT.dtype.element_ty), mask=mask)


# Tile of the transposing GeGLU: [GEGLU_T_BLOCK_F features x GEGLU_T_BLOCK_M rows] of gate^T and up^T in,
# the [BLOCK_M, BLOCK_F] tile of act out. 64 bf16 (128 bytes) per loaded row and 64 e4m3 per stored row.
GEGLU_T_BLOCK_F, GEGLU_T_BLOCK_M = 64, 64


@triton.jit
def _geglu_t_kernel(GU, sg, OUT, so, SCALE, M, F, QUANT: tl.constexpr, BLOCK_F: tl.constexpr,
                    BLOCK_M: tl.constexpr, PDL: tl.constexpr):
    """out[m, f] = gelu_tanh(gu_t[f, m]) * gu_t[F + f, m] for one [BLOCK_M, BLOCK_F] tile of out."""
    pdl_enter(PDL)
    rcp = e4m3_rcp(SCALE, QUANT)
    f = tl.program_id(0) * BLOCK_F + tl.arange(0, BLOCK_F)
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    mask = (f < F)[:, None] & (m < M)[None, :]
    src = GU + f.to(tl.int64)[:, None] * sg + m[None, :]
    g = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(src + F * sg, mask=mask, other=0.0).to(tl.float32)
    y = _gelu_tanh_f32(g) * u
    if QUANT:
        y = e4m3_range(y, rcp)
    dst = OUT + m.to(tl.int64)[:, None] * so + f[None, :]
    tl.store(dst, tl.trans(y).to(OUT.dtype.element_ty), mask=(m < M)[:, None] & (f < F)[None, :])


def _geglu_transposed(gu_t, out, scale, quant):
    """gu_t [2F, M] row-major (gu = gu_t.t()) -> out [M, F] with contiguous rows."""
    two_f, m = gu_t.shape
    f = two_f // 2
    orows = as_rows(out, "geglu out")
    if (orows[1], orows[2]) != (m, f):
        raise ValueError(f"geglu: transposed input {(m, two_f)} does not match out {tuple(out.shape)}")
    if m == 0 or f == 0:
        return out
    grid = (triton.cdiv(f, GEGLU_T_BLOCK_F), triton.cdiv(m, GEGLU_T_BLOCK_M))
    _geglu_t_kernel[grid](gu_t, gu_t.stride(0), orows[0], orows[3], gu_t if scale is None else scale, m, f,
                          QUANT=quant, BLOCK_F=GEGLU_T_BLOCK_F, BLOCK_M=GEGLU_T_BLOCK_M, num_warps=4,
                          **launch_kw())
    return out


def _launch(x, out, scale, quant, act, name, f_off=0, n=None):
    xr = as_rows(x, name + " input")
    orows = as_rows(out, name + " out")
    m, ncols = orows[1], orows[2]
    if xr[1] != m or (n is None and xr[2] != ncols) or (n is not None and xr[2] != n):
        raise ValueError(f"{name}: input {tuple(x.shape)} does not match out {tuple(out.shape)}")
    if m == 0 or ncols == 0:
        return out
    block = min(ELT_BLOCK, next_pow2(ncols))
    grid = (m, triton.cdiv(ncols, block))
    _eltwise_kernel[grid](xr[0], xr[3], orows[0], orows[3], xr[0] if scale is None else scale, ncols, f_off,
                          ACT=act, QUANT=quant, BLOCK=block, num_warps=max(1, min(4, block // 256)), **launch_kw())
    return out


def gelu_tanh(x: torch.Tensor, *, out: torch.Tensor, out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out = gelu_tanh(x) [-> e4m3]. Site: SigLIP fc1 output (bias already added by the GEMM) -> fc2."""
    quant = check_out(out, out_scale, "gelu_tanh")
    return _launch(x, out, out_scale, quant, ACT_GELU, "gelu_tanh")


def geglu(gu: torch.Tensor, *, out: torch.Tensor, out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out[M, F] = gelu_tanh(gu[:, :F]) * gu[:, F:] [-> e4m3]. Site: Gemma / expert fused gate+up GEMM
    output -> down GEMM. gu may be [M, 2F] with contiguous rows, or the transposed view of a row-major
    [2F, M] buffer (stride (1, M)), read in tiles."""
    quant = check_out(out, out_scale, "geglu")
    f = out.shape[-1]
    if gu.shape[-1] != 2 * f:
        raise ValueError(f"geglu: gu last dim {gu.shape[-1]} must be 2 * out last dim {f}")
    if gu.dim() == 2 and gu.shape[0] > 1 and gu.stride(1) != 1:
        if gu.stride(0) != 1:
            raise ValueError(f"geglu: gu {tuple(gu.shape)} with strides {gu.stride()} is neither row-major nor "
                             f"the transposed view of a row-major [2F, M] buffer")
        return _geglu_transposed(gu.t(), out, out_scale, quant)
    return _launch(gu, out, out_scale, quant, ACT_GEGLU, "geglu", f_off=f, n=2 * f)


def quantize_fp8(x: torch.Tensor, scale: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """out = e4m3(clamp(x / scale, -448, 448)). Site: attention output before o_proj; anything else
    without a fusable producer."""
    check_scale(scale, "quantize_fp8 scale")
    check_out(out, scale, "quantize_fp8")
    return _launch(x, out, scale, True, ACT_NONE, "quantize_fp8")
