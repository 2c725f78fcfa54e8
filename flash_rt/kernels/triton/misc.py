"""Small per-tick kernels: time embedding, Euler update, FP8 calibration amax, image upload, masks.

Why they exist: each replaces a chain of tiny torch ops that would otherwise sit inside the CUDA graph
(~1 us per launch, however little it does) or force a host round trip:

* ``uint8_to_model``: images travel host->device as uint8 (4x less PCIe than fp32) and the
  /255*2-1 + HWC->CHW happens in one launch instead of cast, div, mul, sub, permute-copy.
* ``key_padding_bias`` / ``prefix_positions``: the attention bias and the RoPE positions are rebuilt
  from the device-side pad mask every tick (a prompt or camera change never needs recapture), one
  launch each instead of cumsum, sub, clamp, where, add, arange.
* ``flow_update``: x += dt * (v + bias) in one launch (bias of action_out_proj folded in).
* ``time_embedding``: the sinusoidal embedding in fp64 like openpi, one launch instead of ~8.
* ``amax_update``: calibration-only running max|x| into a device slot, no host sync.
"""
from __future__ import annotations

from typing import Optional, Union

import torch
import triton
import triton.language as tl

from ._common import ELT_BLOCK, as_rows, check_fp32_rows, check_scale, next_pow2
from ._sync import arrive_last
from .launch import launch_kw, pdl_enter

__all__ = ["time_embedding", "flow_update", "linear_flow_update", "LinearFlowWorkspace", "amax_update",
           "uint8_to_model", "key_padding_bias", "prefix_positions"]

_MASK_VALUE = tl.constexpr(-2.3819763e38)
_TWO_PI = tl.constexpr(6.283185307179586)


# -- time embedding -------------------------------------------------------------------------------------
@triton.jit
def _time_embedding_kernel(T, OUT, so, HALF: tl.constexpr, BLOCK: tl.constexpr, MIN_P: tl.constexpr,
                           MAX_P: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    b = tl.program_id(0).to(tl.int64)
    i = tl.arange(0, BLOCK)
    mask = i < HALF
    fi = i.to(tl.float64)
    # torch.linspace(0, 1, HALF, float64): start + step*i for the first half, end - step*(n-1-i) after.
    one = tl.full([BLOCK], 1.0, tl.float64)
    if HALF > 1:
        step = one / (HALF - 1)
        frac = tl.where(i < HALF // 2, step * fi, one - step * (HALF - 1 - fi))
    else:
        frac = fi * 0.0
    min_p = tl.full([BLOCK], MIN_P, tl.float64)
    ratio = tl.full([BLOCK], MAX_P, tl.float64) / min_p
    period = min_p * tl.exp2(frac * tl.log2(ratio))
    scaling = one / period * 2.0 * tl.full([BLOCK], 3.141592653589793, tl.float64)
    t = tl.load(T + b).to(tl.float64)
    ang = scaling * t
    tl.store(OUT + b * so + i, tl.sin(ang).to(OUT.dtype.element_ty), mask=mask)
    tl.store(OUT + b * so + HALF + i, tl.cos(ang).to(OUT.dtype.element_ty), mask=mask)


def time_embedding(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0, *,
                   out: torch.Tensor) -> torch.Tensor:
    """t [B] -> out [B, dim] = [sin(angle), cos(angle)], angle = t * 2pi / period (fp64 inside).
    Site: expert time conditioning (only when not precomputed at load time)."""
    if dim % 2 or out.dim() != 2 or out.shape[1] != dim or t.dim() != 1 or t.shape[0] != out.shape[0]:
        raise ValueError(f"time_embedding: t {tuple(t.shape)}, dim {dim}, out {tuple(out.shape)} disagree")
    if out.stride(1) != 1 or (t.shape[0] > 1 and t.stride(0) != 1):
        raise ValueError("time_embedding: t and out rows must be contiguous")
    if t.shape[0] == 0:
        return out
    half = dim // 2
    _time_embedding_kernel[(t.shape[0],)](t, out, out.stride(0), HALF=half, BLOCK=next_pow2(half),
                                          MIN_P=float(min_period), MAX_P=float(max_period), num_warps=4, **launch_kw())
    return out


# -- flow update ----------------------------------------------------------------------------------------
@triton.jit
def _flow_update_kernel(X, sx, V, sv, BIAS, DT_PTR, dt, OUT, so, A, HAS_BIAS: tl.constexpr,
                        DT_IS_PTR: tl.constexpr, BLOCK: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < A
    x = tl.load(X + row * sx + cols, mask=mask, other=0.0).to(tl.float32)
    v = tl.load(V + row * sv + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        v = v + tl.load(BIAS + cols, mask=mask, other=0.0).to(tl.float32)
    if DT_IS_PTR:
        d = tl.load(DT_PTR).to(tl.float32)
    else:
        d = dt
    tl.store(OUT + row * so + cols, (x + d * v).to(OUT.dtype.element_ty), mask=mask)


def flow_update(x: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor], dt: Union[float, torch.Tensor], *,
                out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out = x + dt * (v + bias); out=None -> in place into x. dt: Python float or device fp32 [1].
    Site: the Euler step after action_out_proj, 10x per inference."""
    target = x if out is None else out
    xr, vr, orow = as_rows(x, "flow_update x"), as_rows(v, "flow_update v"), as_rows(target, "flow_update out")
    if (xr[1], xr[2]) != (vr[1], vr[2]) or (xr[1], xr[2]) != (orow[1], orow[2]):
        raise ValueError(f"flow_update: x {tuple(x.shape)}, v {tuple(v.shape)}, out {tuple(target.shape)} disagree")
    m, a = xr[1], xr[2]
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != a or (a > 1 and bias.stride(0) != 1)):
        raise ValueError(f"flow_update: bias must be a contiguous [{a}] vector, got {tuple(bias.shape)}")
    dt_is_ptr = isinstance(dt, torch.Tensor)
    if dt_is_ptr:
        check_scale(dt, "flow_update dt")
    if m == 0 or a == 0:
        return target
    block = min(ELT_BLOCK, next_pow2(a))
    _flow_update_kernel[(m, triton.cdiv(a, block))](
        xr[0], xr[3], vr[0], vr[3], xr[0] if bias is None else bias, dt if dt_is_ptr else xr[0],
        0.0 if dt_is_ptr else float(dt), orow[0], orow[3], a, HAS_BIAS=bias is not None, DT_IS_PTR=dt_is_ptr,
        BLOCK=block, num_warps=max(1, min(4, block // 256)), **launch_kw())
    return target


@triton.jit
def _linear_flow_kernel(H, s_h, W, s_w, BIAS, X, s_x, P, COUNTERS, dt, M, N, K_SPLIT: tl.constexpr,
                        SPLITS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                        PDL: tl.constexpr):
    pdl_enter(PDL)
    sp = tl.program_id(0)
    tile = tl.program_id(1)
    rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    rmask = rows < M
    cmask = cols < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in tl.range(0, K_SPLIT, BLOCK_K):
        ck = sp * K_SPLIT + k0 + tl.arange(0, BLOCK_K)
        h = tl.load(H + rows.to(tl.int64)[:, None] * s_h + ck[None, :], mask=rmask[:, None], other=0.0)
        w = tl.load(W + ck.to(tl.int64)[:, None] * s_w + cols[None, :], mask=cmask[None, :], other=0.0)
        acc = tl.dot(h, w, acc, input_precision="ieee")        # exact fp32 products, no TF32
    MP = tl.num_programs(1) * BLOCK_M
    tile_ptr = P + (rows.to(tl.int64)[:, None] * BLOCK_N + cols[None, :])
    tl.store(tile_ptr + sp * MP * BLOCK_N, acc)
    if arrive_last(COUNTERS + tile, SPLITS):      # the last K split of this row tile finishes the step
        v = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
        for j in tl.static_range(SPLITS):          # fixed order: deterministic
            v += tl.load(tile_ptr + j * MP * BLOCK_N, cache_modifier=".cg")
        v += tl.load(BIAS + cols, mask=cmask, other=0.0)[None, :]
        xp = X + rows.to(tl.int64)[:, None] * s_x + cols[None, :]
        m2 = rmask[:, None] & cmask[None, :]
        x = tl.load(xp, mask=m2, other=0.0)
        tl.store(xp, x + dt * v, mask=m2)


class LinearFlowWorkspace:
    """Split-K partials and per-row-tile counters of `linear_flow_update` (allocated once: graph-safe)."""

    def __init__(self, rows: int, k: int, n: int, device, max_splits: int = 16, block_m: int = 64):
        if k % 16:
            raise ValueError(f"LinearFlowWorkspace: K={k} must be a multiple of 16")
        block_k = 32 if k % 32 == 0 else 16
        splits = max_splits  # as many K ranges as divide K evenly (16 for the real expert's K = 1024)
        while splits > 1 and k % (splits * block_k):
            splits //= 2
        self.rows, self.k, self.n, self.splits, self.block_m, self.block_k = rows, k, n, splits, block_m, block_k
        self.block_n = max(16, next_pow2(n))
        self.tiles = triton.cdiv(rows, block_m)
        self.partials = torch.empty(splits, self.tiles * block_m, self.block_n, dtype=torch.float32, device=device)
        self.counters = torch.zeros(self.tiles, dtype=torch.int32, device=device)


def linear_flow_update(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, dt: float, *,
                       ws: LinearFlowWorkspace) -> torch.Tensor:
    """x += dt * (h @ w + bias), all fp32, in one launch. Site: action_out_proj + the Euler step, 10x per
    inference. Why: cuBLAS runs the [50 x 1024] x [1024 x 32] fp32 GEMM as ONE 128x32 SIMT tile that loops over
    all of K (20.5 us a call on an H100, 0.2 ms per inference); here `ws.splits` programs per row tile each take
    a K range (exact fp32 FMA products), and the last of them to finish sums the partials in a fixed order, adds
    the bias and updates x (_sync.arrive_last): ~2 launches become 1. h [M, K], w [K, N] (the stored
    transpose), bias [N], x [M, N] updated in place."""
    m, k = h.shape
    n = x.shape[1]
    if (ws.rows, ws.k, ws.n) != (m, k, n):
        raise ValueError(f"linear_flow_update: workspace is for [{ws.rows} x {ws.k}] @ [{ws.k} x {ws.n}], got "
                         f"h {tuple(h.shape)}, x {tuple(x.shape)}")
    for t, nm, shape in ((h, "h", (m, k)), (w, "w", (k, n)), (x, "x", (m, n)), (bias, "bias", (n,))):
        check_fp32_rows(t, shape, f"linear_flow_update: {nm}")
    _linear_flow_kernel[(ws.splits, ws.tiles)](h, h.stride(0), w, w.stride(0), bias, x, x.stride(0), ws.partials,
                                               ws.counters, float(dt), m, n, K_SPLIT=k // ws.splits,
                                               SPLITS=ws.splits, BLOCK_M=ws.block_m, BLOCK_N=ws.block_n,
                                               BLOCK_K=ws.block_k, num_warps=4, **launch_kw())
    return x


# -- calibration ----------------------------------------------------------------------------------------
@triton.jit
def _amax_kernel(X, sx, SLOT, N, BLOCK: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(X + row * sx + cols, mask=cols < N, other=0.0).to(tl.float32)
    tl.atomic_max(SLOT, tl.max(tl.abs(x), axis=0))


def amax_update(x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """slot[0] = max(slot[0], max|x|) with one atomic per tile. Site: calibration twins, before each
    quantize point (the slot is later turned into a scale, amax / 448)."""
    check_scale(slot, "amax_update slot")
    xr = as_rows(x, "amax_update x")
    m, n = xr[1], xr[2]
    if m == 0 or n == 0:
        return slot
    block = min(ELT_BLOCK, next_pow2(n))
    _amax_kernel[(m, triton.cdiv(n, block))](xr[0], xr[3], slot, n, BLOCK=block,
                                             num_warps=max(1, min(4, block // 256)), **launch_kw())
    return slot


# -- image upload ---------------------------------------------------------------------------------------
@triton.jit
def _u8_to_model_kernel(IMG, s_iv, OUT, so_v, so_c, P, BLOCK: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    v = tl.program_id(0).to(tl.int64)
    p = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = p < P
    src = IMG + v * s_iv + p * 3
    for c in tl.static_range(3):
        x = tl.load(src + c, mask=mask, other=0).to(tl.float32)
        y = tl.math.div_rn(x, 255.0) * 2.0 - 1.0
        tl.store(OUT + v * so_v + c * so_c + p, y.to(OUT.dtype.element_ty), mask=mask)


def uint8_to_model(img: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """img uint8 [V, H, W, 3] -> out [V, 3, H, W] = x / 255 * 2 - 1. Site: SigLIP input, every tick."""
    if img.dtype != torch.uint8 or img.dim() != 4 or img.shape[-1] != 3:
        raise ValueError(f"uint8_to_model: expected uint8 [V, H, W, 3], got {img.dtype} {tuple(img.shape)}")
    nv, h, w, _ = img.shape
    if tuple(out.shape) != (nv, 3, h, w):
        raise ValueError(f"uint8_to_model: out {tuple(out.shape)} != {(nv, 3, h, w)}")
    if img.stride()[1:] != (w * 3, 3, 1):
        raise ValueError("uint8_to_model: each image must be a contiguous HWC block")
    if out.stride()[2:] != (w, 1):
        raise ValueError("uint8_to_model: each output plane must be contiguous HW")
    if nv == 0 or h * w == 0:
        return out
    block = ELT_BLOCK
    _u8_to_model_kernel[(nv, triton.cdiv(h * w, block))](img, img.stride(0), out, out.stride(0), out.stride(1),
                                                         h * w, BLOCK=block, num_warps=4, **launch_kw())
    return out


# -- masks and positions --------------------------------------------------------------------------------
@triton.jit
def _key_padding_bias_kernel(MASK, OUT, L, BLOCK: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < L
    valid = tl.load(MASK + offs, mask=m, other=0).to(tl.int32) != 0
    y = tl.where(valid, 0.0, _MASK_VALUE)
    tl.store(OUT + offs, y.to(OUT.dtype.element_ty), mask=m)


def key_padding_bias(mask: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """out = 0 where mask (real key), -2.3819763e38 where padded. Site: attention bias of the prefix
    (and of the prefix keys seen by the action expert), rebuilt each tick from the device mask."""
    if mask.shape != out.shape or not mask.is_contiguous() or not out.is_contiguous():
        raise ValueError(f"key_padding_bias: mask {tuple(mask.shape)} / out {tuple(out.shape)} must match and "
                         "be contiguous")
    if not out.dtype.is_floating_point or out.dtype == torch.float8_e4m3fn:
        raise ValueError(f"key_padding_bias: out must be fp32/bf16/fp16, got {out.dtype}")
    n = mask.numel()
    if n == 0:
        return out
    block = min(ELT_BLOCK, next_pow2(n))
    _key_padding_bias_kernel[(triton.cdiv(n, block),)](mask, out, n, BLOCK=block, num_warps=4, **launch_kw())
    return out


@triton.jit
def _positions_kernel(MASK, OUT, SUF, L: tl.constexpr, S: tl.constexpr, HAS_SUFFIX: tl.constexpr,
                      BLOCK: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    carry = tl.sum(tl.zeros([BLOCK], tl.int32), axis=0)
    for start in range(0, L, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        m = offs < L
        v = (tl.load(MASK + offs, mask=m, other=0).to(tl.int32) != 0).to(tl.int32)
        c = tl.cumsum(v, axis=0) + carry
        tl.store(OUT + offs, tl.maximum(c - 1, 0).to(OUT.dtype.element_ty), mask=m)
        carry += tl.sum(v, axis=0)
    if HAS_SUFFIX:
        for start in range(0, S, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            tl.store(SUF + offs, (carry + offs).to(SUF.dtype.element_ty), mask=offs < S)


def prefix_positions(mask: torch.Tensor, *, out: torch.Tensor, suffix_out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out[L] = max(cumsum(mask) - 1, 0); optional suffix_out[S] = sum(mask) + arange(S). One program.
    Site: RoPE positions of the prefix and of the action tokens, rebuilt each tick from the device mask."""
    if mask.dim() != 1 or out.shape != mask.shape or not mask.is_contiguous() or not out.is_contiguous():
        raise ValueError(f"prefix_positions: mask {tuple(mask.shape)} / out {tuple(out.shape)} must be matching "
                         "contiguous vectors")
    for t, nm in ((out, "out"), (suffix_out, "suffix_out")):
        if t is not None and t.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"prefix_positions: {nm} must be int32/int64, got {t.dtype}")
    if suffix_out is not None and (suffix_out.dim() != 1 or not suffix_out.is_contiguous()):
        raise ValueError("prefix_positions: suffix_out must be a contiguous vector")
    n = mask.shape[0]
    s = 0 if suffix_out is None else suffix_out.shape[0]
    block = min(ELT_BLOCK, next_pow2(max(n, s)))
    _positions_kernel[(1,)](mask, out, out if suffix_out is None else suffix_out, L=n, S=s,
                            HAS_SUFFIX=suffix_out is not None, BLOCK=block, num_warps=4, **launch_kw())
    return out
