"""STEP 2 of 5 (from the template) -- the Pi0 weights: which checkpoint tensor becomes which engine tensor.

Pi0's vision tower, projector and PaliGemma LLM are Pi0.5's tensors under Pi0.5's names, so their items come from
the shared Pi0.5 table (`build_pi05_spec`, read-only) -- one walk, one set of Gemma norm folds. What Pi0 adds:

| Pi0 checkpoint (pi05_spec.md 1g)                               | here                                         |
|----------------------------------------------------------------|----------------------------------------------|
| expert `input_layernorm.weight` + q/k/v_proj (plain Gemma norm) | `FusedQKV(..., norm_fuse=...)`: `1 + w` folded |
| expert `post_attention_layernorm.weight` + gate/up_proj        | `FusedGateUp(..., norm_fuse=...)`             |
| expert `norm.weight` (final)                                   | `ex_final_norm`, fp32: `K.rms_norm(.., w)` applies `1 + w` |
| `state_proj` [W, state]                                        | `state_w` [state, W] (tT), `state_b`          |
| `action_time_mlp_in` [W, 2W] over cat(action, time)            | `at_in_w` fp32 as stored; the frontend splits it into the action half (a GEMM) and the time half (precomputed per flow step) |
| `action_time_mlp_out` [W, W]                                   | `at_out_w` (tT), `at_out_b`                   |

`build_pi0_spec` takes the storage callbacks like `build_pi05_spec`, so a GPU cell's spec reuses the same table.
"""
from __future__ import annotations

from flash_rt.executors.torch_weights import DictSink, FusedGateUp, FusedQKV, ToFp32, tT
from flash_rt.executors.weight_loader import Item, LayerBlock, ModelWeightSpec
from flash_rt.frontends.torch._pi05_spec_common import build_pi05_spec
from flash_rt.models.pi0.config import ACTION_TIME_IN, ACTION_TIME_OUT, STATE_PROJ, Pi0Config
from flash_rt.models.pi05.config import EXP

# the Pi0.5 items Pi0 does not have (adaRMS expert norms, the time MLP); its expert block is replaced below
_PI05_ONLY = ("ex_final_w", "ex_final_b", "time_in_w", "time_in_b", "time_out_w", "time_out_b")


def build_pi0_spec(cfg: Pi0Config, sink: DictSink, *, gemm, bias, embed_transforms=(),
                   patch_transforms=(ToFp32(),)) -> ModelWeightSpec:
    def vec(name, key):
        return Item(name, key, [ToFp32()], sink)

    base = build_pi05_spec(cfg, sink, gemm=gemm, bias=bias, embed_transforms=embed_transforms,
                           patch_transforms=patch_transforms)
    ep = EXP + "layers.{i}."
    expert = LayerBlock("expert", cfg.layers, [
        gemm("ex.{i}.qkv_w", FusedQKV(ep + "self_attn.q_proj.weight", ep + "self_attn.k_proj.weight",
                                      ep + "self_attn.v_proj.weight", norm_fuse=ep + "input_layernorm.weight",
                                      head_dim=cfg.head_dim)),
        gemm("ex.{i}.o_w", ep + "self_attn.o_proj.weight"),
        gemm("ex.{i}.gu_w", FusedGateUp(ep + "mlp.gate_proj.weight", ep + "mlp.up_proj.weight",
                                        norm_fuse=ep + "post_attention_layernorm.weight")),
        gemm("ex.{i}.down_w", ep + "mlp.down_proj.weight"),
    ])
    singletons = [it for it in base.singletons if it.name not in _PI05_ONLY] + [
        vec("ex_final_norm", EXP + "norm.weight"),
        Item("state_w", STATE_PROJ + ".weight", [ToFp32(), tT()], sink),
        vec("state_b", STATE_PROJ + ".bias"),
        vec("at_in_w", ACTION_TIME_IN + ".weight"),
        vec("at_in_b", ACTION_TIME_IN + ".bias"),
        Item("at_out_w", ACTION_TIME_OUT + ".weight", [ToFp32(), tT()], sink),
        vec("at_out_b", ACTION_TIME_OUT + ".bias"),
    ]
    blocks = [b for b in base.blocks if b.name != "expert"] + [expert]
    return ModelWeightSpec(framework="torch", blocks=blocks, singletons=singletons)


def build_spec(cfg: Pi0Config) -> ModelWeightSpec:
    """The CPU (exact FP32) storage: GEMM weights fp32 [in, out]; vectors fp32; the embedding as stored."""
    w = DictSink("w")
    return build_pi0_spec(cfg, w, gemm=lambda name, key: Item(name, key, [ToFp32(), tT()], w),
                          bias=lambda name, key: Item(name, key, [ToFp32()], w))
