"""Hopper attention for the Pi0.5 sites.

* siglip (16 heads x 72, no mask): our Triton kernel `mha_attention`, which reads q/k/v straight from the qkv
  GEMM's rows and writes the o-projection's layout, FP8 when asked. Through torch SDPA each of the 27 layers
  was cuDNN's kernel (~8 us on an H100) + a copy of its output + an FP8 quantization kernel.
* prefix and decoder (MQA: 8 query heads over 1 KV head, additive key-padding bias): our Triton
  flash-decoding kernel `mqa_attention`, which stacks the query heads into one matrix, splits the keys across
  programs, and writes [T, N*H] directly -- optionally already FP8 (fused attention-output quantization).
  Through SDPA the 180 decoder calls cost 6.8 ms of an 18 ms forward (profiled 2026-11-26, H100).

The backend owns the split-softmax workspaces of its sites (allocated here, once), so `run` allocates
nothing and is graph-safe. Key-padding bias rows are kept 16-aligned in length by the frontend's layout.
RoPE is not applied here: the prefix runs rope_qkv_split after its qkv GEMM, the expert does it in the qkv
GEMM's epilogue (kernels/triton/gemm_fused.py), and both write K/V straight into the cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from flash_rt.errors import InputError
from flash_rt.hardware.backend import AttentionSpec, SiteSpec
from flash_rt.kernels.triton.attention import MqaWorkspace, mqa_attention
from flash_rt.kernels.triton.mha import mha_attention, mha_block_m

MHA_TILES = {"block_m", "block_n", "num_warps", "num_stages"}


class HopperAttnBackend:
    """tiles: {site: keyword overrides} for A/B runs: MqaWorkspace's (block_m, block_n, target_programs,
    num_warps, num_stages) for the MQA sites, mha_attention's (MHA_TILES) for SigLIP; the defaults are the
    sweep's best (benchmarks/attention_sweep.py)."""

    def __init__(self, spec: AttentionSpec, device, tiles: dict | None = None):
        self.spec = spec
        tiles = tiles or {}
        unknown = set(tiles) - set(spec.sites)
        if unknown:
            raise InputError(f"attention_tiles: unknown sites {sorted(unknown)}; expected any of {sorted(spec.sites)}")
        self.ws = {name: MqaWorkspace(s.num_q_heads * s.max_q, s.max_kv, s.head_dim, device, **tiles.get(name, {}))
                   for name, s in spec.sites.items() if s.num_kv_heads == 1 and s.num_q_heads > 1}
        # full MHA without a mask (SigLIP): the Triton kernel, with these launch knobs
        self.mha = {name: dict(tiles.get(name, {})) for name, s in spec.sites.items()
                    if name not in self.ws and s.num_kv_heads == s.num_q_heads and not s.masked}
        for name, kw in self.mha.items():
            if set(kw) - MHA_TILES:
                raise InputError(f"attention_tiles[{name!r}]: unknown {sorted(set(kw) - MHA_TILES)}; expected any "
                                 f"of {sorted(MHA_TILES)}")

    def run(self, site, layer, q, k, v, key_bias, out, out_scale=None):
        """q [1, N, T, H] head-major, k/v [1, K, Tk, H]; key_bias [Tk] or None; out [1, T, N*H] (bf16, or
        FP8 when out_scale is given -- MQA sites only)."""
        s = self.spec.site(site)
        if site in self.ws:
            mqa_attention(q[0], k[0, 0], v[0, 0], key_bias, out=out[0], ws=self.ws[site],
                          sm_scale=s.head_dim ** -0.5, out_scale=out_scale)
            return
        if site in self.mha:
            mha_attention(q, k, v, out=out, sm_scale=s.head_dim ** -0.5, out_scale=out_scale, **self.mha[site])
            return
        if out_scale is not None:
            raise ValueError(f"site {site!r} runs through SDPA and cannot write FP8; quantize after it")
        b, n, t, h = q.shape
        mask = None if key_bias is None else key_bias.view(1, 1, 1, -1).expand(b, n, t, -1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=s.head_dim ** -0.5)
        out.view(b, t, n, h).copy_(o.transpose(1, 2))


def make_pi05_hopper_attention(cfg, num_views: int, prefix_len: int, horizon: int, kv_len: int,
                               device, tiles: dict | None = None) -> HopperAttnBackend:
    """Pi0.5 sites with the Hopper layout: prefix keys = prefix_len, decoder keys = kv_len (16-aligned)."""
    spec = AttentionSpec()
    spec.add_site(SiteSpec("siglip", cfg.vis_layers, cfg.vis_heads, cfg.vis_heads, cfg.vis_head_dim,
                           cfg.num_patches, cfg.num_patches))
    spec.add_site(SiteSpec("prefix", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, prefix_len, prefix_len,
                           masked=True))
    spec.add_site(SiteSpec("decoder", cfg.layers, cfg.heads, cfg.kv_heads, cfg.head_dim, horizon, kv_len,
                           masked=True))
    tiles = dict(tiles or {})
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    tiles["siglip"] = {"block_m": mha_block_m(num_views, cfg.vis_heads, cfg.num_patches, sms),
                       **tiles.get("siglip", {})}   # a shape rule; an explicit override wins
    return HopperAttnBackend(spec, device, tiles)
