"""The FP32 eager Pi0 reference: the oracle every Pi0 cell is compared against.

Written from pi05_spec.md 1a-1d for Pi0, deliberately plain. The vision tower, the projector, the prompt embedding
and the prefix KV cache are the same architecture as Pi0.5's (1a), so they are inherited from `Pi05Reference`
unchanged; what Pi0 does differently (1b, 1c) is written out here:

* the continuous state is ONE suffix token, `state_proj(state)`, in front of the action tokens;
* the action tokens are `action_time_mlp_out(swish(action_time_mlp_in(cat(action_in_proj(x_t), sincos(t)))))`;
* the expert's norms are plain Gemma RMSNorms `rms(x) * (1 + w)` (no adaRMS, no gated residuals);
* suffix ar = [1, 1, 0, ..., 0]: the state token sees the prefix and itself, the actions see everything.

Like Pi0.5's, it reads the checkpoint's own tensors under their canonical names, never the engine's specs.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from flash_rt.models.pi0.config import ACTION_TIME_IN, ACTION_TIME_OUT, STATE_PROJ, Pi0Config
from flash_rt.models.pi05.config import EXP
from flash_rt.models.pi05.reference import (Pi05Reference, attention, euler_sample, gemma_rms_norm, make_att_2d_masks,
                                            sinusoidal_time_embedding)


class Pi0Reference(Pi05Reference):
    """Pi0 in FP32 (or the eager BF16 baseline with dtype=torch.bfloat16) on any torch device."""

    def __init__(self, weights: Mapping[str, torch.Tensor], cfg: Pi0Config, device="cpu", dtype=torch.float32):
        super().__init__(weights, cfg, device=device, dtype=dtype)

    def suffix_embed(self, state, x_t, t):
        """state [B, state_dim], x_t [B, H, A], t [B] -> suffix tokens [B, 1 + H, ex_width]."""
        c = self.cfg
        st = self.lin(state, STATE_PROJ)[:, None, :]
        act = self.lin(x_t, "action_in_proj")
        te = sinusoidal_time_embedding(t, c.ex_width, c.min_period, c.max_period).to(act.dtype)
        te = te[:, None, :].expand(-1, x_t.shape[1], -1)
        at = self.lin(F.silu(self.lin(torch.cat([act, te], dim=-1), ACTION_TIME_IN)), ACTION_TIME_OUT)
        return torch.cat([st, at], dim=1)

    def denoise_step(self, cache, prefix_pad, state, x_t, t):
        """Velocity v(x_t, t): the expert over [state token, action tokens] attending to the cached prefix."""
        c, w = self.cfg, self.w
        x = self.suffix_embed(state, x_t, t)
        b, s = x.shape[:2]
        suffix_pad = torch.ones(b, s, dtype=torch.bool, device=x.device)
        suffix_ar = torch.zeros(b, s, dtype=torch.bool, device=x.device)
        suffix_ar[:, :2] = True            # state token: its own block; actions: one block after it
        pre = prefix_pad[:, None, :].expand(b, s, prefix_pad.shape[1])
        mask = torch.cat([pre, make_att_2d_masks(suffix_pad, suffix_ar)], dim=2)
        pos = prefix_pad.long().sum(1, keepdim=True) + torch.cumsum(suffix_pad.long(), dim=1) - 1
        x = x.float()
        for i in range(c.layers):
            p = f"{EXP}layers.{i}."
            h = gemma_rms_norm(x, w[p + "input_layernorm.weight"], c.rms_eps)
            q, k, v = self.gemma_layer_qkv(h, p, pos)
            kp, vp = cache[i]
            att = attention(q, torch.cat([kp, k], 1), torch.cat([vp, v], 1), mask)
            x = x + self.lin(att, p + "self_attn.o_proj", bias=False).float()
            h = gemma_rms_norm(x, w[p + "post_attention_layernorm.weight"], c.rms_eps)
            x = x + self.mlp(h, p).float()
        h = gemma_rms_norm(x, w[EXP + "norm.weight"], c.rms_eps)
        return self.lin(h[:, -x_t.shape[1]:], "action_out_proj").float()

    @torch.no_grad()
    def sample_actions(self, images, image_masks, tokens, token_mask, state, noise, num_steps: int | None = None,
                       inpaint=None):
        """images [B,V,3,S,S] in [-1,1]; image_masks [B,V]; tokens/token_mask [B,L]; state [B, state_dim] (model
        space, zero-padded); noise [B,H,A] fp32; inpaint: None, or real-time chunking's (weights [B,H], target
        [B,H,A]), blended after every Euler step as in Pi0.5 (euler_sample). Returns the model-space action chunk
        [B, H, A] in fp32."""
        dev = self.device
        emb, pad, ar = self.embed_prefix(images.to(dev), image_masks.to(dev), tokens.to(dev), token_mask.to(dev))
        cache = self.prefix_kv(emb, pad, ar)
        state = state.to(dev).float()
        return euler_sample(noise.to(dev), lambda x, t: self.denoise_step(cache, pad, state, x, t),
                            num_steps or self.cfg.num_steps, inpaint)
