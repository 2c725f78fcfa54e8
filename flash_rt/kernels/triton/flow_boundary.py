"""The seam between two flow steps of the action expert as one kernel, one program per action row.

Flow step s ends with the expert's final gated adaRMS norm and action_out_proj + the Euler step of x_t; step s+1
begins with action_in_proj of the new x_t and layer 0's input adaRMS norm (FP8 for the qkv GEMM). Run as the
pieces, that is four launches per seam: a norm, the split-K flow kernel with its last-arriver tail
(`misc.linear_flow_update`), a cuBLAS fp32 GEMM (which also breaks the chain of programmatic launches) and a
second norm, each waiting on the one before. Every piece is row-local: a row of x_t needs only its own row of the
residual stream, and the two projections are [32 x 1024] fp32 matrices (128 KB each, L2-resident after the first
step). So one program per row can do all of it, with the row in registers:

  x   = residual + gate * sum(y splits)              (the last layer's MLP output, split-K partials)
  h   = rms(x) * (1 + scale) + shift                 (final adaRMS of step s)
  x_t += dt * (w_out @ h + b_out)                     (action_out_proj + Euler step, fp32)
  e   = x_t @ w_in + b_in  -> residual               (action_in_proj of step s+1, fp32)
  out = e4m3(rms(e) * (1 + scale') + shift')         (layer 0's input adaRMS of step s+1)

Without the `w_in` group (the last step) it stops after the Euler step and leaves x in the residual, as the
pieces do. Both weights are [A, D] row-major (w_out in nn.Linear's layout, w_in as the transpose the addmm of the
pieces reads), streamed in [CH, D] chunks so each fp32 product stays in registers. All math is fp32 FMA with
the norms' statistics (sums times 1/D, hardware rsqrt); only the GEMV summation order differs from the pieces'.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from ._common import check_fp32_rows, check_out, check_vec, next_pow2
from .fp8_quant import e4m3_range, e4m3_rcp
from .launch import launch_kw, pdl_enter

__all__ = ["flow_boundary", "flow_inpaint"]

@triton.jit
def _adarms(x, sc_ptr, sh_ptr, cols, cmask, eps, D: tl.constexpr):
    rstd = tl.math.rsqrt(tl.sum(x * x, axis=0) * (1.0 / D) + eps)
    sc = tl.load(sc_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    sh = tl.load(sh_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
    return x * rstd * (1.0 + sc) + sh


@triton.jit
def _flow_boundary_kernel(XT, s_xt, RES, s_r, Y, s_y, s_ysplit, GATE, SC, SH, WO, BO, dt, eps,
                          WI, BI, SC1, SH1, OUT, s_o, SCALE, EPS, s_e, TGT, s_tg, WR, W1R, t_inp,
                          D: tl.constexpr, A: tl.constexpr, BLOCK_D: tl.constexpr, SPLITS: tl.constexpr,
                          NEXT: tl.constexpr, QUANT: tl.constexpr, CH: tl.constexpr, INPAINT: tl.constexpr,
                          PDL: tl.constexpr):
    pdl_enter(PDL)
    rcp = e4m3_rcp(SCALE, QUANT)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    cmask = cols < D
    y = tl.load(Y + row * s_y + cols, mask=cmask, other=0.0).to(tl.float32)
    for sp in tl.static_range(1, SPLITS):          # split-K partials, summed in split order (as the norms do)
        y += tl.load(Y + sp * s_ysplit + row * s_y + cols, mask=cmask, other=0.0).to(tl.float32)
    g = tl.load(GATE + cols, mask=cmask, other=0.0).to(tl.float32)
    x = tl.load(RES + row * s_r + cols, mask=cmask, other=0.0) + y * g
    h = _adarms(x, SC, SH, cols, cmask, eps, D)
    # x_t[row, a] += dt * (w_out[a, :] . h + b_out[a]), CH action dims at a time
    ach = tl.arange(0, CH)
    for a0 in tl.static_range(0, A, CH):
        a = a0 + ach
        am = a < A
        w = tl.load(WO + a.to(tl.int64)[:, None] * D + cols[None, :], mask=am[:, None] & cmask[None, :], other=0.0)
        v = tl.sum(w * h[None, :], axis=1) + tl.load(BO + a, mask=am, other=0.0)
        xt = tl.load(XT + row * s_xt + a, mask=am, other=0.0) + dt * v
        if INPAINT:     # real-time chunking: x = w * (t * eps + (1 - t) * target) + (1 - w) * x (models/pi05/rtc.py)
            e0 = tl.load(EPS + row * s_e + a, mask=am, other=0.0)
            tg = tl.load(TGT + row * s_tg + a, mask=am, other=0.0)
            xt = tl.load(WR + row) * (e0 * t_inp + tg * (1.0 - t_inp)) + tl.load(W1R + row) * xt
        tl.store(XT + row * s_xt + a, xt, mask=am)
    if NEXT:
        tl.debug_barrier()      # this program's x_t stores are visible to all its threads before they reload it
        e = tl.load(BI + cols, mask=cmask, other=0.0)
        for a0 in tl.static_range(0, A, CH):
            a = a0 + ach
            am = a < A
            xt = tl.load(XT + row * s_xt + a, mask=am, other=0.0)
            w = tl.load(WI + a.to(tl.int64)[:, None] * D + cols[None, :], mask=am[:, None] & cmask[None, :],
                        other=0.0)
            e += tl.sum(xt[:, None] * w, axis=0)
        tl.store(RES + row * s_r + cols, e, mask=cmask)
        h1 = _adarms(e, SC1, SH1, cols, cmask, eps, D)
        if QUANT:
            h1 = e4m3_range(h1, rcp)
        tl.store(OUT + row * s_o + cols, h1.to(OUT.dtype.element_ty), mask=cmask)
    else:
        tl.store(RES + row * s_r + cols, x, mask=cmask)


def flow_boundary(x_t: torch.Tensor, residual: torch.Tensor, y: torch.Tensor, gate: torch.Tensor,
                  mod_scale: torch.Tensor, mod_shift: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor,
                  dt: float, eps: float = 1e-6, *, w_in: Optional[torch.Tensor] = None,
                  b_in: Optional[torch.Tensor] = None, next_scale: Optional[torch.Tensor] = None,
                  next_shift: Optional[torch.Tensor] = None, out: Optional[torch.Tensor] = None,
                  out_scale: Optional[torch.Tensor] = None, chunk: int, num_warps: int,
                  inpaint: Optional[tuple] = None) -> torch.Tensor:
    """End flow step s and (with w_in, b_in, next_scale, next_shift, out) begin step s+1; see the module doc.
    x_t [M, A] and residual [M, D] fp32 are updated in place; y is the last MLP output [M, D] or its split-K
    partials [S, M, D] (fp32); w_out, w_in [A, D] fp32; out [M, D] bf16 or e4m3 (with out_scale). Returns x_t.
    chunk (action rows of a weight chunk, a power of two) and num_warps come from the target's tuning table
    (kernels/tiles.FlowTiles; Hopper's 16 / 4 warps: 5.90 us a call, against 12.39 us for the four pieces).
    inpaint: None, or (eps, target, w, w1, t) -- real-time chunking's blend (flow_inpaint) applied to each row right
    after its Euler step, before action_in reads it; None compiles the kernel without it (INPAINT=False)."""
    m, a = x_t.shape
    d = residual.shape[-1]
    check_fp32_rows(x_t, (m, a), "flow_boundary: x_t")
    check_fp32_rows(residual, (m, d), "flow_boundary: residual")
    splits = y.shape[0] if y.dim() == 3 else 1
    ys = y if y.dim() == 3 else y[None]
    if tuple(ys.shape[1:]) != (m, d) or ys.stride(-1) != 1 or (splits > 1 and ys.stride(0) < m * d):
        raise ValueError(f"flow_boundary: y must be [{m}, {d}] or split-K partials [S, {m}, {d}] with contiguous "
                         f"rows, got {tuple(y.shape)} strides {y.stride()}")
    check_fp32_rows(w_out, (a, d), "flow_boundary: w_out")
    for v, nm, n in ((gate, "gate", d), (mod_scale, "mod_scale", d), (mod_shift, "mod_shift", d),
                     (b_out, "b_out", a)):
        check_vec(v, n, f"flow_boundary {nm}")
    nxt = (w_in, b_in, next_scale, next_shift, out)
    if any(t is not None for t in nxt) and any(t is None for t in nxt):
        raise ValueError("flow_boundary: the next step's w_in, b_in, next_scale, next_shift and out go together")
    begin = w_in is not None
    quant = False
    if begin:
        check_fp32_rows(w_in, (a, d), "flow_boundary: w_in")
        for v, nm in ((b_in, "b_in"), (next_scale, "next_scale"), (next_shift, "next_shift")):
            check_vec(v, d, f"flow_boundary {nm}")
        if tuple(out.shape) != (m, d) or out.stride(-1) != 1:
            raise ValueError(f"flow_boundary: out must be [{m}, {d}] with contiguous rows, got {tuple(out.shape)}")
        quant = check_out(out, out_scale, "flow_boundary")
    if inpaint is not None:
        _check_inpaint(x_t, *inpaint, "flow_boundary")
    if m == 0:
        return x_t
    dummy = residual
    inp = inpaint if inpaint is not None else (dummy, dummy, dummy, dummy, 0.0)
    _flow_boundary_kernel[(m,)](
        x_t, x_t.stride(0), residual, residual.stride(0), ys, ys.stride(1), ys.stride(0), gate, mod_scale,
        mod_shift, w_out, b_out, float(dt), float(eps),
        w_in if begin else dummy, b_in if begin else dummy, next_scale if begin else dummy,
        next_shift if begin else dummy, out if begin else dummy, out.stride(0) if begin else 0,
        out_scale if quant else dummy, inp[0], inp[0].stride(0), inp[1], inp[1].stride(0), inp[2], inp[3],
        float(inp[4]),
        D=d, A=a, BLOCK_D=next_pow2(d), SPLITS=splits, NEXT=begin, QUANT=quant, CH=chunk,
        INPAINT=inpaint is not None, num_warps=num_warps, **launch_kw())
    return x_t


def _check_inpaint(x, eps, target, w, w1, t, who: str) -> None:
    m, a = x.shape
    check_fp32_rows(eps, (m, a), f"{who}: inpaint eps")
    check_fp32_rows(target, (m, a), f"{who}: inpaint target")
    check_vec(w, m, f"{who} inpaint w")
    check_vec(w1, m, f"{who} inpaint w1")
    if not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"{who}: inpaint time must be in [0, 1], got {t}")


@triton.jit
def _flow_inpaint_kernel(X, s_x, EPS, s_e, TGT, s_tg, WR, W1R, t, A: tl.constexpr, BLOCK_A: tl.constexpr,
                         PDL: tl.constexpr):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    a = tl.arange(0, BLOCK_A)
    am = a < A
    x = tl.load(X + row * s_x + a, mask=am, other=0.0)
    e0 = tl.load(EPS + row * s_e + a, mask=am, other=0.0)
    tg = tl.load(TGT + row * s_tg + a, mask=am, other=0.0)
    x = tl.load(WR + row) * (e0 * t + tg * (1.0 - t)) + tl.load(W1R + row) * x
    tl.store(X + row * s_x + a, x, mask=am)


def flow_inpaint(x: torch.Tensor, eps: torch.Tensor, target: torch.Tensor, w: torch.Tensor, w1: torch.Tensor,
                 t: float) -> torch.Tensor:
    """Real-time chunking's blend in place, one program per action row: x = w * (t * eps + (1 - t) * target) +
    w1 * x with w1 = 1 - w precomputed (w = 1 gives target's path exactly, w = 0 the identity). x, eps, target
    [M, A] fp32, w / w1 [M] fp32; t a Python float (the flow schedule is fixed, so it is a constant of the graph).
    Used by the unfused seam (the twins); production fuses it into flow_boundary."""
    _check_inpaint(x, eps, target, w, w1, t, "flow_inpaint")
    m, a = x.shape
    if m:
        _flow_inpaint_kernel[(m,)](x, x.stride(0), eps, eps.stride(0), target, target.stride(0), w, w1, float(t),
                                   A=a, BLOCK_A=next_pow2(a), num_warps=1, **launch_kw())
    return x
