"""MQA attention with a key bias (Pi0.5 prefix and decoder sites), flash-decoding style, in Triton.

Why a kernel of our own: Pi0.5's Gemma and expert attention has 8 query heads over ONE K/V head. With one KV
head, all N*T query rows share the keys, so the kernel treats them as one [N*T, H] matrix (no GQA
broadcast, K/V read once per key block). The decoder site is tiny (8 x 50 rows over ~600 keys) but runs 180
times per inference: through torch SDPA it cost ~34 us a call on an H100 (cuDNN flash kernel + a bias
tensor + an output transpose copy + memsets; 6.8 ms of an 18 ms forward, profiled 2026-11-26). Here the
key range is split across programs (flash-decoding) so ~100 SMs work on it, a second tiny kernel merges the
partial softmaxes, and the result is written straight in the [T, N*H] layout the o-projection reads,
optionally quantized to FP8 (fusing the attention-output quantization too).

q [N, T, H] head-major (contiguous rows of H), k/v [Lk, H] (row stride free: a slice of the KV cache),
bias [Lk] additive (0 = visible, -2.38e38 = masked) or None, out [T, N*H] bf16 or fp8 (with out_scale).
Softmax statistics in fp32; p is rounded to bf16 for the PV product (as FlashAttention does).

Merging in the last key split to finish (kernels/triton/_sync.py) instead of a merge launch was measured and
lost: 12.40 vs 12.18 ms per replay with PDL (H100, 2 views, horizon 50, 2026-11-27): the 180 merge launches
overlap their predecessor under PDL, while a last-arriver merge adds ~4 us to the tail of every call.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from flash_rt.kernels.tiles import MqaTiles, mqa_key_split

from .fp8_quant import e4m3_range, e4m3_rcp
from .launch import launch_kw, pdl_enter

__all__ = ["mqa_attention", "MqaWorkspace"]


@triton.jit
def _online_softmax(s, m_i, l_i):
    """One key block of the streaming softmax: probabilities p, the rescale alpha of the running sums, the
    new running max and normalizer."""
    m_new = tl.maximum(m_i, tl.max(s, 1))
    p = tl.exp(s - m_new[:, None])
    alpha = tl.exp(m_i - m_new)
    return p, alpha, m_new, l_i * alpha + tl.sum(p, 1)


@triton.jit
def _store_rows(OUT, rcp, y, rows, rmask, dh, T, so_t, H: tl.constexpr, QUANT: tl.constexpr):
    """Query row r = n*T + t -> out[t, n*H : (n+1)*H] (the o-projection's layout), FP8 (y * rcp) when QUANT."""
    n = rows // T
    t = rows - n * T
    dst = OUT + t[:, None].to(tl.int64) * so_t + n[:, None] * H + dh[None, :]
    if QUANT:
        y = e4m3_range(y, rcp)
    tl.store(dst, y.to(OUT.dtype.element_ty), mask=rmask[:, None])


@triton.jit
def _mqa_partial(Q, K, V, BIAS, PM, PL, PACC, OUT, SCALE, R, T, so_t, LK, KEYS_PER_SPLIT, sk, sv, sm_scale,
                 H: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HAS_BIAS: tl.constexpr,
                 FINAL: tl.constexpr, QUANT: tl.constexpr, PDL: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_s = tl.program_id(1)
    pdl_enter(PDL)
    rcp = e4m3_rcp(SCALE, FINAL and QUANT)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < R
    dh = tl.arange(0, H)
    q = tl.load(Q + rows[:, None].to(tl.int64) * H + dh[None, :], mask=rmask[:, None], other=0.0)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, H], tl.float32)
    start = pid_s * KEYS_PER_SPLIT
    end = tl.minimum(start + KEYS_PER_SPLIT, LK)
    for n0 in range(start, end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        cmask = cols < end
        k = tl.load(K + cols[:, None].to(tl.int64) * sk + dh[None, :], mask=cmask[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k)) * sm_scale
        if HAS_BIAS:
            s += tl.load(BIAS + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
        s = tl.where(cmask[None, :], s, float("-inf"))
        p, alpha, m_i, l_i = _online_softmax(s, m_i, l_i)
        v = tl.load(V + cols[:, None].to(tl.int64) * sv + dh[None, :], mask=cmask[:, None], other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
    if FINAL:  # one split: normalize and write [T, N*H] directly (no merge launch)
        _store_rows(OUT, rcp, acc / l_i[:, None], rows, rmask, dh, T, so_t, H, QUANT)
    else:
        base = pid_s * R + rows
        tl.store(PM + base, m_i, mask=rmask)
        tl.store(PL + base, l_i, mask=rmask)
        tl.store(PACC + base[:, None].to(tl.int64) * H + dh[None, :], acc, mask=rmask[:, None])


@triton.jit
def _mqa_merge(PM, PL, PACC, OUT, SCALE, R, T, so_t, SPLITS: tl.constexpr, H: tl.constexpr,
               BLOCK_R: tl.constexpr, QUANT: tl.constexpr, PDL: tl.constexpr):
    """Combine the SPLITS partial softmaxes of BLOCK_R query rows in a fixed split order."""
    pdl_enter(PDL)
    rcp = e4m3_rcp(SCALE, QUANT)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < R
    dh = tl.arange(0, H)
    m = tl.full([BLOCK_R], float("-inf"), tl.float32)
    for s in tl.static_range(SPLITS):
        m = tl.maximum(m, tl.load(PM + s * R + rows, mask=rmask, other=float("-inf")))
    l_tot = tl.zeros([BLOCK_R], tl.float32)
    acc = tl.zeros([BLOCK_R, H], tl.float32)
    for s in tl.static_range(SPLITS):
        ms = tl.load(PM + s * R + rows, mask=rmask, other=float("-inf"))
        w = tl.where(ms == float("-inf"), 0.0, tl.exp(ms - m))
        l_tot += w * tl.load(PL + s * R + rows, mask=rmask, other=0.0)
        a = tl.load(PACC + (s * R + rows)[:, None].to(tl.int64) * H + dh[None, :], mask=rmask[:, None], other=0.0)
        acc += w[:, None] * a
    _store_rows(OUT, rcp, acc / l_tot[:, None], rows, rmask, dh, T, so_t, H, QUANT)


class MqaWorkspace:
    """Preallocated partial-softmax buffers for one attention site (graph-safe: nothing allocated per call).

    The split count is fixed from the site's shape and the target's tiles (kernels/tiles.MqaTiles, from the tuning
    table) by kernels/tiles.mqa_key_split: as many key splits as keep the programs within `tiles.target_programs`
    (the SM count), or more where a split would hold over `tiles.max_split_keys` keys, none when the row tiles
    alone fill the GPU.
    keys_per_split (a multiple of block_n) fixes the split boundaries instead: a prompt-length bucket takes its full
    length's, so every key is summed in the same split as there and the result keeps its bits
    (models/pi05/prompt_buckets.py)."""

    def __init__(self, rows: int, keys: int, head_dim: int, device, tiles: MqaTiles,
                 keys_per_split: int | None = None):
        self.tiles = tiles
        block_n = tiles.block_n
        self.block_m, self.block_n, self.num_stages, self.num_warps = tiles.block_m, block_n, tiles.num_stages, \
            tiles.num_warps
        self.merge_rows, self.merge_warps = tiles.merge_rows, tiles.merge_warps
        self.splits, self.keys_per_split = mqa_key_split(rows, keys, tiles)
        if keys_per_split is not None:
            if keys_per_split <= 0 or keys_per_split % block_n:
                raise ValueError(f"keys_per_split must be a positive multiple of block_n={block_n}, got "
                                 f"{keys_per_split}")
            self.keys_per_split = int(keys_per_split)
        self.splits = triton.cdiv(keys, self.keys_per_split)
        self.rows, self.keys = rows, keys
        self.pm = torch.empty(self.splits * rows, dtype=torch.float32, device=device)
        self.pl = torch.empty_like(self.pm)
        self.pacc = torch.empty(self.splits * rows, head_dim, dtype=torch.float32, device=device)


def mqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor], *,
                  out: torch.Tensor, ws: MqaWorkspace, sm_scale: float,
                  out_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    n, t, h = q.shape
    lk = k.shape[0]
    r = n * t
    if h < 16 or h & (h - 1):
        raise ValueError(f"mqa_attention: head_dim must be a power of two >= 16, got {h}")
    if q.stride(2) != 1 or q.stride(1) != h or q.stride(0) != t * h:
        raise ValueError(f"mqa_attention: q must be contiguous [N, T, H], strides {q.stride()}")
    if k.shape != (lk, h) or v.shape != (lk, h) or k.stride(1) != 1 or v.stride(1) != 1:
        raise ValueError(f"mqa_attention: k/v must be [Lk, H] with contiguous rows; got {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if out.shape != (t, n * h) or out.stride(1) != 1:
        raise ValueError(f"mqa_attention: out must be [T, N*H] = {(t, n * h)}, got {tuple(out.shape)}")
    if (ws.rows, ws.keys) != (r, lk):
        raise ValueError(f"mqa_attention: workspace is for {ws.rows} rows x {ws.keys} keys, got {r} x {lk}")
    if bias is not None and bias.shape != (lk,):
        raise ValueError(f"mqa_attention: bias must be [{lk}], got {tuple(bias.shape)}")
    grid = (triton.cdiv(r, ws.block_m), ws.splits)
    final = ws.splits == 1
    scale = out_scale if out_scale is not None else ws.pm
    _mqa_partial[grid](q, k, v, bias if bias is not None else q, ws.pm, ws.pl, ws.pacc, out, scale, r, t,
                       out.stride(0), lk, ws.keys_per_split, k.stride(0), v.stride(0), float(sm_scale), H=h,
                       BLOCK_M=ws.block_m, BLOCK_N=ws.block_n, HAS_BIAS=bias is not None, FINAL=final,
                       QUANT=out_scale is not None, num_warps=ws.num_warps, num_stages=ws.num_stages, **launch_kw())
    if final:
        return out
    _mqa_merge[(triton.cdiv(r, ws.merge_rows),)](ws.pm, ws.pl, ws.pacc, out, scale, r, t, out.stride(0),
                                                 SPLITS=ws.splits, H=h, BLOCK_R=ws.merge_rows,
                                                 QUANT=out_scale is not None, num_warps=ws.merge_warps, **launch_kw())
    return out
