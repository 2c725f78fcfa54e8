"""STEP 3 of 5 -- the attention sites: one SiteSpec per distinct attention pattern of the model, written once.

Copy to `flash_rt/models/mymodel/attention_sites.py` (a plugin: `<pkg>/attention_sites.py`). Every hardware
backend (CpuAttnBackend, the GPU runtime's TritonAttnBackend) serves any model's sites by their shape, so a new
model adds no table to a hardware room.

What you translate:

| your source model                                   | here                                              |
|-----------------------------------------------------|---------------------------------------------------|
| `F.scaled_dot_product_attention(q, k, v, mask)` of the prefix (images + prompt, padded) | site "prefix": rows = keys = prefix length, `masked=True` (key-padding bias) |
| the action tokens' attention over the cached prefix + their own keys | site "suffix": rows = suffix length, keys = prefix + suffix, `masked=True` |
| a vision tower's full attention (no mask)           | a site with `masked=False` (Pi0.5's "siglip")     |
| `num_key_value_heads < num_attention_heads` (GQA/MQA) | `num_kv_heads`; the backend repeats K/V heads (never interleave them in the weights) |

The bias is one value per KEY (0 = attend, a large negative = padding); a mask that differs per query row
(e.g. Pi0's state token not seeing the action tokens) needs its own site over the keys that row may see.
"""
from __future__ import annotations

from flash_rt.hardware.backend import AttentionSpec, SiteSpec


def mymodel_attention_spec(cfg, prefix_len: int, suffix_len: int) -> AttentionSpec:
    spec = AttentionSpec()
    spec.add_site(SiteSpec("prefix", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, prefix_len, prefix_len,
                           masked=True))
    spec.add_site(SiteSpec("suffix", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, suffix_len,
                           prefix_len + suffix_len, masked=True))
    return spec
