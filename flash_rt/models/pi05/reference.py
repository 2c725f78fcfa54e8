"""The FP32 eager Pi0.5 reference: the oracle every engine path is compared against.

Written straight from pi05_spec.md sections 1a-1d, deliberately plain (gpt-fast style: one file, functions
over a dict of tensors, no fusion, no preallocation). It reads the checkpoint's own tensors under their
canonical openpi names -- it does NOT go through the engine's weight specs -- so a bug in a spec, a fused
transform or a kernel cannot hide by being shared with the oracle.

Conventions (spec section): SigLIP pre-LN, tanh-GELU, no pooling (1a); projector without scaling (1a);
language embeddings times sqrt(width) (1a); Gemma RMSNorm out = normed * (1 + w), variance in fp32 (1a);
RoPE half-split over the full head_dim, theta 10000, same positions for both experts (1a); masks from
cumsum(ar) <= cumsum(ar) plus pad flags, masked logits -2.3819763e38 (1a, 1c); positions = cumsum(pad) - 1
(1c); KV cache of the prefix, never appended to (1c); Euler flow matching from t=1 (noise) to t=0 with
fp32 accumulation of t (openpi's `t += dt`, 1d).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from flash_rt.models.pi05.config import EXP, LLM, PROJ, VIS, Pi05Config
from flash_rt.models.pi05.keys import embedding_key

MASK_VALUE = -2.3819763e38


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def gemma_rms_norm(x, w, eps):
    return rms_norm(x, eps) * (1.0 + w.float())


def rope(x: torch.Tensor, pos: torch.Tensor, theta: float) -> torch.Tensor:
    """x [B, T, heads, H]; pos [B, T]. Half-split rotation (dim i pairs with i + H/2)."""
    h = x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, h, 2, dtype=torch.float32, device=x.device) / h))
    ang = pos.float()[..., None] * inv_freq  # [B, T, H/2]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, :, None, :]
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, :, None, :]
    x1, x2 = x[..., : h // 2], x[..., h // 2:]
    rot = torch.cat([-x2, x1], -1)
    return x * cos + rot * sin


def attention(q, k, v, mask):
    """q [B, Tq, N, H], k/v [B, Tk, K, H] (GQA: N % K == 0), mask [B, Tq, Tk] bool -> [B, Tq, N*H]."""
    b, tq, n, h = q.shape
    rep = n // k.shape[2]
    k = k.repeat_interleave(rep, dim=2)
    v = v.repeat_interleave(rep, dim=2)
    s = torch.einsum("bqnh,bknh->bnqk", q, k) * (h ** -0.5)
    s = s.masked_fill(~mask[:, None], MASK_VALUE)
    p = torch.softmax(s.float(), dim=-1).to(v.dtype)
    return torch.einsum("bnqk,bknh->bqnh", p, v).reshape(b, tq, n * h)


def make_att_2d_masks(pad: torch.Tensor, ar: torch.Tensor) -> torch.Tensor:
    """big_vision rule: query i sees key j iff cumsum(ar)[j] <= cumsum(ar)[i], both real."""
    c = torch.cumsum(ar.long(), dim=1)
    m = c[:, None, :] <= c[:, :, None]
    return m & pad[:, None, :] & pad[:, :, None]


def sinusoidal_time_embedding(t: torch.Tensor, dim: int, min_period: float, max_period: float) -> torch.Tensor:
    frac = torch.linspace(0.0, 1.0, dim // 2, dtype=torch.float64, device=t.device)
    period = min_period * (max_period / min_period) ** frac
    ang = t.double()[:, None] * (2 * math.pi / period)[None, :]
    return torch.cat([ang.sin(), ang.cos()], dim=1).float()


def euler_sample(noise: torch.Tensor, velocity, num_steps: int, inpaint=None) -> torch.Tensor:
    """openpi's sampler, as the FP32 references run it: x = noise at t = 1, then x += dt * velocity(x, t) and
    t += dt in fp32 while t >= -dt/2. inpaint: None, or (weights [B, H], target [B, H, A]) for real-time chunking:
    after every Euler step, at the time t it reached (exactly 0 after the last),
    x <- W * (t * noise + (1 - t) * target) + (1 - W) * x (the blend is the identity at t = 1; models/pi05/rtc.py
    says why this and not guidance). Shared by the Pi0.5 and Pi0 references (their velocity differs); the engine has its own kernels for it."""
    dev = noise.device
    dt = torch.tensor(-1.0 / num_steps, dtype=torch.float32)
    t = torch.tensor(1.0, dtype=torch.float32)
    x = noise.float()
    eps = x.clone()
    if inpaint is not None:
        wt = inpaint[0].to(dev).float()[..., None]
        one_minus = 1.0 - wt
        target = inpaint[1].to(dev).float()
    while t >= -dt / 2:
        v = velocity(x, t.expand(x.shape[0]).to(dev))
        x = x + dt.to(dev) * v
        t = t + dt
        if inpaint is not None:
            tb = float(t) if t >= -dt / 2 else 0.0
            x = wt * (tb * eps + (1.0 - tb) * target) + one_minus * x
    return x


class Pi05Reference:
    """Pi0.5 in FP32 on any torch device. `weights` maps canonical openpi key -> tensor (any float dtype).

    `dtype=torch.bfloat16` gives the eager BF16 baseline of the benchmarks (weights and GEMMs in bf16, norms
    and softmax in fp32, as openpi's mixed layout); the oracle is always the fp32 default.
    """

    def __init__(self, weights: Mapping[str, torch.Tensor], cfg: Pi05Config, device="cpu", dtype=torch.float32):
        self.cfg, self.dtype = cfg, dtype
        self.w = {k: v.to(device=device, dtype=dtype) for k, v in weights.items()
                  if not k.endswith("lm_head.weight") or k == embedding_key(weights)}
        self.embed = self.w[embedding_key(weights)]
        self.device = device

    def lin(self, x, key, bias=True):
        b = self.w.get(key + ".bias") if bias else None
        wt = self.w[key + ".weight"]
        return F.linear(x.to(wt.dtype), wt, b)

    # -- vision -----------------------------------------------------------------------------------
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, V, 3, S, S] in [-1, 1] -> [B, V * num_patches, width] (projected, unscaled)."""
        c, w = self.cfg, self.w
        b, nv = images.shape[:2]
        x = F.conv2d(images.reshape(b * nv, *images.shape[2:]).to(self.dtype), w[VIS + "embeddings.patch_embedding.weight"],
                     w[VIS + "embeddings.patch_embedding.bias"], stride=c.patch_size)
        x = x.flatten(2).transpose(1, 2) + w[VIS + "embeddings.position_embedding.weight"]
        hd = c.vis_head_dim
        for i in range(c.vis_layers):
            p = f"{VIS}encoder.layers.{i}."
            h = F.layer_norm(x, (c.vis_width,), w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], c.ln_eps)
            q, k, v = (self.lin(h, p + f"self_attn.{n}_proj").reshape(*h.shape[:2], c.vis_heads, hd)
                       for n in ("q", "k", "v"))
            full = torch.ones(h.shape[0], h.shape[1], h.shape[1], dtype=torch.bool, device=h.device)
            x = x + self.lin(attention(q, k, v, full), p + "self_attn.out_proj")
            h = F.layer_norm(x, (c.vis_width,), w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], c.ln_eps)
            x = x + self.lin(F.gelu(self.lin(h, p + "mlp.fc1"), approximate="tanh"), p + "mlp.fc2")
        x = F.layer_norm(x, (c.vis_width,), w[VIS + "post_layernorm.weight"], w[VIS + "post_layernorm.bias"], c.ln_eps)
        x = self.lin(x, PROJ[:-1])
        return x.reshape(b, nv * c.num_patches, c.width)

    # -- prefix -----------------------------------------------------------------------------------
    def embed_prefix(self, images, image_masks, tokens, token_mask):
        c = self.cfg
        img = self.embed_images(images)
        img_pad = image_masks[:, :, None].expand(-1, -1, c.num_patches).reshape(img.shape[0], -1)
        lang = self.embed[tokens] * math.sqrt(c.width)
        emb = torch.cat([img, lang], dim=1)
        pad = torch.cat([img_pad, token_mask], dim=1).bool()
        ar = torch.zeros_like(pad)
        return emb, pad, ar

    def gemma_layer_qkv(self, h, prefix: str, pos):
        c = self.cfg
        q = self.lin(h, prefix + "self_attn.q_proj", bias=False).reshape(*h.shape[:2], c.heads, c.head_dim)
        k = self.lin(h, prefix + "self_attn.k_proj", bias=False).reshape(*h.shape[:2], c.kv_heads, c.head_dim)
        v = self.lin(h, prefix + "self_attn.v_proj", bias=False).reshape(*h.shape[:2], c.kv_heads, c.head_dim)
        return rope(q, pos, c.rope_theta), rope(k, pos, c.rope_theta), v

    def mlp(self, h, prefix):
        g = self.lin(h, prefix + "mlp.gate_proj", bias=False)
        u = self.lin(h, prefix + "mlp.up_proj", bias=False)
        return self.lin(F.gelu(g, approximate="tanh") * u, prefix + "mlp.down_proj", bias=False)

    def prefix_kv(self, emb, pad, ar):
        """One prefix-only forward of the PaliGemma expert; returns per-layer (K, V) after RoPE."""
        c, w = self.cfg, self.w
        mask = make_att_2d_masks(pad, ar)
        pos = torch.cumsum(pad.long(), dim=1) - 1
        x, cache = emb.float(), []
        for i in range(c.layers):
            p = f"{LLM}layers.{i}."
            h = gemma_rms_norm(x, w[p + "input_layernorm.weight"], c.rms_eps)
            q, k, v = self.gemma_layer_qkv(h, p, pos)
            cache.append((k, v))
            x = x + self.lin(attention(q, k, v, mask), p + "self_attn.o_proj", bias=False)
            h = gemma_rms_norm(x, w[p + "post_attention_layernorm.weight"], c.rms_eps)
            x = x + self.mlp(h, p)
        return cache

    # -- action expert ----------------------------------------------------------------------------
    def ada_rms(self, x, cond, key):
        scale, shift, gate = self.lin(cond, key + ".dense").chunk(3, dim=-1)
        return rms_norm(x, self.cfg.rms_eps) * (1 + scale[:, None]) + shift[:, None], gate[:, None]

    def denoise_step(self, cache, prefix_pad, x_t, t):
        """Velocity v(x_t, t): the expert over the action tokens, attending to the cached prefix."""
        c = self.cfg
        b, s = x_t.shape[:2]
        x = self.lin(x_t, "action_in_proj")
        te = sinusoidal_time_embedding(t, c.ex_width, c.min_period, c.max_period)
        cond = F.silu(self.lin(F.silu(self.lin(te, "time_mlp_in")), "time_mlp_out"))
        suffix_pad = torch.ones(b, s, dtype=torch.bool, device=x.device)
        suffix_ar = torch.zeros(b, s, dtype=torch.bool, device=x.device)
        suffix_ar[:, 0] = True
        pre = prefix_pad[:, None, :].expand(b, s, prefix_pad.shape[1])
        mask = torch.cat([pre, make_att_2d_masks(suffix_pad, suffix_ar)], dim=2)
        pos = prefix_pad.long().sum(1, keepdim=True) + torch.cumsum(suffix_pad.long(), dim=1) - 1
        for i in range(c.layers):
            p = f"{EXP}layers.{i}."
            h, gate = self.ada_rms(x, cond, p + "input_layernorm")
            q, k, v = self.gemma_layer_qkv(h, p, pos)
            kp, vp = cache[i]
            att = attention(q, torch.cat([kp, k], 1), torch.cat([vp, v], 1), mask)
            x = x + self.lin(att, p + "self_attn.o_proj", bias=False) * gate
            h, gate = self.ada_rms(x, cond, p + "post_attention_layernorm")
            x = x + self.mlp(h, p) * gate
        h, _ = self.ada_rms(x, cond, EXP + "norm")
        return self.lin(h[:, -s:], "action_out_proj")

    @torch.no_grad()
    def sample_actions(self, images, image_masks, tokens, token_mask, noise, num_steps: int | None = None,
                       inpaint=None):
        """images [B,V,3,S,S] in [-1,1]; image_masks [B,V]; tokens/token_mask [B,L]; noise [B,H,A] fp32.
        inpaint: None, or (weights [B,H], target [B,H,A]) for real-time chunking: after every Euler step, at the
        time t it reached (exactly 0 after the last), x <- W * (t * noise + (1 - t) * target) + (1 - W) * x
        (the blend is the identity at t = 1; models/pi05/rtc.py says why this and not guidance).

        Returns the normalized (model-space) action chunk [B, H, A] in fp32.
        """
        dev = self.device
        emb, pad, ar = self.embed_prefix(images.to(dev), image_masks.to(dev), tokens.to(dev), token_mask.to(dev))
        cache = self.prefix_kv(emb, pad, ar)
        return euler_sample(noise.to(dev), lambda x, t: self.denoise_step(cache, pad, x, t),
                            num_steps or self.cfg.num_steps, inpaint)
