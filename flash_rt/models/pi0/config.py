"""Pi0 dimensions, inferred from a checkpoint's tensor shapes (+ config.json when present).

Pi0 shares Pi0.5's vision tower, PaliGemma LLM and expert geometry (pi05_spec.md 1a), so `Pi0Config` extends
`Pi05Config` with what differs (1b): the continuous state enters through `state_proj` (its input width is
`state_dim`), the prompt has no state text (`discrete_state_input=False`), openpi's default `max_token_len` is 48,
and the expert norms are plain Gemma RMSNorms. Like Pi0.5, nothing is hard-coded to the full-size model: the
tiny test checkpoints and the real 3.2 B model go through the same inference.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping, Sequence

from flash_rt.errors import CheckpointError
from flash_rt.models.pi05.config import (EMBED_LM_HEAD, EMBED_TOKENS, EXP, LLM, VIS, Pi05Config, _count_layers,
                                         head_geometry)

STATE_PROJ = "state_proj"
ACTION_TIME_IN = "action_time_mlp_in"
ACTION_TIME_OUT = "action_time_mlp_out"


@dataclasses.dataclass(frozen=True)
class Pi0Config(Pi05Config):
    max_token_len: int = 48
    discrete_state_input: bool = False    # Pi0's prompt: BOS + text + "\n"; the state is a suffix token
    state_dim: int = 32                   # state_proj's input width (the padded model state)


def _need(shapes: Mapping[str, Sequence[int]], key: str) -> tuple:
    if key not in shapes:
        raise CheckpointError(
            f"cannot infer Pi0 dimensions: key '{key}' is missing. Expected an openpi/lerobot Pi0 "
            f"model.safetensors (the Pi0 key schema: flash_rt.models.pi0.keys)")
    return tuple(shapes[key])


def infer_config(shapes: Mapping[str, Sequence[int]], config_json: Mapping | None = None, **overrides) -> Pi0Config:
    """Pi0Config from canonical (prefix-stripped) key -> shape; config.json supplies head counts, horizon and
    token length when present; `overrides` (action_horizon, num_steps, max_token_len) win over both."""
    cj = dict(config_json or {})
    if (EXP + "layers.0.input_layernorm.dense.weight") in shapes or "time_mlp_in.weight" in shapes:
        raise CheckpointError("this checkpoint has adaRMS expert norms / time_mlp_in: it looks like a Pi0.5 "
                              "checkpoint, expected Pi0 (use config='pi05')")
    vw, _, ps, _ = _need(shapes, VIS + "embeddings.patch_embedding.weight")
    npatch, _ = _need(shapes, VIS + "embeddings.position_embedding.weight")
    vis_mlp, _ = _need(shapes, VIS + "encoder.layers.0.mlp.fc1.weight")
    vis_layers = _count_layers(shapes, VIS + "encoder.layers.{i}.self_attn.q_proj.weight")
    width_q, width = _need(shapes, LLM + "layers.0.self_attn.q_proj.weight")
    kv_out, _ = _need(shapes, LLM + "layers.0.self_attn.k_proj.weight")
    mlp, _ = _need(shapes, LLM + "layers.0.mlp.gate_proj.weight")
    layers = _count_layers(shapes, LLM + "layers.{i}.self_attn.q_proj.weight")
    vocab, _ = _need(shapes, EMBED_TOKENS if EMBED_TOKENS in shapes else EMBED_LM_HEAD)
    ex_q, ex_width = _need(shapes, EXP + "layers.0.self_attn.q_proj.weight")
    ex_mlp, _ = _need(shapes, EXP + "layers.0.mlp.gate_proj.weight")
    ex_layers = _count_layers(shapes, EXP + "layers.{i}.self_attn.q_proj.weight")
    _, action_dim = _need(shapes, "action_in_proj.weight")
    _, state_dim = _need(shapes, STATE_PROJ + ".weight")
    _need(shapes, ACTION_TIME_IN + ".weight")
    kv_heads, head_dim, heads, vis_heads = head_geometry(cj, width_q, kv_out, ex_q, layers, ex_layers, vw)
    cfg = Pi0Config(
        vis_width=vw, vis_layers=vis_layers, vis_heads=vis_heads, vis_mlp=vis_mlp, patch_size=ps,
        num_patches=npatch, width=width, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
        mlp=mlp, vocab=vocab, ex_width=ex_width, ex_mlp=ex_mlp, action_dim=action_dim, state_dim=state_dim,
        max_token_len=int(cj.get("max_token_len", cj.get("tokenizer_max_length", 48))),
        action_horizon=int(cj.get("action_horizon", cj.get("chunk_size", 50))),
        num_steps=int(cj.get("num_steps", cj.get("num_inference_steps", 10))))
    if cfg.grid * cfg.grid != npatch:
        raise CheckpointError(f"position_embedding has {npatch} rows, expected a square patch grid")
    return cfg.with_overrides(**overrides)
