"""Tiny Pi0 checkpoints in the real openpi and lerobot layouts, generated at test time.

The Pi0 twin of `flash_rt.testing.checkpoint` (same init rules, tokenizer and norm-stats files): the key schema is
Pi0's (flash_rt.models.pi0.keys: plain expert norms, state_proj, action_time_mlp_in/out), config.json carries
Pi0's fields, and the geometry keeps what the real code paths depend on (8 query heads / 1 KV head, 224x224 images
in 14x14 patches, non-zero Gemma norm offsets so every `1 + w` fold is exercised).
"""
from __future__ import annotations

from pathlib import Path

import torch

from flash_rt.models.pi0.config import Pi0Config
from flash_rt.models.pi0.keys import expected_shapes
from flash_rt.models.pi05.config import EXPERT_LM_HEAD
from flash_rt.testing.checkpoint import random_weight, tiny_norm_stats, write_tiny_dir

TINY_PI0_CONFIG = Pi0Config(
    vis_width=32, vis_layers=2, vis_heads=2, vis_mlp=64, patch_size=14, num_patches=256,
    width=64, layers=2, heads=8, kv_heads=1, head_dim=16, mlp=128, vocab=512,
    ex_width=32, ex_mlp=64, action_dim=32, state_dim=32, max_token_len=48, action_horizon=10, num_steps=10)


def tiny_pi0_state_dict(cfg: Pi0Config = TINY_PI0_CONFIG, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {k: random_weight(k, shp, gen) for k, shp in expected_shapes(cfg).items()}
    sd[EXPERT_LM_HEAD] = random_weight(EXPERT_LM_HEAD, (cfg.vocab, cfg.ex_width), gen)  # unused, as in real files
    return sd


def build_tiny_pi0_checkpoint(out_dir, layout: str = "openpi", seed: int = 0, dtype: torch.dtype = torch.float32,
                              cfg: Pi0Config = TINY_PI0_CONFIG, with_tokenizer: bool = True,
                              with_norm_stats: bool = True, norm_stats: dict | None = None) -> Path:
    """Write a tiny random Pi0 checkpoint directory and return its path.

    layout "openpi": keys without prefix, the embedding only as paligemma.lm_head.weight, openpi config.json +
    assets/<id>/norm_stats.json. layout "lerobot": lerobot's Pi0 keys (a "model." prefix, both lm_head and
    embed_tokens, state_proj and action_time_mlp_* kept), a draccus config.json (`"type": "pi0"`) and the
    policy_{pre,post}processor normalizer files (mean/std).
    """
    if layout not in ("openpi", "lerobot"):
        raise ValueError(f"layout must be 'openpi' or 'lerobot', got {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.to(dtype).contiguous() for k, v in tiny_pi0_state_dict(cfg, seed).items()}
    stats = tiny_norm_stats(seed=seed) if norm_stats is None else norm_stats
    extra = {"vision_num_heads": cfg.vis_heads, "head_dim": cfg.head_dim}
    if layout == "openpi":
        config = {"action_dim": cfg.action_dim, "action_horizon": cfg.action_horizon,
                  "paligemma_variant": "tiny", "action_expert_variant": "tiny",
                  "precision": str(dtype).replace("torch.", ""), "max_token_len": cfg.max_token_len, **extra}
    else:
        config = {"type": "pi0", "chunk_size": cfg.action_horizon, "n_action_steps": cfg.action_horizon,
                  "max_state_dim": cfg.state_dim, "max_action_dim": cfg.action_dim,
                  "num_inference_steps": cfg.num_steps, "tokenizer_max_length": cfg.max_token_len,
                  "dtype": str(dtype).replace("torch.", ""), **extra}
    return write_tiny_dir(out, sd, layout, config, stats if with_norm_stats else None, with_tokenizer)


def build_full_pi0_checkpoint(out, cfg: Pi0Config = Pi0Config(), dtype=torch.bfloat16, seed: int = 0,
                              device: str = "cpu") -> tuple[Path, int]:
    """A full-size random-weight Pi0 checkpoint (3.24 B parameters used at inference, ~6.5 GB bf16), written one
    tensor at a time like flash_rt.testing.full_size's Pi0.5 one (DROID-shaped norm stats, the tiny tokenizer).
    Returns (path, parameter count)."""
    from flash_rt.testing.full_size import write_full_checkpoint
    return write_full_checkpoint(out, expected_shapes(cfg), cfg, dtype, seed, device)
