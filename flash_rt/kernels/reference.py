"""Torch twins of every flash_rt kernel: the oracle for the Triton kernels, and the CPU pipeline's kernels.

Each function has the same name and signature as its GPU sibling in ``flash_rt.kernels.triton`` and the
same contract:

* it writes into caller-provided ``out=`` tensors (and updates ``residual`` / ``x`` / ``slot`` in place
  where the name says so) and returns ``out``;
* it accepts any float dtype and computes in fp32 (statistics of every norm in fp32), rounding once
  into the output dtype -- so in fp32 it is exact up to fp32 rounding and matches the FP32 reference
  model (``flash_rt.models.pi05.reference``) op for op;
* when ``out_scale`` (a device fp32 tensor of shape [1]) is given, ``out`` is ``torch.float8_e4m3fn``
  and holds ``clamp(y * (1 / out_scale), -448, 448)`` rounded to nearest even (torch's ``.to()``): the
  reciprocal, correctly rounded, times y, as the kernels compute it (a division per element was measured
  slow on the GPU, kernels/triton/fp8_quant.py);
* it never calls ``.item()`` or branches on tensor values, so it also runs on CUDA tensors (the GPU
  tests run the twin on the device, in fp32, next to the kernel).

This module must never import triton: CI and the CPU pipeline import it without triton installed.
The catalogue (what each kernel fuses and which model site uses it) is in ``flash_rt/kernels/__init__.py``
and ``docs/kernel_fusion.md``.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

__all__ = [
    "FP8_MAX", "MASK_VALUE",
    "rms_norm", "add_rms_norm", "layer_norm", "add_layer_norm", "ada_rms_norm", "gated_add_ada_rms_norm",
    "geglu", "gelu_tanh", "quantize_fp8", "rope_inv_freq", "rope_qkv_split", "time_embedding",
    "flow_update", "flow_inpaint", "flow_boundary", "amax_update", "uint8_to_model", "key_padding_bias",
    "prefix_positions",
    "fp8_gemm_geglu", "fp8_gemm_rope_qkv", "fp8_gemm_splitk",
]

FP8_MAX = 448.0                      # largest finite torch.float8_e4m3fn
MASK_VALUE = -2.3819763e38           # openpi's masked-logit value (finite, so bias + logit never NaNs)

Scale = Optional[torch.Tensor]


# -- helpers --------------------------------------------------------------------------------------------
def _store(y: torch.Tensor, out: torch.Tensor, out_scale: Scale) -> torch.Tensor:
    """Round the fp32 result ``y`` once into ``out`` (quantizing to e4m3 when ``out_scale`` is given)."""
    if out_scale is None:
        if out.dtype == torch.float8_e4m3fn:
            raise ValueError("out is float8_e4m3fn but no out_scale was given")
        out.copy_(y)
    else:
        if out.dtype != torch.float8_e4m3fn:
            raise ValueError(f"out_scale given but out is {out.dtype}; expected torch.float8_e4m3fn")
        out.copy_(torch.clamp(y * (1.0 / out_scale.float()), -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn))
    return out


def _rms(x32: torch.Tensor, eps: float) -> torch.Tensor:
    # Same expression as the Gemma / openpi RMSNorm (and flash_rt.models.pi05.reference.rms_norm).
    return x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)


def _residual_add(residual: torch.Tensor, y32: torch.Tensor) -> torch.Tensor:
    """residual <- residual + y (one rounding into residual's dtype); returns what was stored, in fp32.

    The norm that follows reads the *stored* value, exactly as the fused kernel does."""
    residual.copy_(residual.float() + y32)
    return residual.float()


# -- norms ----------------------------------------------------------------------------------------------
def rms_norm(x: torch.Tensor, weight: Optional[torch.Tensor] = None, eps: float = 1e-6, *,
             out: torch.Tensor, out_scale: Scale = None) -> torch.Tensor:
    """Gemma RMSNorm: out = x * rsqrt(mean(x^2) + eps) * (1 + weight); weight=None means no weight."""
    y = _rms(x.float(), eps)
    if weight is not None:
        y = y * (1.0 + weight.float())
    return _store(y, out, out_scale)


def add_rms_norm(residual: torch.Tensor, y: torch.Tensor, weight: Optional[torch.Tensor] = None,
                 eps: float = 1e-6, *, out: torch.Tensor, out_scale: Scale = None) -> torch.Tensor:
    """residual += y (in place), then out = rms_norm(residual, weight, eps)."""
    r = _residual_add(residual, y.float())
    return rms_norm(r, weight, eps, out=out, out_scale=out_scale)


def layer_norm(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
               eps: float = 1e-6, *, out: torch.Tensor, out_scale: Scale = None) -> torch.Tensor:
    """LayerNorm over the last dim (SigLIP pre-LN), fp32 statistics."""
    w = None if weight is None else weight.float()
    b = None if bias is None else bias.float()
    y = F.layer_norm(x.float(), (x.shape[-1],), w, b, eps)
    return _store(y, out, out_scale)


def add_layer_norm(residual: torch.Tensor, y: torch.Tensor, weight: Optional[torch.Tensor],
                   bias: Optional[torch.Tensor], eps: float = 1e-6, *, out: torch.Tensor,
                   out_scale: Scale = None) -> torch.Tensor:
    """residual += y (in place), then out = layer_norm(residual, weight, bias, eps)."""
    r = _residual_add(residual, y.float())
    return layer_norm(r, weight, bias, eps, out=out, out_scale=out_scale)


def ada_rms_norm(x: torch.Tensor, mod_scale: torch.Tensor, mod_shift: torch.Tensor, eps: float = 1e-6, *,
                 out: torch.Tensor, out_scale: Scale = None) -> torch.Tensor:
    """Pi0.5 adaRMSNorm: out = rms(x) * (1 + mod_scale) + mod_shift; mod vectors [D] shared by every row."""
    y = _rms(x.float(), eps) * (1 + mod_scale.float()) + mod_shift.float()
    return _store(y, out, out_scale)


def gated_add_ada_rms_norm(residual: torch.Tensor, y: torch.Tensor, gate: torch.Tensor,
                           mod_scale: torch.Tensor, mod_shift: torch.Tensor, eps: float = 1e-6, *,
                           out: torch.Tensor, out_scale: Scale = None) -> torch.Tensor:
    """residual += y * gate (in place, Pi0.5 gated residual), then out = ada_rms_norm(residual, ...).
    y may be split-K partials [S, M, D]: summed in split order first (as the kernel does)."""
    if y.dim() == residual.dim() + 1:
        acc = y[0].float().clone()
        for part in y[1:]:
            acc += part.float()
        y = acc
    r = _residual_add(residual, y.float() * gate.float())
    return ada_rms_norm(r, mod_scale, mod_shift, eps, out=out, out_scale=out_scale)


# -- activations / quantization -------------------------------------------------------------------------
def gelu_tanh(x: torch.Tensor, *, out: torch.Tensor, out_scale: Scale = None) -> torch.Tensor:
    """GELU with the tanh approximation (SigLIP fc1 output; the GEMM already added the bias)."""
    return _store(F.gelu(x.float(), approximate="tanh"), out, out_scale)


def geglu(gu: torch.Tensor, *, out: torch.Tensor, out_scale: Scale = None) -> torch.Tensor:
    """Gemma GeGLU on the fused [gate | up] GEMM output: out = gelu_tanh(gu[..., :F]) * gu[..., F:]."""
    f = gu.shape[-1] // 2
    if gu.shape[-1] != 2 * f or out.shape[-1] != f:
        raise ValueError(f"geglu: gu last dim {gu.shape[-1]} must be 2 * out last dim {out.shape[-1]}")
    g = gu[..., :f].float()
    u = gu[..., f:].float()
    return _store(F.gelu(g, approximate="tanh") * u, out, out_scale)


def quantize_fp8(x: torch.Tensor, scale: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """out = e4m3(clamp(x / scale, -448, 448)), per-tensor device scale [1]."""
    return _store(x.float(), out, scale)


def _fp8_matmul(x: torch.Tensor, x_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """(x @ w.T) * x_scale * w_scale in fp32 from e4m3 x [M, K] and w [N, K] (exact products, fp32 sums)."""
    return (x.float() @ w.float().t()) * (x_scale.float() * w_scale.float())


def fp8_gemm_geglu(x: torch.Tensor, x_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, *,
                   out: torch.Tensor, out_scale: Scale = None, cfg=None) -> torch.Tensor:
    """geglu(fp8 GEMM) without the bf16 round trip: w = [gate; up] [2F, K] e4m3 (twin of the fused kernel)."""
    return geglu(_fp8_matmul(x, x_scale, w, w_scale), out=out, out_scale=out_scale)


def fp8_gemm_rope_qkv(x: torch.Tensor, x_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor,
                      positions: torch.Tensor, *, q_out: torch.Tensor, k_out: torch.Tensor, v_out: torch.Tensor,
                      theta: float = 10000.0, cfg=None):
    """rope_qkv_split(fp8 GEMM) without the bf16 round trip (twin of the fused kernel)."""
    return rope_qkv_split(_fp8_matmul(x, x_scale, w, w_scale), positions, q_out=q_out, k_out=k_out, v_out=v_out,
                          theta=theta)


def fp8_gemm_splitk(x: torch.Tensor, x_scale: torch.Tensor, w: torch.Tensor, w_scale: torch.Tensor, *,
                    out_partials: torch.Tensor, cfg=None) -> torch.Tensor:
    """out_partials[s] = (x[:, Ks] @ w[:, Ks].T) * scales for the S equal K ranges Ks (fp32 [S, M, N])."""
    sp = out_partials.shape[0]
    kc = x.shape[1] // sp
    for i in range(sp):
        out_partials[i].copy_(_fp8_matmul(x[:, i * kc:(i + 1) * kc], x_scale, w[:, i * kc:(i + 1) * kc], w_scale))
    return out_partials


# -- attention plumbing ---------------------------------------------------------------------------------
def rope_inv_freq(head_dim: int, theta: float = 10000.0, device=None) -> torch.Tensor:
    """inv_freq[i] = 1 / theta^(2i/H), i < H/2, in fp32 -- the HF/openpi-PyTorch expression."""
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))


def rope_qkv_split(qkv: torch.Tensor, positions: torch.Tensor, *, q_out: torch.Tensor, k_out: torch.Tensor,
                   v_out: torch.Tensor, theta: float = 10000.0):
    """Split a fused QKV GEMM output and apply half-split RoPE ("rotate_half") to q and k.

    qkv [M, (N + 2K) * H] (q heads, then k heads, then v heads); positions [M] int;
    q_out [N, M, H], k_out / v_out [K, M, H] (head-major, so attention reads them directly; k_out/v_out
    may be row slices ``cache[:, off:off + M]`` of a [K, Ltot, H] KV cache).
    Angle = pos * inv_freq in fp32; q' = q cos + rotate_half(q) sin, rotate_half(x) = [-x2, x1].
    Returns (q_out, k_out, v_out).
    """
    n, m, h = q_out.shape
    kh = k_out.shape[0]
    if qkv.shape != (m, (n + 2 * kh) * h) or k_out.shape != (kh, m, h) or v_out.shape != (kh, m, h):
        raise ValueError(f"rope_qkv_split: qkv {tuple(qkv.shape)}, q_out {tuple(q_out.shape)}, "
                         f"k_out {tuple(k_out.shape)}, v_out {tuple(v_out.shape)} do not agree")
    if h % 2:
        raise ValueError(f"rope_qkv_split: head_dim {h} must be even")
    x = qkv.float().reshape(m, n + 2 * kh, h).transpose(0, 1)          # [heads, M, H]
    ang = positions.float()[:, None] * rope_inv_freq(h, theta, qkv.device)[None, :]   # [M, H/2]
    cos = torch.cat([ang.cos(), ang.cos()], -1)
    sin = torch.cat([ang.sin(), ang.sin()], -1)

    def rot(t):
        t1, t2 = t[..., : h // 2], t[..., h // 2:]
        return t * cos + torch.cat([-t2, t1], -1) * sin

    q_out.copy_(rot(x[:n]))
    k_out.copy_(rot(x[n:n + kh]))
    v_out.copy_(x[n + kh:])
    return q_out, k_out, v_out


def key_padding_bias(mask: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """Additive attention bias from a key pad mask: 0 where mask is True (real), MASK_VALUE where False."""
    zero = torch.zeros((), dtype=torch.float32, device=out.device)
    neg = torch.full((), MASK_VALUE, dtype=torch.float32, device=out.device)
    out.copy_(torch.where(mask.bool(), zero, neg))
    return out


def prefix_positions(mask: torch.Tensor, *, out: torch.Tensor,
                     suffix_out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out = max(cumsum(mask) - 1, 0) (padding repeats the last real position).

    If ``suffix_out`` [S] is given it also gets sum(mask) + arange(S): the positions of the action tokens,
    which continue right after the real prefix tokens (spec 1c). Returns ``out``."""
    c = torch.cumsum(mask.to(torch.int64), dim=-1)
    out.copy_(torch.clamp(c - 1, min=0))
    if suffix_out is not None:
        n = c[..., -1:] if mask.shape[-1] > 0 else torch.zeros(1, dtype=torch.int64, device=mask.device)
        suffix_out.copy_(n + torch.arange(suffix_out.shape[-1], device=suffix_out.device))
    return out


# -- flow matching / calibration / input ----------------------------------------------------------------
def time_embedding(t: torch.Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0, *,
                   out: torch.Tensor) -> torch.Tensor:
    """Sinusoidal timestep embedding [B, dim] (sin first, then cos), computed in float64 as openpi does."""
    if dim % 2 or out.shape[-1] != dim:
        raise ValueError(f"time_embedding: dim {dim} must be even and equal out's last dim {out.shape[-1]}")
    frac = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** frac
    scaling = 1.0 / period * 2 * math.pi
    ang = scaling[None, :] * t.double()[:, None]
    out.copy_(torch.cat([torch.sin(ang), torch.cos(ang)], dim=1))
    return out


def flow_update(x: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor],
                dt: Union[float, torch.Tensor], *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Euler step of flow matching: out = x + dt * (v + bias); out=None updates x in place.

    ``dt`` is a Python float or a device fp32 tensor [1] (never read on the host)."""
    vv = v.float()
    if bias is not None:
        vv = vv + bias.float()
    dtt = dt.float() if isinstance(dt, torch.Tensor) else torch.tensor(dt, dtype=torch.float32, device=x.device)
    res = x.float() + dtt * vv
    target = x if out is None else out
    target.copy_(res)
    return target


def flow_inpaint(x: torch.Tensor, eps: torch.Tensor, target: torch.Tensor, w: torch.Tensor, w1: torch.Tensor,
                 t: float) -> torch.Tensor:
    """Real-time chunking's blend, in place: x = w * (t * eps + (1 - t) * target) + w1 * x, row-wise weights
    w [M] and w1 = 1 - w [M] (precomputed, so w = 1 / w = 0 are exact), x, eps, target [M, A] fp32."""
    y = eps * t + target * (1.0 - t)
    x.copy_(w[:, None] * y + w1[:, None] * x)
    return x


def linear_flow_update(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor, bias: torch.Tensor, dt: float, *,
                       ws=None) -> torch.Tensor:
    """action_out_proj + Euler step in one: x += dt * (h @ w + bias), fp32; w is [K, N] (the stored transpose).
    ``ws`` is the Triton kernel's split-K workspace; the twin has no use for it."""
    x.copy_(x.float() + dt * (h.float() @ w.float() + bias.float()))
    return x


def flow_boundary(x_t: torch.Tensor, residual: torch.Tensor, y: torch.Tensor, gate: torch.Tensor,
                  mod_scale: torch.Tensor, mod_shift: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor,
                  dt: float, eps: float = 1e-6, *, w_in: Optional[torch.Tensor] = None,
                  b_in: Optional[torch.Tensor] = None, next_scale: Optional[torch.Tensor] = None,
                  next_shift: Optional[torch.Tensor] = None, out: Optional[torch.Tensor] = None,
                  out_scale: Scale = None, chunk: Optional[int] = None,
                  num_warps: Optional[int] = None, inpaint=None) -> torch.Tensor:
    """(chunk, num_warps: the Triton kernel's launch knobs, unused here.)
    The seam between two flow steps (kernels/triton/flow_boundary.py), as its pieces: final gated adaRMS,
    x_t += dt * (h @ w_out.T + b_out); then, with w_in, residual = x_t @ w_in + b_in and out = the next step's
    layer-0 adaRMS of it. w_out and w_in are [A, D] fp32. inpaint: None or (eps, target, w, w1, t), real-time
    chunking's blend (flow_inpaint) right after the Euler step, before action_in reads x_t."""
    h = torch.empty(residual.shape, dtype=torch.float32, device=residual.device)
    gated_add_ada_rms_norm(residual, y, gate, mod_scale, mod_shift, eps, out=h)
    x_t.copy_(x_t.float() + dt * (h @ w_out.float().t() + b_out.float()))
    if inpaint is not None:
        flow_inpaint(x_t, *inpaint)
    if w_in is not None:
        residual.copy_(x_t.float() @ w_in.float() + b_in.float())
        ada_rms_norm(residual, next_scale, next_shift, eps, out=out, out_scale=out_scale)
    return x_t


def amax_update(x: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
    """Calibration: slot[0] = max(slot[0], max|x|) (slot is a device fp32 tensor [1])."""
    m = x.detach().abs().amax().float() if x.numel() else torch.zeros((), device=slot.device)
    slot.copy_(torch.maximum(slot, m.reshape(1)))
    return slot


def uint8_to_model(img: torch.Tensor, *, out: torch.Tensor) -> torch.Tensor:
    """uint8 images [V, H, W, 3] -> model input [V, 3, H, W] in [-1, 1]: x / 255 * 2 - 1 (openpi)."""
    if img.dtype != torch.uint8 or img.dim() != 4 or img.shape[-1] != 3:
        raise ValueError(f"uint8_to_model: expected uint8 [V, H, W, 3], got {img.dtype} {tuple(img.shape)}")
    out.copy_(img.permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0)
    return out


def mha_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, out: torch.Tensor, sm_scale: float,
                  out_scale: Scale = None, **tiles) -> torch.Tensor:
    """Full multi-head attention without a mask: q, k, v [B, N, T, HD] -> out [B, T, N*HD] (quantized when
    out_scale is given). Twin of the Triton SigLIP kernel (``tiles`` are its launch knobs; unused here)."""
    b, n, t, hd = q.shape
    p = torch.softmax(torch.einsum("bntd,bnkd->bntk", q.float(), k.float()) * sm_scale, dim=-1)
    y = torch.einsum("bntk,bnkd->btnd", p, v.float()).reshape(b, t, n * hd)
    return _store(y, out, out_scale)


def mqa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: Optional[torch.Tensor], *,
                  out: torch.Tensor, sm_scale: float, out_scale: Scale = None, ws=None) -> torch.Tensor:
    """Multi-query attention (N query heads, one K/V head) with an additive key bias.

    q [N, T, H], k/v [Lk, H], bias [Lk] or None -> out [T, N*H] (quantized when out_scale is given).
    Twin of the Triton flash-decoding kernel (``ws`` is its workspace; unused here)."""
    n, t, h = q.shape
    s = torch.einsum("nth,kh->ntk", q.float(), k.float()) * sm_scale
    if bias is not None:
        s = s + bias.float()
    p = torch.softmax(s, dim=-1)
    y = torch.einsum("ntk,kh->tnh", p, v.float()).reshape(t, n * h)
    return _store(y, out, out_scale)
