"""Fused QKV split + RoPE + head-major (KV-cache) write: one launch per attention layer.

Why fused: the fused QKV GEMM emits [M, (N + 2K) * H] rows. Attention wants q as [N, M, H] and k / v
as [K, Ltot, H] slices of the KV cache, with RoPE applied to q and k. Unfused that is a split, two RoPE
kernels (each recomputing its cos/sin table or reading one) and two cache copies: ~5 launches and three
extra passes over q/k/v per layer, x 18 layers (prefix) + 180 (10 expert steps). Here: one pass, the
angle table computed in registers (no cos/sin buffer to keep in sync with positions, so positions can be
rebuilt on the device every tick -- see ``prefix_positions``).

RoPE convention: half-split ("rotate_half"): dim i pairs with dim i + H/2;
inv_freq_i = 1 / theta^(2i/H) (the pow evaluated in fp64 and rounded to fp32, ~ torch's fp32 pow),
angle = pos * inv_freq_i in fp32, q' = q cos + rotate_half(q) sin. Grid: (row tiles, heads); program
(t, h) rotates BLOCK_M rows of head h (v heads are copied).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import next_pow2
from .launch import launch_kw, pdl_enter

__all__ = ["rope_qkv_split"]


@triton.jit
def rope_cos_sin(pos, j, H: tl.constexpr, THETA: tl.constexpr, N: tl.constexpr):
    """cos, sin [rows, N] of pos[:, None] * inv_freq[j], inv_freq_j = 1 / theta^(2j/H) (the pow in fp64 rounded
    to fp32). Shared by this kernel and the qkv GEMM's RoPE epilogue (gemm_fused.py), so both rotate alike."""
    expo = tl.math.div_rn((2 * j).to(tl.float32), H * 1.0)
    p = tl.exp2(expo.to(tl.float64) * tl.log2(tl.full([N], THETA, tl.float64))).to(tl.float32)
    ang = pos[:, None] * tl.math.div_rn(1.0, p)[None, :]
    return tl.cos(ang), tl.sin(ang)


@triton.jit
def _rope_qkv_kernel(QKV, s_qkv, POS, Q, sq_h, sq_m, K, sk_h, sk_m, V, sv_h, sv_m, M,
                     NQ: tl.constexpr, NK: tl.constexpr, H: tl.constexpr, HALF_P2: tl.constexpr,
                     BLOCK_M: tl.constexpr, THETA: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    HALF: tl.constexpr = H // 2
    head = tl.program_id(1)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    rows64 = rows.to(tl.int64)
    j = tl.arange(0, HALF_P2)
    mask = rmask[:, None] & (j < HALF)[None, :]
    src = QKV + rows64[:, None] * s_qkv + head * H + j[None, :]
    x1 = tl.load(src, mask=mask, other=0.0)
    x2 = tl.load(src + HALF, mask=mask, other=0.0)
    if head < NQ + NK:
        pos = tl.load(POS + rows, mask=rmask, other=0).to(tl.float32)
        c, s = rope_cos_sin(pos, j, H, THETA, HALF_P2)
        a = x1.to(tl.float32)
        b = x2.to(tl.float32)
        o1 = a * c - b * s
        o2 = b * c + a * s
        if head < NQ:
            dst = Q + head * sq_h + rows64[:, None] * sq_m + j[None, :]
            tl.store(dst, o1.to(Q.dtype.element_ty), mask=mask)
            tl.store(dst + HALF, o2.to(Q.dtype.element_ty), mask=mask)
        else:
            dst = K + (head - NQ) * sk_h + rows64[:, None] * sk_m + j[None, :]
            tl.store(dst, o1.to(K.dtype.element_ty), mask=mask)
            tl.store(dst + HALF, o2.to(K.dtype.element_ty), mask=mask)
    else:
        dst = V + (head - NQ - NK) * sv_h + rows64[:, None] * sv_m + j[None, :]
        tl.store(dst, x1.to(V.dtype.element_ty), mask=mask)
        tl.store(dst + HALF, x2.to(V.dtype.element_ty), mask=mask)


def rope_qkv_split(qkv: torch.Tensor, positions: torch.Tensor, *, q_out: torch.Tensor, k_out: torch.Tensor,
                   v_out: torch.Tensor, theta: float = 10000.0):
    """qkv [M, (N+2K)*H], positions [M] int32/int64 -> q_out [N, M, H], k_out / v_out [K, M, H] (may be
    ``cache[:, off:off+M]`` slices of a [K, Ltot, H] KV cache). Sites: every Gemma / expert attention
    layer, right after the fused QKV GEMM. Returns (q_out, k_out, v_out)."""
    if q_out.dim() != 3 or k_out.dim() != 3 or v_out.dim() != 3:
        raise ValueError("rope_qkv_split: q_out, k_out, v_out must be 3-D [heads, M, H]")
    n, m, h = q_out.shape
    kh = k_out.shape[0]
    if qkv.dim() != 2 or tuple(qkv.shape) != (m, (n + 2 * kh) * h) or tuple(k_out.shape) != (kh, m, h) \
            or tuple(v_out.shape) != (kh, m, h) or tuple(positions.shape) != (m,):
        raise ValueError(f"rope_qkv_split: qkv {tuple(qkv.shape)}, positions {tuple(positions.shape)}, q_out "
                         f"{tuple(q_out.shape)}, k_out {tuple(k_out.shape)}, v_out {tuple(v_out.shape)} disagree")
    if h % 2:
        raise ValueError(f"rope_qkv_split: head_dim {h} must be even")
    if positions.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"rope_qkv_split: positions must be int32/int64, got {positions.dtype}")
    for t, nm in ((qkv, "qkv"), (q_out, "q_out"), (k_out, "k_out"), (v_out, "v_out")):
        if t.stride(-1) != 1:
            raise ValueError(f"rope_qkv_split: {nm} needs a contiguous last dim, strides {t.stride()}")
    if positions.stride(0) != 1 and m > 1:
        raise ValueError("rope_qkv_split: positions must be contiguous")
    if m == 0:
        return q_out, k_out, v_out
    half_p2 = next_pow2(h // 2)
    block_m = max(1, min(16, 1024 // half_p2))
    grid = (triton.cdiv(m, block_m), n + 2 * kh)
    _rope_qkv_kernel[grid](qkv, qkv.stride(0), positions, q_out, q_out.stride(0), q_out.stride(1),
                           k_out, k_out.stride(0), k_out.stride(1), v_out, v_out.stride(0), v_out.stride(1),
                           m, NQ=n, NK=kh, H=h, HALF_P2=half_p2, BLOCK_M=block_m, THETA=float(theta),
                           num_warps=4, **launch_kw())
    return q_out, k_out, v_out
