"""The expert's whole MLP in one FP8 kernel: gate+up GEMM, GeGLU, FP8 quantization and the down GEMM's split-K
partials (issue 17: fewer, fatter kernels). Opt-in (`fused_expert_gemms` with "mlp"), until a same-run A/B on a GPU
says it beats the two kernels it replaces.

Why it can be one kernel: down's K dimension is gate+up's N dimension. A program that owns the intermediate columns
[f0, f0 + BF) computes their GeGLU activation (a [rows, BF] tile, FP8 with the geglu site's scale, exactly what
fp8_gemm_geglu writes) and can multiply it straight into down's rows [f0, f0 + BF) -- a K slice of down -- without
any other program's tile: the result is down's split-K partial number f0 / BF. So the activation never reaches
memory, one launch and one dependent phase disappear per expert layer (180 launches a 10-step inference), and the
next gated adaRMS sums F / BF partials instead of split_k (more partial bytes read there: the trade to measure).

What each program streams: 2 x BF x D gate/up weights and D x BF down weights (BF = 64, D = 1024, F = 4096:
192 KB, 64 programs) against today's 64 KB (gate+up, 128 programs) and 32 KB (down, 128 programs): fewer programs
each streaming more, one phase less. Measured on the CPU only so far: interpreter tests against the torch twin
(kernels/reference.fp8_gemm_mlp), compile checks for every target's tiles.

x [M, D] e4m3 (the norm's output), w_gu [2F, D] e4m3 ([gate; up], the geglu layout), w_down [D, F] e4m3 ([N, K],
the cuBLASLt layout), out_partials [F / BF, M, D] fp32 (the consumer sums them in order).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from flash_rt.kernels.tiles import FusedGemmConfig

from ._common import FP8, check_scale
from .activations import _gelu_tanh_f32
from .fp8_quant import e4m3_range, e4m3_rcp
from .gemm_fused import _fp8_mainloop
from .launch import launch_kw, pdl_enter

__all__ = ["fp8_gemm_mlp", "mlp_partials", "mlp_supported"]


@triton.jit
def _gemm_mlp_kernel(X, s_x, XS, WGU, s_gu, WGS, AS, WD, s_d, WDS, P, s_ps, s_pm, M,
                     D: tl.constexpr, F: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_F: tl.constexpr,
                     BLOCK_K: tl.constexpr, STAGES: tl.constexpr, PDL: tl.constexpr):
    f0 = tl.program_id(0) * BLOCK_F
    row0 = tl.program_id(1) * BLOCK_M
    pdl_enter(PDL)
    sc = tl.load(XS) * tl.load(WGS)     # scalars first: their loads overlap the main loop
    rcp = e4m3_rcp(AS)
    sd = tl.load(AS) * tl.load(WDS)
    g, u = _fp8_mainloop(X, s_x, WGU, s_gu, row0, M, 0, D, f0, F + f0, BLOCK_M, BLOCK_F, BLOCK_K, STAGES, True,
                         False)
    # the geglu site's FP8 activation, rounded as fp8_gemm_geglu stores it
    a = e4m3_range(_gelu_tanh_f32(g * sc) * (u * sc), rcp).to(WD.dtype.element_ty)
    rows = row0 + tl.arange(0, BLOCK_M)
    rmask = (rows < M)[:, None]
    cf = f0 + tl.arange(0, BLOCK_F)
    cn = tl.arange(0, BLOCK_F)
    for n0 in tl.range(0, D, BLOCK_F, num_stages=STAGES):     # down's output columns, BLOCK_F at a time
        wd = tl.load(WD + (n0 + cn).to(tl.int64)[:, None] * s_d + cf[None, :])
        acc = tl.dot(a, tl.trans(wd), max_num_imprecise_acc=BLOCK_F) * sd
        tl.store(P + tl.program_id(0) * s_ps + rows.to(tl.int64)[:, None] * s_pm + (n0 + cn)[None, :], acc,
                 mask=rmask)


def mlp_partials(w_gu: torch.Tensor, cfg: FusedGemmConfig) -> int:
    """How many split-K partials the fused MLP writes for gate/up weights w_gu [2F, D] (F / block_n)."""
    return (w_gu.shape[0] // 2) // cfg.block_n


def mlp_supported(x, w_gu, w_down, *, cfg: FusedGemmConfig) -> bool:
    """Whether `cfg` tiles this MLP exactly (FP8 operands, D a multiple of block_k and block_n, F of block_n);
    callers fall back to the gate+up and down kernels otherwise (the tiny test models' D = 32 / 64)."""
    if x.dtype != FP8 or w_gu.dtype != FP8 or w_down.dtype != FP8 or cfg.tma:
        return False
    d, f = x.shape[1], w_gu.shape[0] // 2
    return (w_gu.shape == (2 * f, d) and w_down.shape == (d, f) and d % cfg.block_k == 0
            and d % cfg.block_n == 0 and f % cfg.block_n == 0)


def fp8_gemm_mlp(x, x_scale, w_gu, gu_scale, act_scale, w_down, down_scale, *, out_partials,
                 cfg: FusedGemmConfig) -> torch.Tensor:
    """out_partials[s] = (e4m3(geglu(x @ w_gu.T * x_scale * gu_scale) / act_scale) @ w_down[:, Fs].T)
    * act_scale * down_scale for the intermediate slices Fs = [s * BF, (s + 1) * BF). fp32 [F / BF, M, D]."""
    if not mlp_supported(x, w_gu, w_down, cfg=cfg):
        raise ValueError(f"fp8_gemm_mlp: x {tuple(x.shape)} {x.dtype}, w_gu {tuple(w_gu.shape)} {w_gu.dtype}, "
                         f"w_down {tuple(w_down.shape)} {w_down.dtype} are not FP8 [M, D], [2F, D], [D, F] tiled "
                         f"by {cfg} (pointer loads only)")
    for s, nm in ((x_scale, "x_scale"), (gu_scale, "gu_scale"), (act_scale, "act_scale"),
                  (down_scale, "down_scale")):
        check_scale(s, "fp8_gemm_mlp " + nm)
    m, d = x.shape
    f = w_gu.shape[0] // 2
    p = out_partials
    sp = f // cfg.block_n
    if tuple(p.shape) != (sp, m, d) or p.dtype != torch.float32 or p.stride(2) != 1 or p.stride(1) != d:
        raise ValueError(f"fp8_gemm_mlp: out_partials must be contiguous fp32 [{sp}, {m}, {d}], got "
                         f"{tuple(p.shape)} {p.dtype}")
    if x.stride(1) != 1 or w_gu.stride(1) != 1 or w_down.stride(1) != 1:
        raise ValueError("fp8_gemm_mlp: x, w_gu and w_down need a contiguous last dim")
    grid = (sp, triton.cdiv(m, cfg.block_m))
    _gemm_mlp_kernel[grid](x, x.stride(0), x_scale, w_gu, w_gu.stride(0), gu_scale, act_scale, w_down,
                           w_down.stride(0), down_scale, p, p.stride(0), p.stride(1), m, D=d, F=f,
                           BLOCK_M=cfg.block_m, BLOCK_F=cfg.block_n, BLOCK_K=cfg.block_k, STAGES=cfg.stages,
                           num_warps=cfg.warps, **launch_kw())
    return p
