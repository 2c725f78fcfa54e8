"""Tiny Pi0.5 checkpoints in the real openpi and lerobot layouts, generated at test time.

Nothing is downloaded: tests and the demo build a few-MB checkpoint with the exact key schema of the real
model (pi05_spec.md 1g) and random weights. The geometry keeps what the real model's code paths depend on:
8 query heads / 1 KV head (openpi and lerobot hard-code 8 heads in the joint attention reshape), 224x224
images in 14x14 patches (256 tokens a view, so preprocessing is the real one), adaRMS expert norms with
non-zero modulation, and non-zero Gemma norm weights so the (1 + w) fold is exercised.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from flash_rt.models.pi05.config import EMBED_LM_HEAD, EMBED_TOKENS, EXPERT_LM_HEAD, Pi05Config
from flash_rt.models.pi05.keys import expected_shapes

TINY_CONFIG = Pi05Config(
    vis_width=32, vis_layers=2, vis_heads=2, vis_mlp=64, patch_size=14, num_patches=256,
    width=64, layers=2, heads=8, kv_heads=1, head_dim=16, mlp=128, vocab=512,
    ex_width=32, ex_mlp=64, action_dim=32, max_token_len=64, action_horizon=10, num_steps=10)

TINY_STATE_DIM = 8
TINY_ACTION_DIM = 7
TINY_ASSET_ID = "tiny_robot"
# DROID (a Franka): state = 7 joint positions + gripper, actions = 7 joint velocities + gripper. The full-size
# checkpoint and the GPU configs (config/pi05_{hopper,thor,rtx}.yaml) use this shape; the tiny CPU one keeps 8/7,
# which config/pi05_cpu.yaml matches.
DROID_STATE_DIM = 8
DROID_ACTION_DIM = 8


def random_weight(key: str, shape: tuple, gen: torch.Generator) -> torch.Tensor:
    """Init that keeps activations O(1) through the tiny net: fan-in scaled matrices, small offsets for
    norms (Gemma stores norm weights as offsets from 1), non-zero adaRMS modulation."""
    if "vision_tower" in key and ("layer_norm" in key or "post_layernorm" in key):
        base = 1.0 if key.endswith(".weight") else 0.0  # LayerNorm stores the scale itself
        return base + 0.1 * torch.randn(shape, generator=gen)
    if key.endswith("norm.weight"):  # Gemma RMSNorm: offsets from 1
        return 0.1 * torch.randn(shape, generator=gen)
    if ".dense." in key:  # adaRMS modulation: small so (1 + scale) stays near 1, but clearly non-zero
        return 0.05 * torch.randn(shape, generator=gen)
    if key.endswith(".bias"):
        return 0.02 * torch.randn(shape, generator=gen)
    if key in (EMBED_LM_HEAD, EMBED_TOKENS, EXPERT_LM_HEAD):
        return torch.randn(shape, generator=gen) / math.sqrt(shape[1])
    fan_in = int(np.prod(shape[1:]))
    return torch.randn(shape, generator=gen) / math.sqrt(fan_in)


def tiny_state_dict(cfg: Pi05Config = TINY_CONFIG, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {k: random_weight(k, shp, gen) for k, shp in expected_shapes(cfg).items()}
    sd[EXPERT_LM_HEAD] = random_weight(EXPERT_LM_HEAD, (cfg.vocab, cfg.ex_width), gen)  # unused, as in real files
    return sd


def tiny_norm_stats(state_dim=TINY_STATE_DIM, action_dim=TINY_ACTION_DIM, seed=0) -> dict:
    rng = np.random.default_rng(seed + 1000)

    def block(n):
        q01 = rng.uniform(-2.0, -0.5, n)
        q99 = q01 + rng.uniform(1.0, 3.0, n)
        mean = (q01 + q99) / 2
        std = (q99 - q01) / 4
        return {"mean": mean.tolist(), "std": std.tolist(), "q01": q01.tolist(), "q99": q99.tolist()}

    return {"norm_stats": {"state": block(state_dim), "actions": block(action_dim)}}


def _write_tokenizer(out: Path) -> None:
    from flash_rt.testing.tokenizer import build_tiny_tokenizer
    build_tiny_tokenizer(out / "tokenizer.model", vocab_size=TINY_CONFIG.vocab)


def build_tiny_checkpoint(out_dir, layout: str = "openpi", seed: int = 0, dtype: torch.dtype = torch.float32,
                          cfg: Pi05Config = TINY_CONFIG, with_tokenizer: bool = True,
                          with_norm_stats: bool = True, norm_stats: dict | None = None) -> Path:
    """Write a tiny random Pi0.5 checkpoint directory and return its path.

    layout "openpi": keys without prefix, the embedding only as paligemma.lm_head.weight, config.json +
    assets/<id>/norm_stats.json. layout "lerobot": keys with a "model." prefix, both lm_head and
    embed_tokens, lerobot config.json + policy_{pre,post}processor normalizer safetensors.
    norm_stats: another {"norm_stats": {"state": ..., "actions": ...}} than tiny_norm_stats(seed=seed), e.g. the
    full-size checkpoint's (flash_rt.testing.full_size.full_size_norm_stats) for tiny weights with a real robot's dims.
    """
    if layout not in ("openpi", "lerobot"):
        raise ValueError(f"layout must be 'openpi' or 'lerobot', got {layout!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.to(dtype).contiguous() for k, v in tiny_state_dict(cfg, seed).items()}
    stats = tiny_norm_stats(seed=seed) if norm_stats is None else norm_stats
    extra = {"vision_num_heads": cfg.vis_heads, "head_dim": cfg.head_dim}
    if layout == "openpi":
        config = {"action_dim": cfg.action_dim, "action_horizon": cfg.action_horizon,
                  "paligemma_variant": "tiny", "action_expert_variant": "tiny",
                  "precision": str(dtype).replace("torch.", ""), "max_token_len": cfg.max_token_len,
                  "discrete_state_input": cfg.discrete_state_input, **extra}
    else:
        config = {"type": "pi05", "chunk_size": cfg.action_horizon, "n_action_steps": cfg.action_horizon,
                  "max_state_dim": cfg.action_dim, "max_action_dim": cfg.action_dim,
                  "num_inference_steps": cfg.num_steps, "tokenizer_max_length": cfg.max_token_len,
                  "dtype": str(dtype).replace("torch.", ""), **extra}
    return write_tiny_dir(out, sd, layout, config, stats if with_norm_stats else None, with_tokenizer)


def write_tiny_dir(out: Path, sd: dict, layout: str, config: dict, stats: dict | None, with_tokenizer: bool) -> Path:
    """Write a tiny checkpoint directory of either layout (the Pi0-family builders share it): openpi -- the canonical
    keys, assets/<id>/norm_stats.json; lerobot -- a "model." prefix with embed_tokens beside the tied lm_head and the
    processor normalizer files; then config.json and, if asked, the tokenizer. `stats` None: no norm stats."""
    if layout == "openpi":
        save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
        if stats is not None:
            (out / "assets" / TINY_ASSET_ID).mkdir(parents=True, exist_ok=True)
            (out / "assets" / TINY_ASSET_ID / "norm_stats.json").write_text(json.dumps(stats, indent=1))
    else:
        sd = dict(sd, **{EMBED_TOKENS: sd[EMBED_LM_HEAD].clone()})
        save_file({"model." + k: v for k, v in sd.items()}, str(out / "model.safetensors"),
                  metadata={"format": "pt"})
        if stats is not None:
            _write_lerobot_stats(out, stats["norm_stats"])
    (out / "config.json").write_text(json.dumps(config, indent=1))
    if with_tokenizer:
        _write_tokenizer(out)
    return out


def _write_lerobot_stats(out: Path, ns: dict) -> None:
    from safetensors.numpy import save_file as save_np
    pre = {f"observation.state.{k}": np.asarray(v, np.float32) for k, v in ns["state"].items()}
    post = {f"action.{k}": np.asarray(v, np.float32) for k, v in ns["actions"].items()}
    save_np(pre, str(out / "policy_preprocessor_step_2_normalizer_processor.safetensors"))
    save_np(post, str(out / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"))
    (out / "policy_preprocessor.json").write_text(json.dumps({"name": "policy_preprocessor", "steps": []}))
    (out / "policy_postprocessor.json").write_text(json.dumps({"name": "policy_postprocessor", "steps": []}))


def tiny_config_dict() -> dict:
    return dataclasses.asdict(TINY_CONFIG)
