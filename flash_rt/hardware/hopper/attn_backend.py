"""Hopper attention for the Pi0.5 sites, through torch SDPA (FlashAttention / memory-efficient kernels).

Pi0.5's Gemma and expert attention is MQA (8 query heads, 1 KV head). With one KV head, attention of N query
heads over the same K/V equals single-head attention of the N*T stacked query rows, so the prefix and
decoder sites fold the heads into the sequence axis: no GQA broadcast, no repeated K/V, and any SDPA kernel
accepts it. Key padding (masked camera slots, prompt padding, the unused tail of the fixed-size cache) is an
additive bias row broadcast over queries; its length is kept a multiple of 16 (the memory-efficient
kernel's alignment) by the frontend's buffer layout.
"""
from __future__ import annotations

import torch.nn.functional as F

from flash_rt.hardware.backend import AttentionSpec, make_pi05_attention_spec


class HopperAttnBackend:
    def __init__(self, spec: AttentionSpec):
        self.spec = spec

    def run(self, site, layer, q, k, v, key_bias, out):
        """q [B, N, T, H] (head-major), k/v [B, K, Tk, H]; key_bias [Tk] or None; out [B, T, N*H]."""
        s = self.spec.site(site)
        b, n, t, h = q.shape
        if s.num_kv_heads == 1 and n > 1:
            qf = q.reshape(b, 1, n * t, h)
            mask = None if key_bias is None else key_bias.view(1, 1, 1, -1).expand(b, 1, n * t, -1)
            o = F.scaled_dot_product_attention(qf, k, v, attn_mask=mask, scale=s.head_dim ** -0.5)
            out.view(b, t, n, h).copy_(o.view(b, n, t, h).transpose(1, 2))
        else:
            mask = None if key_bias is None else key_bias.view(1, 1, 1, -1).expand(b, n, t, -1)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=s.head_dim ** -0.5)
            out.view(b, t, n, h).copy_(o.transpose(1, 2))


def make_pi05_hopper_attention(cfg, num_views, prefix_len, horizon) -> HopperAttnBackend:
    return HopperAttnBackend(make_pi05_attention_spec(cfg, num_views, prefix_len, horizon))
