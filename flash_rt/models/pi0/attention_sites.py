"""STEP 3 of 5 (from the template) -- the Pi0 attention sites: one SiteSpec per distinct attention pattern.

| Pi0 (pi05_spec.md 1c)                                             | site                                        |
|-------------------------------------------------------------------|---------------------------------------------|
| SigLIP: full attention inside each camera's patches                | "siglip" (no mask)                          |
| PaliGemma over images + prompt, padding masked                      | "prefix": rows = keys = P, key-padding bias |
| the state token: sees the prefix and itself, never the actions      | "state": 1 row, keys = P + 1                |
| the action tokens: see the prefix, the state and every action       | "decoder": H rows, keys = P + 1 + H         |

The bias is one value per KEY, so the state row -- whose mask differs from the action rows' -- gets its own site
over the keys it may see (the template's rule). The cache layout is [prefix | state | actions].
"""
from __future__ import annotations

from flash_rt.hardware.backend import AttentionSpec, SiteSpec


def pi0_attention_spec(cfg, d, state_keys: int | None = None) -> AttentionSpec:
    """d: the deployment's dims (Pi05Dims with kv_len = prefix_len + 1 + horizon, see pipeline_cpu.pi0_dims);
    state_keys: the state site's key length (default P + 1; the GPU cells round it up and mask the tail)."""
    spec = AttentionSpec()
    spec.add_site(SiteSpec("siglip", cfg.vis_layers, cfg.vis_heads, cfg.vis_heads, cfg.vis_head_dim,
                           cfg.num_patches, cfg.num_patches))
    spec.add_site(SiteSpec("prefix", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, d.prefix_len, d.prefix_len,
                           masked=True))
    spec.add_site(SiteSpec("state", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, 1,
                           state_keys or d.prefix_len + 1, masked=True))
    spec.add_site(SiteSpec("decoder", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, d.horizon, d.kv_len,
                           masked=True))
    return spec
