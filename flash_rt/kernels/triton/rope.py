"""Fused QKV split + RoPE + head-major (KV-cache) write: one launch per attention layer.

Why fused: the fused QKV GEMM emits [M, (N + 2K) * H] rows. Attention wants q as [N, M, H] and k / v
as [K, Ltot, H] slices of the KV cache, with RoPE applied to q and k. Unfused that is a split, two RoPE
kernels (each recomputing its cos/sin table or reading one) and two cache copies: ~5 launches and three
extra passes over q/k/v per layer, x 18 layers (prefix) + 180 (10 expert steps). Here: one pass, the
angle table computed in registers (no cos/sin buffer to keep in sync with positions, so positions can be
rebuilt on the device every tick -- see ``prefix_positions``).

RoPE convention: half-split ("rotate_half"): dim i pairs with dim i + H/2;
inv_freq_i = 1 / theta^(2i/H) (a table computed by the twin's own fp32 expression, rope_inv_freq_table),
angle = pos * inv_freq_i in fp32, q' = q cos + rotate_half(q) sin. Grid: (row tiles, heads); program
(t, h) rotates BLOCK_M rows of head h (v heads are copied).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..reference import rope_inv_freq
from ._common import next_pow2
from .launch import launch_kw, pdl_enter

__all__ = ["rope_qkv_split", "rope_inv_freq_table"]


_INV_FREQ: dict = {}


def rope_inv_freq_table(head_dim: int, theta: float, device) -> torch.Tensor:
    """inv_freq [H/2] fp32, computed once per (H, theta, device) by the twin's own expression
    (reference.rope_inv_freq), so kernel and twin rotate by bit-identical frequencies. The first call for a
    shape allocates: make it before CUDA-graph capture (the frontends' warm-up call does)."""
    key = (int(head_dim), float(theta), str(torch.device(device)))
    t = _INV_FREQ.get(key)
    if t is None:
        t = _INV_FREQ[key] = rope_inv_freq(head_dim, theta, device).contiguous()
    return t


@triton.jit
def rope_cos_sin(pos, inv):
    """cos, sin [rows, N] of the fp32 angles pos[:, None] * inv[None, :]. Shared by this kernel and the qkv
    GEMM's RoPE epilogue (gemm_fused.py), so both rotate alike. inv comes from rope_inv_freq_table: evaluating
    1 / theta^(2j/H) in the kernel (fp64 pow and two correctly rounded divisions per element) sat in the
    latency-bound epilogue of all 180 expert qkv GEMMs."""
    ang = pos[:, None] * inv[None, :]
    return tl.cos(ang), tl.sin(ang)


@triton.jit
def _rope_qkv_kernel(QKV, s_qkv, POS, INV, Q, sq_h, sq_m, K, sk_h, sk_m, V, sv_h, sv_m, M,
                     NQ: tl.constexpr, NK: tl.constexpr, H: tl.constexpr, HALF_P2: tl.constexpr,
                     BLOCK_M: tl.constexpr, PDL: tl.constexpr):
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
        c, s = rope_cos_sin(pos, tl.load(INV + j, mask=j < HALF, other=0.0))
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
    inv = rope_inv_freq_table(h, theta, qkv.device)
    _rope_qkv_kernel[grid](qkv, qkv.stride(0), positions, inv, q_out, q_out.stride(0), q_out.stride(1),
                           k_out, k_out.stride(0), k_out.stride(1), v_out, v_out.stride(0), v_out.stride(1),
                           m, NQ=n, NK=kh, H=h, HALF_P2=half_p2, BLOCK_M=block_m, num_warps=4, **launch_kw())
    return q_out, k_out, v_out
