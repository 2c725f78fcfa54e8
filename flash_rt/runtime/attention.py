"""The attention backend of every GPU target: the catalogue's Triton kernels, tiled by the target's tuning table.

A model declares its sites (an AttentionSpec: heads, head dim, rows, keys, masked or not); this backend picks the
kernel for each site by its shape, not by its name, so it serves any model:
* MQA sites (one KV head under several query heads, additive key bias): `mqa_attention`, flash-decoding style. It
  stacks the query heads into one matrix, splits the keys over programs until the target's SM count is filled, and
  writes [T, N*H] directly, optionally already FP8. Sites of at most `tuning.decode_max_rows` query rows get the
  table's "decode" tiles, larger ones its "prefill" tiles. Through SDPA, Pi0.5's 180 decoder calls cost 6.8 ms of
  an 18 ms forward (profiled 2026-11-26, H100).
* Unmasked MHA sites (SigLIP): `mha_attention` on views of the qkv GEMM's rows, FP8 out when asked. Through SDPA
  each SigLIP layer was cuDNN's kernel (~8 us on an H100) + a copy of its output + an FP8 quantization kernel.
* Anything else: torch SDPA (bf16 out only).

The backend owns the split-softmax workspaces of its sites (allocated here, once), so `run` allocates nothing and
is graph-safe. RoPE is not applied here: the pipelines write rotated K/V straight into the cache.
"""
from __future__ import annotations

import torch.nn.functional as F

from flash_rt.errors import InputError
from flash_rt.hardware.backend import AttentionSpec
from flash_rt.kernels.triton.attention import MqaWorkspace, mqa_attention
from flash_rt.kernels.triton.mha import mha_attention, mha_block_m
from flash_rt.runtime.tuning import GpuTuning


class TritonAttnBackend:
    """tiles: {site: field overrides} for A/B runs (MqaTiles fields for MQA sites, MhaTiles fields for unmasked
    MHA sites); the defaults are the tuning table's. An unknown site or field is refused by name.
    split_like: {MQA site: another backend's MqaWorkspace} whose tiles and key-split boundaries the site takes
    instead of choosing them for its own shape -- a prompt-length bucket takes its full length's, so each key is
    summed in the same block and split as there (models/pi05/prompt_buckets.py)."""

    def __init__(self, spec: AttentionSpec, device, tuning: GpuTuning, tiles: dict | None = None,
                 split_like: dict | None = None):
        self.spec = spec
        tiles = dict(tiles or {})
        unknown = set(tiles) - set(spec.sites)
        if unknown:
            raise InputError(f"attention_tiles: unknown sites {sorted(unknown)}; expected any of {sorted(spec.sites)}")
        self.ws, self.mha = {}, {}
        for name, s in spec.sites.items():
            try:
                if s.num_kv_heads == 1 and s.num_q_heads > 1:
                    rows = s.num_q_heads * s.max_q
                    like = (split_like or {}).get(name)
                    if like is not None:
                        self.ws[name] = MqaWorkspace(rows, s.max_kv, s.head_dim, device, like.tiles,
                                                     keys_per_split=like.keys_per_split)
                        continue
                    t = tuning.attention_tiles(rows).with_overrides(**tiles.get(name, {}))
                    self.ws[name] = MqaWorkspace(rows, s.max_kv, s.head_dim, device, t)
                elif s.num_kv_heads == s.num_q_heads and not s.masked:
                    t = tuning.full_attention.with_overrides(**tiles.get(name, {}))
                    self.mha[name] = t
            except ValueError as e:
                raise InputError(f"attention_tiles[{name!r}]: {e}") from None
        self.sm_count = tuning.sm_count

    def run(self, site, layer, q, k, v, key_bias, out, out_scale=None):
        """q [1, N, T, H] head-major, k/v [1, K, Tk, H]; key_bias [Tk] or None; out [1, T, N*H] (bf16, or
        FP8 when out_scale is given -- Triton sites only)."""
        s = self.spec.site(site)
        if site in self.ws:
            mqa_attention(q[0], k[0, 0], v[0, 0], key_bias, out=out[0], ws=self.ws[site],
                          sm_scale=s.head_dim ** -0.5, out_scale=out_scale)
            return
        if site in self.mha:
            t = self.mha[site]
            b, n, tq, _ = q.shape
            block_m = t.block_m or mha_block_m(b, n, tq, self.sm_count)
            mha_attention(q, k, v, out=out, sm_scale=s.head_dim ** -0.5, out_scale=out_scale, block_m=block_m,
                          block_n=t.block_n, num_warps=t.num_warps, num_stages=t.num_stages)
            return
        if out_scale is not None:
            raise ValueError(f"site {site!r} runs through SDPA and cannot write FP8; quantize after it")
        b, n, t, h = q.shape
        mask = None if key_bias is None else key_bias.view(1, 1, 1, -1).expand(b, n, t, -1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=s.head_dim ** -0.5)
        out.view(b, t, n, h).copy_(o.transpose(1, 2))
