"""Full multi-head attention without a mask (the SigLIP site), reading q / k / v straight out of the fused
qkv GEMM's rows and writing [B, T, heads * head_dim] -- optionally already FP8.

Why a kernel of our own: through torch SDPA each of the 27 SigLIP layers ran cuDNN's flash kernel, then a
device copy of its output into the o-projection's layout, then an FP8 quantization kernel (plus the
launch gaps between them). Here that is one launch. SigLIP's head_dim (72) is not a power of two: the head
is padded to the next one (128) with masked loads, which costs MMA work on zeros but nothing in memory; the
site is latency-bound (2 views x 16 heads x 256 tokens: 0.6 GFLOP a layer).

q, k, v [B, N, T, HD] (any strides with a contiguous last dim: views of the qkv buffer), out [B, T, N*HD]
bf16 or fp8 (with out_scale). Softmax in fp32, p rounded to bf16 for the PV product (as FlashAttention does).
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .attention import _online_softmax
from .fp8_quant import e4m3_range, e4m3_rcp
from .launch import launch_kw, pdl_enter

__all__ = ["mha_attention", "mha_block_m"]


def mha_block_m(batch: int, heads: int, tokens: int, sm_count: int) -> int:
    """Query rows per program: 64, unless that makes more programs than the GPU has SMs, then 128.
    Why: one program per SM runs best here; a second partial wave costs more than longer programs. 3 views x 16
    heads x 4 row tiles of 64 = 192 programs on an H100's 132 SMs: 12.35 ms replay, with 128-row tiles (96
    programs) 12.17 ms; 2 views make 128 programs and keep 64 (H100, benchmarks/latency.py --views 3,
    variants default / siglip-bm128, 2026-11-27)."""
    return 64 if batch * heads * triton.cdiv(tokens, 64) <= sm_count else 128


@triton.jit
def _mha_kernel(Q, K, V, OUT, SCALE, sq_b, sq_h, sq_t, sk_b, sk_h, sk_t, sv_b, sv_h, sv_t, so_b, so_t,
                sm_scale, T: tl.constexpr, HD: tl.constexpr, HD_P2: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, QUANT: tl.constexpr, PDL: tl.constexpr):
    # T (tokens per image) is a constexpr: fixed per model, so the key loop has static bounds
    head = tl.program_id(1)
    bb = tl.program_id(2)
    pdl_enter(PDL)
    rcp = e4m3_rcp(SCALE, QUANT)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < T
    dh = tl.arange(0, HD_P2)
    dmask = dh < HD
    q = tl.load(Q + bb * sq_b + head * sq_h + rows[:, None] * sq_t + dh[None, :],
                mask=rmask[:, None] & dmask[None, :], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HD_P2], tl.float32)
    for n0 in range(0, T, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < T
        kv_mask = cmask[:, None] & dmask[None, :]
        k = tl.load(K + bb * sk_b + head * sk_h + cols[:, None] * sk_t + dh[None, :], mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k)) * sm_scale
        s = tl.where(cmask[None, :], s, float("-inf"))
        p, alpha, m_i, l_i = _online_softmax(s, m_i, l_i)
        v = tl.load(V + bb * sv_b + head * sv_h + cols[:, None] * sv_t + dh[None, :], mask=kv_mask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    y = acc * (1.0 / l_i)[:, None]
    if QUANT:
        y = e4m3_range(y, rcp)
    dst = OUT + bb.to(tl.int64) * so_b + rows[:, None] * so_t + head * HD + dh[None, :]
    tl.store(dst, y.to(OUT.dtype.element_ty), mask=rmask[:, None] & dmask[None, :])


def mha_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, out: torch.Tensor, sm_scale: float,
                  out_scale: Optional[torch.Tensor] = None, block_m: int, block_n: int, num_warps: int,
                  num_stages: int) -> torch.Tensor:
    """out[b, t, n*HD:(n+1)*HD] = softmax(q[b, n] k[b, n].T * sm_scale) v[b, n] (quantized with out_scale).
    Tiles come from the target's tuning table (kernels/tiles.MhaTiles; Hopper's: 128 keys on 8 warps, 10.26 us a
    call on an H100 against 12.78 us for 64 x 64 on 4 warps and 12.97 us for the SDPA + copy + quantize path it
    replaced); block_m from mha_block_m."""
    if q.dim() != 4 or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"mha_attention: q, k, v must be [B, N, T, HD] alike, got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    b, n, t, hd = q.shape
    for x, nm in ((q, "q"), (k, "k"), (v, "v")):
        if x.stride(3) != 1:
            raise ValueError(f"mha_attention: {nm} needs a contiguous last dim, strides {x.stride()}")
    if out.shape != (b, t, n * hd) or out.stride(2) != 1:
        raise ValueError(f"mha_attention: out must be [B, T, N*HD] = {(b, t, n * hd)} with a contiguous last dim, "
                         f"got {tuple(out.shape)} strides {out.stride()}")
    if (out_scale is None) == (out.dtype == torch.float8_e4m3fn):
        raise ValueError(f"mha_attention: out is {out.dtype} and out_scale is "
                         f"{'missing' if out_scale is None else 'given'}; FP8 out goes with an out_scale")
    hd_p2 = max(16, triton.next_power_of_2(hd))
    grid = (triton.cdiv(t, block_m), n, b)
    _mha_kernel[grid](q, k, v, out, out_scale if out_scale is not None else q,
                      *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], out.stride(0), out.stride(1),
                      float(sm_scale), T=t, HD=hd, HD_P2=hd_p2, BLOCK_M=block_m, BLOCK_N=block_n,
                      QUANT=out_scale is not None, num_warps=num_warps, num_stages=num_stages, **launch_kw())
    return out
