"""The Pi0.5 attention sites, written once for every target (the model's shapes, not the chip's).

* siglip: full attention inside each camera's 256 patches (no mask);
* prefix: Gemma over images + prompt with a key-padding bias (8 query heads, one KV head), over the rows the prefix
  computes (d.prefix_rows: fewer than prefix_len in a prompt-length bucket);
* decoder: the action expert's rows over the cached prefix keys and their own (same heads).
"""
from __future__ import annotations

from flash_rt.hardware.backend import AttentionSpec, SiteSpec
from flash_rt.models.pi05.config import Pi05Config
from flash_rt.models.pi05.dims import Pi05Dims


def pi05_attention_spec(cfg: Pi05Config, d: Pi05Dims) -> AttentionSpec:
    spec = AttentionSpec()
    spec.add_site(SiteSpec("siglip", cfg.vis_layers, cfg.vis_heads, cfg.vis_heads, cfg.vis_head_dim,
                           cfg.num_patches, cfg.num_patches))
    spec.add_site(SiteSpec("prefix", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, d.prefix_rows, d.prefix_rows,
                           masked=True))
    spec.add_site(SiteSpec("decoder", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, d.horizon, d.kv_len,
                           masked=True))
    return spec
