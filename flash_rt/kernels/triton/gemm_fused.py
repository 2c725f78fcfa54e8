"""FP8 GEMMs for small M (the action expert's M = horizon = 10..64 rows) with the next op in the epilogue.

Why: in the 10 expert steps every GEMM is latency-bound (M = 50: cuBLASLt runs the [50 x 1024] x [1024 x 8192]
gate+up in 5.1 us at 165 TF/s, H100; docs/benchmarks.md), and each is followed by a small elementwise kernel
that re-reads its output: GeGLU after gate+up (~3 us) and RoPE + QKV split + KV-cache write after qkv (3.7 us),
x 18 layers x 10 steps. Doing that work in the GEMM's epilogue deletes 360 launches per inference and a bf16
round trip of the GEMM output.

One kernel, two accumulators: a program owns a column tile c1 and its partner c2 and streams the FP8 weight
rows of both while the (tiny, L2-resident) activation tile is re-read per K step.
* GeGLU: c1 = gate columns [n, n + BN), c2 = the matching up columns F + [n, n + BN);
  out = e4m3(gelu_tanh(gate) * up / out_scale).
* RoPE QKV: c1 = dims [j, j + BN) of one head, c2 = dims H/2 + [j, j + BN) (rotate_half partners); q heads go
  to q_out [N, M, H], k heads rotated and v heads copied into the KV-cache slices [K, M, H].
Weights are stored [N, K] row-major (the cuBLASLt layout), so the B operand is K-major as wgmma wants.
Accumulation: fp32, promoted once per BLOCK_K (max_num_imprecise_acc = BLOCK_K), like cuBLASLt without fast
accumulation. Every shape must tile exactly (K % BLOCK_K, F % BN, (H/2) % BN); rows are masked.
Tiles (kernels/tiles.FusedGemmConfig) come from the target's tuning table (hardware/<hw>/tuning.py): rows per
program are one MMA tile (64); the kernels stream weights, so padded rows cost nothing and M = 10 takes the same
compiled path as M = 50.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from flash_rt.kernels.tiles import FusedGemmConfig

from ._common import FP8, check_out, check_scale
from .activations import _gelu_tanh_f32
from .rope import rope_cos_sin, rope_inv_freq_table
from .fp8_quant import e4m3_range, e4m3_rcp
from .launch import launch_kw, pdl_enter

__all__ = ["fp8_gemm_geglu", "fp8_gemm_rope_qkv", "fp8_gemm_splitk", "fused_gemm_supported", "FusedGemmConfig"]


def _operands(cfg: FusedGemmConfig, x: torch.Tensor, w: torch.Tensor, name: str):
    """(X, s_x, W, s_w) kernel arguments: TMA tensor descriptors (strides unused) or pointers."""
    if not cfg.tma:
        return x, x.stride(0), w, w.stride(0)
    if not (tma_ok(x) and tma_ok(w)):
        raise ValueError(f"{name}: TMA tiles need 16-byte aligned x and w (base and row stride); got strides "
                         f"{x.stride()} {w.stride()}")
    return (TensorDescriptor.from_tensor(x, [cfg.block_m, cfg.block_k]), 0,
            TensorDescriptor.from_tensor(w, [cfg.block_n, cfg.block_k]), 0)


def tma_ok(t: torch.Tensor) -> bool:
    """What the copy engine needs of a 2-D operand: 16-byte aligned base and row stride, contiguous rows."""
    return t.dim() == 2 and t.stride(1) == 1 and t.data_ptr() % 16 == 0 and (t.stride(0) * t.element_size()) % 16 == 0


@triton.jit
def _fp8_mainloop(X, s_x, W, s_w, row0, M, k0, K_LEN: tl.constexpr, n1, n2,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
                  DUAL: tl.constexpr, TMA: tl.constexpr):
    """acc1 (and acc2 when DUAL) = x[rows, k0:k0+K_LEN] @ w[n1 (n2) + BN, same K].T, fp32, promoted per BLOCK_K.
    TMA: X and W are tensor descriptors (blocks [BLOCK_M, BLOCK_K] and [BLOCK_N, BLOCK_K]); the copy engine
    fetches whole tiles (rows past M zero-filled), so more weight bytes are in flight per program than with
    pointer loads. Otherwise X and W are pointers with row strides s_x / s_w."""
    rows = row0 + tl.arange(0, BLOCK_M)
    cn = tl.arange(0, BLOCK_N)
    ck = tl.arange(0, BLOCK_K)
    rmask = rows < M
    acc1 = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    acc2 = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for kk in tl.range(0, K_LEN, BLOCK_K, num_stages=STAGES):
        k = k0 + kk
        if TMA:
            a = X.load([row0, k])
            b1 = W.load([n1, k])
        else:
            a = tl.load(X + rows.to(tl.int64)[:, None] * s_x + (k + ck)[None, :], mask=rmask[:, None], other=0.0)
            b1 = tl.load(W + (n1 + cn).to(tl.int64)[:, None] * s_w + (k + ck)[None, :])
        acc1 = tl.dot(a, tl.trans(b1), acc1, max_num_imprecise_acc=BLOCK_K)
        if DUAL:
            if TMA:
                b2 = W.load([n2, k])
            else:
                b2 = tl.load(W + (n2 + cn).to(tl.int64)[:, None] * s_w + (k + ck)[None, :])
            acc2 = tl.dot(a, tl.trans(b2), acc2, max_num_imprecise_acc=BLOCK_K)
    return acc1, acc2


@triton.jit
def _fp8_pair_mainloop(X, s_x, W, s_w, row0, M, K_LEN: tl.constexpr, n1, n2,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr):
    """_fp8_mainloop's two accumulators from one MMA: the weight rows n1 + [0, BN) and n2 + [0, BN) loaded as one
    [2 BN, BLOCK_K] tile (pointer loads) and split after the loop. Why: Triton's dot needs N >= 16, and 8-column
    pairs double the programs of the qkv GEMM (80 -> 160 at Pi0.5's 10 heads), each streaming half the weights."""
    rows = row0 + tl.arange(0, BLOCK_M)
    c2 = tl.arange(0, 2 * BLOCK_N)
    wrow = tl.where(c2 < BLOCK_N, n1 + c2, n2 + c2 - BLOCK_N).to(tl.int64)
    ck = tl.arange(0, BLOCK_K)
    rmask = rows < M
    acc = tl.zeros((BLOCK_M, 2 * BLOCK_N), tl.float32)
    for k in tl.range(0, K_LEN, BLOCK_K, num_stages=STAGES):
        a = tl.load(X + rows.to(tl.int64)[:, None] * s_x + (k + ck)[None, :], mask=rmask[:, None], other=0.0)
        b = tl.load(W + wrow[:, None] * s_w + (k + ck)[None, :])
        acc = tl.dot(a, tl.trans(b), acc, max_num_imprecise_acc=BLOCK_K)
    # [BM, 2 BN] -> [BM, BN, 2] -> the n1 and the n2 columns
    return tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N)), (0, 2, 1)))


@triton.jit
def _gemm_splitk_kernel(X, s_x, XS, W, s_w, WS, P, s_ps, s_pm, M, K_SPLIT: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
                        TMA: tl.constexpr, PDL: tl.constexpr):
    n = tl.program_id(0) * BLOCK_N
    k0 = tl.program_id(1) * K_SPLIT
    pdl_enter(PDL)
    row0 = tl.program_id(2) * BLOCK_M
    sc = tl.load(XS) * tl.load(WS)
    acc, _ = _fp8_mainloop(X, s_x, W, s_w, row0, M, k0, K_SPLIT, n, n, BLOCK_M, BLOCK_N, BLOCK_K, STAGES,
                           False, TMA)
    acc = acc * sc
    rows = row0 + tl.arange(0, BLOCK_M)
    cn = tl.arange(0, BLOCK_N)
    tl.store(P + tl.program_id(1) * s_ps + rows.to(tl.int64)[:, None] * s_pm + (n + cn)[None, :], acc,
             mask=(rows < M)[:, None])


@triton.jit
def _gemm_geglu_kernel(X, s_x, XS, W, s_w, WS, OUT, s_o, OS, M, K: tl.constexpr, F,
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
                       QUANT: tl.constexpr, TMA: tl.constexpr, PDL: tl.constexpr):
    n = tl.program_id(0) * BLOCK_N
    row0 = tl.program_id(1) * BLOCK_M
    pdl_enter(PDL)
    sc = tl.load(XS) * tl.load(WS)     # scalars first: their loads overlap the main loop
    if QUANT:
        rcp = e4m3_rcp(OS)
    g, u = _fp8_mainloop(X, s_x, W, s_w, row0, M, 0, K, n, F + n, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, True, TMA)
    y = _gelu_tanh_f32(g * sc) * (u * sc)
    if QUANT:
        y = e4m3_range(y, rcp)
    rows = row0 + tl.arange(0, BLOCK_M)
    cols = n + tl.arange(0, BLOCK_N)
    tl.store(OUT + rows.to(tl.int64)[:, None] * s_o + cols[None, :], y.to(OUT.dtype.element_ty),
             mask=(rows < M)[:, None])


@triton.jit
def _gemm_rope_qkv_kernel(X, s_x, XS, W, s_w, WS, POS, INV, Q, sq_h, sq_m, KC, sk_h, sk_m, VC, sv_h, sv_m, M,
                          K: tl.constexpr,
                          NQ: tl.constexpr, NK: tl.constexpr, H: tl.constexpr,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                          STAGES: tl.constexpr, TMA: tl.constexpr, PDL: tl.constexpr):
    HALF: tl.constexpr = H // 2
    TILES: tl.constexpr = HALF // BLOCK_N
    head = tl.program_id(0) // TILES
    j0 = (tl.program_id(0) % TILES) * BLOCK_N
    row0 = tl.program_id(1) * BLOCK_M
    n1 = head * H + j0
    pdl_enter(PDL)
    sc = tl.load(XS) * tl.load(WS)
    j = j0 + tl.arange(0, BLOCK_N)
    inv = tl.load(INV + j)             # before the main loop, like the scales: off the epilogue's path
    if BLOCK_N < 16:   # FusedGemmConfig.pairs_in_one_mma
        x1, x2 = _fp8_pair_mainloop(X, s_x, W, s_w, row0, M, K, n1, n1 + HALF, BLOCK_M, BLOCK_N, BLOCK_K, STAGES)
    else:
        x1, x2 = _fp8_mainloop(X, s_x, W, s_w, row0, M, 0, K, n1, n1 + HALF, BLOCK_M, BLOCK_N, BLOCK_K, STAGES,
                               True, TMA)
    a = x1 * sc
    b = x2 * sc
    rows = row0 + tl.arange(0, BLOCK_M)
    rmask = (rows < M)[:, None]
    r64 = rows.to(tl.int64)[:, None]
    if head < NQ + NK:
        pos = tl.load(POS + rows, mask=rows < M, other=0).to(tl.float32)
        c, s = rope_cos_sin(pos, inv)    # the angles exactly as rope.py computes them
        o1 = a * c - b * s
        o2 = b * c + a * s
        if head < NQ:
            dst = Q + head * sq_h + r64 * sq_m + j[None, :]
        else:
            dst = KC + (head - NQ) * sk_h + r64 * sk_m + j[None, :]
        tl.store(dst, o1.to(dst.dtype.element_ty), mask=rmask)
        tl.store(dst + HALF, o2.to(dst.dtype.element_ty), mask=rmask)
    else:
        dst = VC + (head - NQ - NK) * sv_h + r64 * sv_m + j[None, :]
        tl.store(dst, a.to(dst.dtype.element_ty), mask=rmask)
        tl.store(dst + HALF, b.to(dst.dtype.element_ty), mask=rmask)


def fused_gemm_supported(op: str, x, w, head_dim: int | None, splits: int | None, *, cfg: FusedGemmConfig) -> bool:
    """Whether `cfg`'s tiles cover this site exactly (the tiny test models' K = 64 do not) and, for TMA tiles,
    the operands are aligned: callers fall back to GEMM + separate epilogue kernel otherwise."""
    if x.dtype != FP8 or w.dtype != FP8:
        return False
    if op not in ("geglu", "rope_qkv", "splitk"):
        raise ValueError(f"fused_gemm_supported: unknown op {op!r}")
    c = cfg
    if op == "geglu":
        ok = x.shape[1] % c.block_k == 0 and (w.shape[0] // 2) % c.block_n == 0 and w.shape[0] % 2 == 0
    elif op == "rope_qkv":
        ok = head_dim is not None and x.shape[1] % c.block_k == 0 and (head_dim // 2) % c.block_n == 0 \
            and c.pairs_in_one_mma() is not None
    else:
        ok = bool(splits) and x.shape[1] % (splits * c.block_k) == 0 and w.shape[0] % c.block_n == 0
    return bool(ok) and (not c.tma or (tma_ok(x) and tma_ok(w)))


def _check_fp8_operands(x, x_scale, w, w_scale, name):
    if x.dtype != FP8 or w.dtype != FP8:
        raise ValueError(f"{name}: x and w must be float8_e4m3fn, got {x.dtype} and {w.dtype}")
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"{name}: x {tuple(x.shape)} and w {tuple(w.shape)} must be [M, K] and [N, K]")
    if x.stride(1) != 1 or w.stride(1) != 1:
        raise ValueError(f"{name}: x and w need a contiguous last dim, strides {x.stride()} {w.stride()}")
    check_scale(x_scale, name + " x_scale")
    check_scale(w_scale, name + " w_scale")


def fp8_gemm_geglu(x, x_scale, w, w_scale, *, out, out_scale=None, cfg: FusedGemmConfig):
    """out[M, F] = gelu_tanh(g) * u with [g | u] = (x @ w.T) * x_scale * w_scale, w = [gate; up] [2F, K] e4m3.
    FP8 out (with out_scale) feeds the down GEMM directly. Site: the expert's fused gate+up GEMM."""
    _check_fp8_operands(x, x_scale, w, w_scale, "fp8_gemm_geglu")
    quant = check_out(out, out_scale, "fp8_gemm_geglu")
    m, k = x.shape
    f = w.shape[0] // 2
    if w.shape[0] != 2 * f or tuple(out.shape) != (m, f) or out.stride(1) != 1:
        raise ValueError(f"fp8_gemm_geglu: w {tuple(w.shape)} must be [2F, K] and out {tuple(out.shape)} [M, F]")
    if f % cfg.block_n or k % cfg.block_k:
        raise ValueError(f"fp8_gemm_geglu: F={f} must be a multiple of {cfg.block_n} and K={k} of {cfg.block_k}")
    grid = (f // cfg.block_n, triton.cdiv(m, cfg.block_m))
    xa, sxa, wa, swa = _operands(cfg, x, w, "fp8_gemm_geglu")
    _gemm_geglu_kernel[grid](xa, sxa, x_scale, wa, swa, w_scale, out, out.stride(0),
                             out_scale if quant else x_scale, m, k, f, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
                             BLOCK_K=cfg.block_k, STAGES=cfg.stages, QUANT=quant, TMA=cfg.tma, num_warps=cfg.warps,
                             **launch_kw())
    return out


def fp8_gemm_rope_qkv(x, x_scale, w, w_scale, positions, *, q_out, k_out, v_out, theta: float = 10000.0,
                      cfg: FusedGemmConfig):
    """qkv = (x @ w.T) * scales, then rope_qkv_split's contract: q_out [N, M, H] rotated, k_out [K, M, H]
    rotated and v_out [K, M, H] copied (k_out / v_out may be row slices of a KV cache). The qkv rows never
    reach memory. Site: the expert's fused qkv GEMM."""
    _check_fp8_operands(x, x_scale, w, w_scale, "fp8_gemm_rope_qkv")
    n, m, h = q_out.shape
    kh = k_out.shape[0]
    bn = cfg.block_n
    if w.shape[0] != (n + 2 * kh) * h or tuple(k_out.shape) != (kh, m, h) or tuple(v_out.shape) != (kh, m, h) \
            or x.shape[0] != m or tuple(positions.shape) != (m,):
        raise ValueError(f"fp8_gemm_rope_qkv: x {tuple(x.shape)}, w {tuple(w.shape)}, positions "
                         f"{tuple(positions.shape)}, q_out {tuple(q_out.shape)}, k_out {tuple(k_out.shape)}, "
                         f"v_out {tuple(v_out.shape)} disagree")
    if (h // 2) % bn or x.shape[1] % cfg.block_k or h % 2:
        raise ValueError(f"fp8_gemm_rope_qkv: head_dim/2={h // 2} must be a multiple of {bn} and "
                         f"K={x.shape[1]} of {cfg.block_k}")
    if cfg.pairs_in_one_mma() is None:
        raise ValueError(f"fp8_gemm_rope_qkv: {bn}-column pairs are one MMA of 2 x {bn} columns on pointer loads; "
                         f"block_n must be 4 or 8 there (or >= 16) and tma off, got {cfg}")
    if positions.dtype not in (torch.int32, torch.int64) or (m > 1 and positions.stride(0) != 1):
        raise ValueError("fp8_gemm_rope_qkv: positions must be contiguous int32/int64")
    for t, nm in ((q_out, "q_out"), (k_out, "k_out"), (v_out, "v_out")):
        if t.stride(-1) != 1:
            raise ValueError(f"fp8_gemm_rope_qkv: {nm} needs a contiguous last dim, strides {t.stride()}")
    grid = ((n + 2 * kh) * (h // 2 // bn), triton.cdiv(m, cfg.block_m))
    xa, sxa, wa, swa = _operands(cfg, x, w, "fp8_gemm_rope_qkv")
    inv = rope_inv_freq_table(h, theta, x.device)
    _gemm_rope_qkv_kernel[grid](xa, sxa, x_scale, wa, swa, w_scale, positions, inv,
                                q_out, q_out.stride(0), q_out.stride(1), k_out, k_out.stride(0), k_out.stride(1),
                                v_out, v_out.stride(0), v_out.stride(1), m, x.shape[1], NQ=n, NK=kh, H=h,
                                BLOCK_M=cfg.block_m, BLOCK_N=bn, BLOCK_K=cfg.block_k,
                                STAGES=cfg.stages, TMA=cfg.tma, num_warps=cfg.warps, **launch_kw())
    return q_out, k_out, v_out


def fp8_gemm_splitk(x, x_scale, w, w_scale, *, out_partials, cfg: FusedGemmConfig):
    """out_partials[s] = (x[:, Ks] @ w[:, Ks].T) * x_scale * w_scale (fp32 [S, M, N]) for S equal K ranges.
    Why: the expert's o (K = 2048) and down (K = 4096) GEMMs have N = 1024, i.e. only 32 column tiles, too few
    programs to stream the weights at M = 50; S K-ranges multiply the programs. No atomics: the consumer,
    gated_add_ada_rms_norm, sums the S partials in a fixed order, so results are deterministic, and the GEMM
    output is never rounded to bf16."""
    _check_fp8_operands(x, x_scale, w, w_scale, "fp8_gemm_splitk")
    m, k = x.shape
    n = w.shape[0]
    p = out_partials
    if p.dim() != 3 or tuple(p.shape[1:]) != (m, n) or p.dtype != torch.float32 or p.stride(2) != 1 \
            or p.stride(1) != n:
        raise ValueError(f"fp8_gemm_splitk: out_partials must be contiguous fp32 [S, {m}, {n}], got "
                         f"{tuple(p.shape)} {p.dtype}")
    sp = p.shape[0]
    if k % (sp * cfg.block_k) or n % cfg.block_n:
        raise ValueError(f"fp8_gemm_splitk: K={k} must be a multiple of S*BK = {sp}*{cfg.block_k} and N={n} of "
                         f"{cfg.block_n}")
    grid = (n // cfg.block_n, sp, triton.cdiv(m, cfg.block_m))
    xa, sxa, wa, swa = _operands(cfg, x, w, "fp8_gemm_splitk")
    _gemm_splitk_kernel[grid](xa, sxa, x_scale, wa, swa, w_scale, p, p.stride(0), p.stride(1), m,
                              K_SPLIT=k // sp, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
                              STAGES=cfg.stages, TMA=cfg.tma, num_warps=cfg.warps, **launch_kw())
    return p
