"""A full-size random-weight Pi0.5 checkpoint (3.35 B parameters used at inference), written streaming.

The model is described on the meta device (shapes from the key schema, no memory) and each tensor is
generated, cast and written one at a time through the streaming safetensors writer, so building the 7 GB
bf16 file needs about one tensor of memory. `device="cuda"` generates on the GPU (seconds instead of a
minute on a small CPU). The tokenizer is the tiny test tokenizer (ids < 512, valid for the 257k vocab).
Norm stats are DROID-shaped (`full_size_norm_stats`: 8 state, 8 action dims), what the GPU configs
(config/pi05_{hopper,thor,rtx}.yaml, a DROID Franka) expect; test/ros/test_configs.py configures those against a
tiny-weight checkpoint carrying the same stats.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from flash_rt.executors.safetensors_io import write_safetensors_streaming
from flash_rt.models.pi05.config import Pi05Config
from flash_rt.models.pi05.keys import expected_shapes
from flash_rt.testing.checkpoint import DROID_ACTION_DIM, DROID_STATE_DIM, random_weight, tiny_norm_stats
from flash_rt.testing.tokenizer import build_tiny_tokenizer


def full_size_norm_stats(seed: int = 0) -> dict:
    """The norm stats the full-size checkpoint carries: DROID's 8 state dims (7 joints + gripper) and 8 action dims
    (7 joint velocities + gripper)."""
    return tiny_norm_stats(DROID_STATE_DIM, DROID_ACTION_DIM, seed)


def build_full_checkpoint(out, cfg: Pi05Config = Pi05Config(), dtype=torch.bfloat16, seed: int = 0,
                          device: str = "cpu") -> tuple[Path, int]:
    return write_full_checkpoint(out, expected_shapes(cfg), cfg, dtype, seed, device)


def write_full_checkpoint(out, shapes: dict, cfg, dtype=torch.bfloat16, seed: int = 0,
                          device: str = "cpu") -> tuple[Path, int]:
    """A random-weight checkpoint of the schema `shapes` ({key: shape}; Pi0.5's or Pi0's), one tensor at a time, with
    openpi's config.json, the DROID-shaped norm stats and the tiny tokenizer. Returns (path, parameter count)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    n_params = sum(t.numel() for t in meta.values())
    gen = torch.Generator(device=device).manual_seed(seed)

    def fill(k, shape):
        with torch.device(device):
            return random_weight(k, tuple(shape), gen).to(dtype).cpu()

    items = [(k, t.shape, dtype, (lambda k=k, s=t.shape: fill(k, s))) for k, t in meta.items()]
    write_safetensors_streaming(out / "model.safetensors", items, metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps({"action_dim": cfg.action_dim, "action_horizon": cfg.action_horizon,
                                                 "paligemma_variant": "gemma_2b",
                                                 "action_expert_variant": "gemma_300m",
                                                 "precision": str(dtype).replace("torch.", "")}))
    (out / "assets" / "robot").mkdir(parents=True, exist_ok=True)
    (out / "assets" / "robot" / "norm_stats.json").write_text(json.dumps(full_size_norm_stats(seed)))
    build_tiny_tokenizer(out / "tokenizer.model")
    return out, n_params
