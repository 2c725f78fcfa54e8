"""CPU attention: torch SDPA in fp32 (exact path; the oracle's twin). Serves any model's AttentionSpec."""
from __future__ import annotations

import torch.nn.functional as F

from flash_rt.hardware.backend import AttentionSpec


class CpuAttnBackend:
    def __init__(self, spec: AttentionSpec):
        self.spec = spec

    def run(self, site, layer, q, k, v, key_bias, out, out_scale=None):
        if out_scale is not None:
            raise ValueError("the CPU path is exact FP32: no FP8 attention output")
        s = self.spec.site(site)
        mask = None if key_bias is None else key_bias.view(1, 1, 1, -1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=s.head_dim ** -0.5,
                                           enable_gqa=s.num_q_heads != s.num_kv_heads)
        b, n, t, h = o.shape
        out.view(b, t, n, h).copy_(o.transpose(1, 2))
