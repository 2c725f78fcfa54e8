"""Pi0.5 dimensions, inferred from a checkpoint's tensor shapes (+ config.json when present).

Nothing here is hard-coded to the full-size model: the tiny test checkpoints and the real 3.35 B model go
through the same inference, so any width, depth, head_dim or layer count with the openpi key schema loads.
Head counts cannot be read off a weight shape alone (q_proj is [N*H, D]); they come from config.json when
present, else from the facts every Pi0/Pi0.5 checkpoint shares (the KV projection is one head: K=1, H =
k_proj rows; SigLIP heads = width / 72 for the full model) -- see pi05_spec.md section 1a.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

from flash_rt.errors import CheckpointError

# Canonical (openpi) key prefixes. lerobot files carry an extra leading "model.".
VIS = "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
PROJ = "paligemma_with_expert.paligemma.model.multi_modal_projector.linear."
LLM = "paligemma_with_expert.paligemma.model.language_model."
EMBED_LM_HEAD = "paligemma_with_expert.paligemma.lm_head.weight"
EMBED_TOKENS = LLM + "embed_tokens.weight"
EXP = "paligemma_with_expert.gemma_expert.model."
EXPERT_LM_HEAD = "paligemma_with_expert.gemma_expert.lm_head.weight"


@dataclasses.dataclass(frozen=True)
class Pi05Config:
    # SigLIP vision tower
    vis_width: int = 1152
    vis_layers: int = 27
    vis_heads: int = 16
    vis_mlp: int = 4304
    patch_size: int = 14
    num_patches: int = 256
    # PaliGemma Gemma LLM
    width: int = 2048
    layers: int = 18
    heads: int = 8
    kv_heads: int = 1
    head_dim: int = 256
    mlp: int = 16384
    vocab: int = 257152
    # action expert
    ex_width: int = 1024
    ex_mlp: int = 4096
    # heads / io
    action_dim: int = 32
    max_token_len: int = 200
    discrete_state_input: bool = True
    # sampling
    action_horizon: int = 50
    num_steps: int = 10
    # fixed constants of the architecture (pi05_spec.md 1a)
    rms_eps: float = 1e-6
    ln_eps: float = 1e-6
    rope_theta: float = 10000.0
    min_period: float = 4e-3
    max_period: float = 4.0

    @property
    def vis_head_dim(self) -> int:
        return self.vis_width // self.vis_heads

    @property
    def image_size(self) -> int:
        return self.patch_size * self.grid

    @property
    def grid(self) -> int:
        g = int(round(self.num_patches ** 0.5))
        return g

    @property
    def ex_layers(self) -> int:
        return self.layers  # the joint attention needs both experts at the same depth

    def prefix_len(self, num_views: int) -> int:
        return num_views * self.num_patches + self.max_token_len

    def dims(self) -> dict:
        """Flat dict for logging / configs/pi05.yaml comparison."""
        d = dataclasses.asdict(self)
        d.update(vis_head_dim=self.vis_head_dim, image_size=self.image_size, ex_layers=self.ex_layers)
        return d

    def with_overrides(self, **kw) -> "Pi05Config":
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v is not None})


def _count_layers(shapes: Mapping[str, Sequence[int]], pattern: str) -> int:
    rx = re.compile(re.escape(pattern).replace(r"\{i\}", r"(\d+)"))
    idx = {int(m.group(1)) for k in shapes for m in [rx.fullmatch(k)] if m}
    if not idx:
        return 0
    if idx != set(range(max(idx) + 1)):
        missing = sorted(set(range(max(idx) + 1)) - idx)
        raise CheckpointError(f"layer indices are not contiguous for '{pattern}': missing {missing}")
    return max(idx) + 1


def _need(shapes: Mapping[str, Sequence[int]], key: str) -> tuple:
    if key not in shapes:
        raise CheckpointError(
            f"cannot infer Pi0.5 dimensions: key '{key}' is missing. Expected an openpi/lerobot Pi0.5 "
            f"model.safetensors (see pi05 key schema in docs/stable_api.md)")
    return tuple(shapes[key])


def head_geometry(cj: Mapping, width_q: int, kv_out: int, ex_q: int, layers: int, ex_layers: int,
                  vis_width: int) -> tuple[int, int, int, int]:
    """(kv_heads, head_dim, heads, vis_heads) of a Pi0-family checkpoint, checked: K=1 KV head in every Pi0/Pi0.5
    release (config.json may say otherwise), head_dim = k_proj rows / kv_heads, both experts sharing N*H (joint
    attention) and the layer count; SigLIP heads from config.json or width / 72. Pi0's config inference uses it too."""
    kv_heads = int(cj.get("num_key_value_heads", 1))
    head_dim = int(cj.get("head_dim", kv_out // kv_heads))
    heads = width_q // head_dim
    if heads * head_dim != width_q or ex_q != width_q:
        raise CheckpointError(
            f"inconsistent attention geometry: LLM q_proj out {width_q}, expert q_proj out {ex_q}, "
            f"head_dim {head_dim}; both experts must share N*H (joint attention)")
    if ex_layers != layers:
        raise CheckpointError(f"action expert has {ex_layers} layers, LLM has {layers}; they must be equal")
    vis_heads = int(cj.get("vision_num_heads", max(1, vis_width // 72) if vis_width % 72 == 0 else 0))
    if vis_heads <= 0:
        # tiny test models: head_dim 16 is what flash_rt.testing writes into config.json
        raise CheckpointError(
            f"cannot infer SigLIP head count for width {vis_width}: add 'vision_num_heads' to config.json")
    return kv_heads, head_dim, heads, vis_heads


def infer_config(shapes: Mapping[str, Sequence[int]], config_json: Mapping | None = None, **overrides) -> Pi05Config:
    """Infer Pi05Config from canonical (prefix-stripped) key -> shape.

    `config_json` is the checkpoint's config.json (openpi or lerobot); it supplies head counts, horizon and
    token length when present. `overrides` (action_horizon, num_steps, max_token_len, ...) win over both.
    """
    cj = dict(config_json or {})
    vw, _, ps, _ = _need(shapes, VIS + "embeddings.patch_embedding.weight")
    npatch, _ = _need(shapes, VIS + "embeddings.position_embedding.weight")
    vis_mlp, _ = _need(shapes, VIS + "encoder.layers.0.mlp.fc1.weight")
    vis_layers = _count_layers(shapes, VIS + "encoder.layers.{i}.layer_norm1.weight")
    width_q, width = _need(shapes, LLM + "layers.0.self_attn.q_proj.weight")
    kv_out, _ = _need(shapes, LLM + "layers.0.self_attn.k_proj.weight")
    mlp, _ = _need(shapes, LLM + "layers.0.mlp.gate_proj.weight")
    layers = _count_layers(shapes, LLM + "layers.{i}.input_layernorm.weight")
    emb_key = EMBED_TOKENS if EMBED_TOKENS in shapes else EMBED_LM_HEAD
    vocab, _ = _need(shapes, emb_key)
    ex_q, ex_width = _need(shapes, EXP + "layers.0.self_attn.q_proj.weight")
    ex_mlp, _ = _need(shapes, EXP + "layers.0.mlp.gate_proj.weight")
    ex_layers = _count_layers(shapes, EXP + "layers.{i}.self_attn.q_proj.weight")
    _, action_dim = _need(shapes, "action_in_proj.weight")
    if (EXP + "layers.0.input_layernorm.dense.weight") not in shapes:
        raise CheckpointError(
            "this checkpoint has no adaRMS expert norms (gemma_expert...input_layernorm.dense.weight): "
            "it looks like a Pi0 checkpoint: load it with config='pi0' (config='pi05' expects a Pi0.5 checkpoint)")

    kv_heads, head_dim, heads, vis_heads = head_geometry(cj, width_q, kv_out, ex_q, layers, ex_layers, vw)

    horizon = cj.get("action_horizon", cj.get("chunk_size", 50))
    max_tok = cj.get("max_token_len", cj.get("tokenizer_max_length", 200))
    steps = cj.get("num_steps", cj.get("num_inference_steps", 10))
    dsi = cj.get("discrete_state_input", True)
    cfg = Pi05Config(
        vis_width=vw, vis_layers=vis_layers, vis_heads=vis_heads, vis_mlp=vis_mlp, patch_size=ps,
        num_patches=npatch, width=width, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
        mlp=mlp, vocab=vocab, ex_width=ex_width, ex_mlp=ex_mlp, action_dim=action_dim,
        max_token_len=int(max_tok), discrete_state_input=bool(dsi), action_horizon=int(horizon),
        num_steps=int(steps))
    if cfg.grid * cfg.grid != npatch:
        raise CheckpointError(f"position_embedding has {npatch} rows, expected a square patch grid")
    return cfg.with_overrides(**overrides)
