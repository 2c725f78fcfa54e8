"""Row norms with their residual add, modulation and FP8 quantization fused into one launch.

Why fused: every norm site in Pi0.5 sits between a GEMM that produced ``y`` and a GEMM that consumes
the normed row (in FP8). Unfused that is add -> norm -> (1+w) -> modulate -> quantize: 3-5 launches of
~1 us each inside a CUDA graph plus as many round trips of the row through HBM. Here it is one launch
per site: one program per row (or per tile of TRANSPOSED_ROWS rows when y is a transposed view) keeps the row
in registers (BLOCK = next_pow2(D)), reads every input once and writes the residual (in place) and the
normed, optionally quantized, output once.

All six public kernels share ``_norm_row_kernel``; constexpr flags select the variant, so each site
compiles exactly the code it needs. Statistics are fp32: mean and variance as sums times 1/D (exact for
power-of-two D), rstd with the hardware rsqrt (~1 ulp). Correctly rounded division and square root
(`div_rn`, `sqrt_rn`) sit on the critical path of every norm launch, and a per-element `div_rn` was measured
at 1.3-2.4 us per call elsewhere (kernels/triton/fp8_quant.py). The norm reads the residual *as stored*
(rounded to the residual's dtype), exactly like the torch twin in ``flash_rt.kernels.reference``.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import (MAX_ROW_BLOCK, as_rows, check_out, check_vec, next_pow2, row_warps,
                      same_rows)
from .fp8_quant import e4m3_range, e4m3_rcp
from .launch import launch_kw, pdl_enter

__all__ = ["rms_norm", "add_rms_norm", "layer_norm", "add_layer_norm", "ada_rms_norm",
           "gated_add_ada_rms_norm"]

@triton.jit
def _norm_row_kernel(X, sx, sxc, sx_split, R, sr, G, W, B, MSC, MSH, OUT, so, SCALE, eps, M,
                     D: tl.constexpr, BLOCK: tl.constexpr, ROWS: tl.constexpr, HAS_RES: tl.constexpr,
                     GATED: tl.constexpr, IS_LN: tl.constexpr, HAS_W: tl.constexpr, HAS_B: tl.constexpr,
                     ADA: tl.constexpr, QUANT: tl.constexpr, SPLITS: tl.constexpr, PDL: tl.constexpr):
    """ROWS rows per program (1 for row-major X; a tile when X is a transposed view, see _launch)."""
    pdl_enter(PDL)
    if QUANT:
        rcp = e4m3_rcp(SCALE)   # issued first: its load overlaps the row's
    row = (tl.program_id(0) * ROWS + tl.arange(0, ROWS)).to(tl.int64)[:, None]
    cols = tl.arange(0, BLOCK)[None, :]
    cmask = cols < D
    mask = cmask & (row < M)
    x = tl.load(X + row * sx + cols * sxc, mask=mask, other=0.0).to(tl.float32)
    for sp in tl.static_range(1, SPLITS):     # split-K GEMM partials, summed in a fixed order (deterministic)
        x += tl.load(X + sp * sx_split + row * sx + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        # X holds the branch output y; R is the residual stream, updated in place.
        r = tl.load(R + row * sr + cols, mask=mask, other=0.0).to(tl.float32)
        if GATED:
            g = tl.load(G + cols, mask=cmask, other=0.0).to(tl.float32)
            x = r + x * g
        else:
            x = r + x
        xr = x.to(R.dtype.element_ty)
        tl.store(R + row * sr + cols, xr, mask=mask)
        x = xr.to(tl.float32)          # normalize what was stored
    if IS_LN:
        mean = tl.sum(x, axis=1, keep_dims=True) * (1.0 / D)   # exact for power-of-two D
        x = tl.where(mask, x - mean, 0.0)
    var = tl.sum(x * x, axis=1, keep_dims=True) * (1.0 / D)
    rstd = tl.math.rsqrt(var + eps)
    y = x * rstd
    if HAS_W:
        w = tl.load(W + cols, mask=cmask, other=0.0).to(tl.float32)
        if IS_LN:
            y = y * w
        else:
            y = y * (1.0 + w)          # Gemma stores RMSNorm weights as offsets from 1
    if HAS_B:
        y = y + tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)
    if ADA:
        sc = tl.load(MSC + cols, mask=cmask, other=0.0).to(tl.float32)
        sh = tl.load(MSH + cols, mask=cmask, other=0.0).to(tl.float32)
        y = y * (1.0 + sc) + sh
    if QUANT:
        y = e4m3_range(y, rcp)
    tl.store(OUT + row * so + cols, y.to(OUT.dtype.element_ty), mask=mask)


# Rows per program when y is a transposed view ([M, D] with stride (1, M): a GEMM written as W @ act.T, see
# runtime/quant.linear). A [8, D] tile reads 8 consecutive elements (16 bytes of bf16) of
# every column; one row per program would touch a 32-byte sector per element.
TRANSPOSED_ROWS = 8


def _launch(x, out, out_scale, eps, name, *, residual=None, gate=None, weight=None, bias=None,
            mod_scale=None, mod_shift=None, is_ln=False):
    splits, s_split = 1, 0
    if residual is not None and x.dim() == residual.dim() + 1:   # y given as split-K partials [S, M, D]
        if x.stride(-1) != 1 or (x.dim() == 3 and x.shape[1] > 1 and x.stride(1) != x.shape[2]):
            raise ValueError(f"{name}: split-K partials {tuple(x.shape)} need contiguous [M, D] slices")
        splits, s_split = x.shape[0], x.stride(0)
        x = x[0]
    transposed = x.dim() == 2 and x.shape[1] > 1 and x.stride(1) != 1 and x.stride(0) == 1
    if transposed:   # y^T stored row-major: rows of y are columns of the buffer
        xr, sxc, rows_per_prog = (x, x.shape[0], x.shape[1], 1), x.stride(1), TRANSPOSED_ROWS
    else:
        xr, sxc, rows_per_prog = as_rows(x, name + " x"), 1, 1
    orows = as_rows(out, name + " out")
    same_rows(xr, orows, name)
    _, m, d, sx = xr
    if d > MAX_ROW_BLOCK:
        raise ValueError(f"{name}: row width {d} > {MAX_ROW_BLOCK} is not supported by the one-row kernel")
    quant = check_out(out, out_scale, name)
    if residual is not None:
        rr = as_rows(residual, name + " residual")
        same_rows(xr, rr, name)
        r_t, sr = rr[0], rr[3]
    else:
        r_t, sr = xr[0], 0
    for v, vn in ((gate, "gate"), (weight, "weight"), (bias, "bias"), (mod_scale, "mod_scale"),
                  (mod_shift, "mod_shift")):
        check_vec(v, d, f"{name} {vn}")
    if m == 0:
        return out
    dummy = xr[0]
    block = next_pow2(d)
    _norm_row_kernel[(triton.cdiv(m, rows_per_prog),)](
        xr[0], sx, sxc, s_split, r_t, sr,
        dummy if gate is None else gate, dummy if weight is None else weight, dummy if bias is None else bias,
        dummy if mod_scale is None else mod_scale, dummy if mod_shift is None else mod_shift,
        orows[0], orows[3], dummy if out_scale is None else out_scale, float(eps), m,
        D=d, BLOCK=block, ROWS=rows_per_prog, HAS_RES=residual is not None, GATED=gate is not None, IS_LN=is_ln,
        HAS_W=weight is not None, HAS_B=bias is not None, ADA=mod_scale is not None, QUANT=quant,
        SPLITS=splits, num_warps=row_warps(block * rows_per_prog), **launch_kw())
    return out


def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor] = None, eps: float = 1e-6, *,
             out: torch.Tensor, out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Gemma RMSNorm (x * rsqrt(mean x^2 + eps) * (1 + w)) [-> e4m3 with out_scale]. Site: Gemma layer-0
    input norm (later layers get theirs from add_rms_norm)."""
    return _launch(x, out, out_scale, eps, "rms_norm", weight=weight)


def add_rms_norm(residual: torch.Tensor, y: torch.Tensor, weight: Optional[torch.Tensor] = None,
                 eps: float = 1e-6, *, out: torch.Tensor, out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """residual += y; out = rms_norm(residual). Sites: Gemma post-attention norm, next layer's input norm
    after the MLP, the final norm."""
    return _launch(y, out, out_scale, eps, "add_rms_norm", residual=residual, weight=weight)


def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor], eps: float = 1e-6, *,
               out: torch.Tensor, out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """LayerNorm (fp32 stats) [-> e4m3]. Sites: SigLIP layer-0 layer_norm1 and post_layernorm."""
    return _launch(x, out, out_scale, eps, "layer_norm", weight=weight, bias=bias, is_ln=True)


def add_layer_norm(residual: torch.Tensor, y: torch.Tensor, weight: Optional[torch.Tensor],
                   bias: Optional[torch.Tensor], eps: float = 1e-6, *, out: torch.Tensor,
                   out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """residual += y; out = layer_norm(residual). Sites: SigLIP layer_norm2, and layer_norm1 of the next
    layer fused with the fc2 residual; post_layernorm after the last fc2."""
    return _launch(y, out, out_scale, eps, "add_layer_norm", residual=residual, weight=weight, bias=bias,
                   is_ln=True)


def ada_rms_norm(x: torch.Tensor, mod_scale: torch.Tensor, mod_shift: torch.Tensor, eps: float = 1e-6, *,
                 out: torch.Tensor, out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Pi0.5 adaRMS: rms(x) * (1 + scale) + shift [-> e4m3]. Site: action-expert layer-0 input norm."""
    return _launch(x, out, out_scale, eps, "ada_rms_norm", mod_scale=mod_scale, mod_shift=mod_shift)


def gated_add_ada_rms_norm(residual: torch.Tensor, y: torch.Tensor, gate: torch.Tensor, mod_scale: torch.Tensor,
                           mod_shift: torch.Tensor, eps: float = 1e-6, *, out: torch.Tensor,
                           out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """residual += y * gate; out = ada_rms_norm(residual). Sites: expert post-attention norm, next layer's
    input norm after the MLP, the expert's final norm. y may be split-K partials [S, M, D] (fp32, from
    fp8_gemm_splitk): they are summed in split order first."""
    return _launch(y, out, out_scale, eps, "gated_add_ada_rms_norm", residual=residual, gate=gate,
                   mod_scale=mod_scale, mod_shift=mod_shift)
