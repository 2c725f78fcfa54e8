"""The Pi0.5 checkpoint key schema (pi05_spec.md 1g) and its validation.

`expected_shapes(cfg)` lists every tensor the engine reads, in canonical openpi names (no "model." prefix),
with the shape it must have. `validate_shapes` compares a checkpoint against it and raises ONE
CheckpointError that lists every missing, unexpected and mis-shaped key at once -- fixing a converter
one key per run is miserable.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from flash_rt.errors import CheckpointError
from flash_rt.models.pi05.config import (EMBED_LM_HEAD, EMBED_TOKENS, EXP, EXPERT_LM_HEAD, LLM, PROJ, VIS,
                                         Pi05Config)

# Present in real files but not read by inference (pi05_spec.md 1g): the expert's LM head is never used; the
# PaliGemma LM head IS the (tied) embedding in openpi files, and a duplicate of embed_tokens in lerobot ones.
IGNORED_KEYS = (EXPERT_LM_HEAD,)


def expected_shapes(cfg: Pi05Config) -> dict[str, tuple]:
    c = cfg
    s: dict[str, tuple] = {}
    s[VIS + "embeddings.patch_embedding.weight"] = (c.vis_width, 3, c.patch_size, c.patch_size)
    s[VIS + "embeddings.patch_embedding.bias"] = (c.vis_width,)
    s[VIS + "embeddings.position_embedding.weight"] = (c.num_patches, c.vis_width)
    for i in range(c.vis_layers):
        p = f"{VIS}encoder.layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            s[p + n + ".weight"] = (c.vis_width,)
            s[p + n + ".bias"] = (c.vis_width,)
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s[p + f"self_attn.{n}.weight"] = (c.vis_width, c.vis_width)
            s[p + f"self_attn.{n}.bias"] = (c.vis_width,)
        s[p + "mlp.fc1.weight"] = (c.vis_mlp, c.vis_width)
        s[p + "mlp.fc1.bias"] = (c.vis_mlp,)
        s[p + "mlp.fc2.weight"] = (c.vis_width, c.vis_mlp)
        s[p + "mlp.fc2.bias"] = (c.vis_width,)
    s[VIS + "post_layernorm.weight"] = (c.vis_width,)
    s[VIS + "post_layernorm.bias"] = (c.vis_width,)
    s[PROJ + "weight"] = (c.width, c.vis_width)
    s[PROJ + "bias"] = (c.width,)
    s[EMBED_LM_HEAD] = (c.vocab, c.width)
    q_out, kv_out = c.heads * c.head_dim, c.kv_heads * c.head_dim
    for i in range(c.layers):
        p = f"{LLM}layers.{i}."
        s[p + "self_attn.q_proj.weight"] = (q_out, c.width)
        s[p + "self_attn.k_proj.weight"] = (kv_out, c.width)
        s[p + "self_attn.v_proj.weight"] = (kv_out, c.width)
        s[p + "self_attn.o_proj.weight"] = (c.width, q_out)
        s[p + "mlp.gate_proj.weight"] = (c.mlp, c.width)
        s[p + "mlp.up_proj.weight"] = (c.mlp, c.width)
        s[p + "mlp.down_proj.weight"] = (c.width, c.mlp)
        s[p + "input_layernorm.weight"] = (c.width,)
        s[p + "post_attention_layernorm.weight"] = (c.width,)
    s[LLM + "norm.weight"] = (c.width,)
    for i in range(c.layers):
        p = f"{EXP}layers.{i}."
        s[p + "self_attn.q_proj.weight"] = (q_out, c.ex_width)
        s[p + "self_attn.k_proj.weight"] = (kv_out, c.ex_width)
        s[p + "self_attn.v_proj.weight"] = (kv_out, c.ex_width)
        s[p + "self_attn.o_proj.weight"] = (c.ex_width, q_out)
        s[p + "mlp.gate_proj.weight"] = (c.ex_mlp, c.ex_width)
        s[p + "mlp.up_proj.weight"] = (c.ex_mlp, c.ex_width)
        s[p + "mlp.down_proj.weight"] = (c.ex_width, c.ex_mlp)
        for n in ("input_layernorm", "post_attention_layernorm"):
            s[p + n + ".dense.weight"] = (3 * c.ex_width, c.ex_width)
            s[p + n + ".dense.bias"] = (3 * c.ex_width,)
    s[EXP + "norm.dense.weight"] = (3 * c.ex_width, c.ex_width)
    s[EXP + "norm.dense.bias"] = (3 * c.ex_width,)
    s["action_in_proj.weight"] = (c.ex_width, c.action_dim)
    s["action_in_proj.bias"] = (c.ex_width,)
    s["action_out_proj.weight"] = (c.action_dim, c.ex_width)
    s["action_out_proj.bias"] = (c.action_dim,)
    s["time_mlp_in.weight"] = (c.ex_width, c.ex_width)
    s["time_mlp_in.bias"] = (c.ex_width,)
    s["time_mlp_out.weight"] = (c.ex_width, c.ex_width)
    s["time_mlp_out.bias"] = (c.ex_width,)
    return s


def embedding_key(shapes: Mapping[str, Sequence[int]]) -> str:
    """The key holding the token embedding: embed_tokens (lerobot) if present, else the tied lm_head."""
    return EMBED_TOKENS if EMBED_TOKENS in shapes else EMBED_LM_HEAD


def validate_shapes(shapes: Mapping[str, Sequence[int]], cfg: Pi05Config, *, source: str = "checkpoint") -> None:
    """Raise one CheckpointError naming every missing / unexpected / mis-shaped key."""
    check_schema(shapes, expected_shapes(cfg), "Pi0.5", source)


def check_schema(shapes: Mapping[str, Sequence[int]], exp: Mapping[str, Sequence[int]], model: str,
                 source: str = "checkpoint", ignored=IGNORED_KEYS) -> None:
    """One CheckpointError naming every missing / unexpected / mis-shaped key of `shapes` against the schema `exp`
    (a Pi0-family model's: the embedding as the tied lm_head, or embed_tokens alone as lerobot stores it)."""
    have = dict(shapes)
    if EMBED_LM_HEAD not in have and EMBED_TOKENS in have:
        have[EMBED_LM_HEAD] = have[EMBED_TOKENS]  # lerobot layout: embed_tokens alone is enough
    problems: list[str] = []
    for k, shp in exp.items():
        if k not in have:
            problems.append(f"  missing    {k}  expected {list(shp)}")
        elif tuple(have[k]) != tuple(shp):
            problems.append(f"  mis-shaped {k}  has {list(have[k])}, expected {list(shp)}")
    allowed_extra = set(ignored) | {EMBED_TOKENS}
    for k in sorted(set(have) - set(exp) - allowed_extra):
        problems.append(f"  unexpected {k}  {list(have[k])}")
    if EMBED_TOKENS in have and tuple(have[EMBED_TOKENS]) != tuple(exp[EMBED_LM_HEAD]):
        problems.append(f"  mis-shaped {EMBED_TOKENS}  has {list(have[EMBED_TOKENS])}, "
                        f"expected {list(exp[EMBED_LM_HEAD])}")
    if problems:
        raise CheckpointError(
            f"{source} does not match the {model} key schema ({len(problems)} problem(s)):\n" + "\n".join(problems))
