"""The Pi0 checkpoint key schema (pi05_spec.md 1g, keys_full_pi0.txt) and its validation.

Pi0's files hold Pi0.5's vision tower, projector and LLM unchanged; they differ in the action expert's norms
(plain Gemma RMSNorm `*.weight` instead of adaRMS `*.dense.*`) and the heads (`state_proj`,
`action_time_mlp_in/out` instead of `time_mlp_in/out`). Both layouts use these names: openpi PyTorch files
without prefix (embedding only as the tied lm_head), lerobot's Pi0 files with a `model.` prefix and both lm_head
and embed_tokens -- the checkpoint source canonicalises both (flash_rt.executors.torch_weights).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from flash_rt.models.pi0.config import ACTION_TIME_IN, ACTION_TIME_OUT, STATE_PROJ, Pi0Config
from flash_rt.models.pi05.config import EXP, EXPERT_LM_HEAD
from flash_rt.models.pi05.keys import check_schema, expected_shapes as pi05_expected_shapes

IGNORED_KEYS = (EXPERT_LM_HEAD,)


def expected_shapes(cfg: Pi0Config) -> dict[str, tuple]:
    """Every tensor the engine reads, canonical names -> shape."""
    c = cfg
    s = {k: v for k, v in pi05_expected_shapes(c).items()
         if ".dense." not in k and not k.startswith("time_mlp_")}
    for i in range(c.layers):
        for n in ("input_layernorm", "post_attention_layernorm"):
            s[f"{EXP}layers.{i}.{n}.weight"] = (c.ex_width,)
    s[EXP + "norm.weight"] = (c.ex_width,)
    s[STATE_PROJ + ".weight"] = (c.ex_width, c.state_dim)
    s[STATE_PROJ + ".bias"] = (c.ex_width,)
    s[ACTION_TIME_IN + ".weight"] = (c.ex_width, 2 * c.ex_width)
    s[ACTION_TIME_IN + ".bias"] = (c.ex_width,)
    s[ACTION_TIME_OUT + ".weight"] = (c.ex_width, c.ex_width)
    s[ACTION_TIME_OUT + ".bias"] = (c.ex_width,)
    return s


def validate_shapes(shapes: Mapping[str, Sequence[int]], cfg: Pi0Config, *, source: str = "checkpoint") -> None:
    """Raise one CheckpointError naming every missing / unexpected / mis-shaped key (Pi0.5's check, Pi0's schema)."""
    check_schema(shapes, expected_shapes(cfg), "Pi0", source, IGNORED_KEYS)
