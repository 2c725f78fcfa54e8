"""The Pi0.5 weight table shared by every torch frontend's spec: which checkpoint tensors, fused how.

A hardware spec (`_pi05_<hw>_spec.py`) decides only the storage of each kind of tensor -- `gemm` (a GEMM
weight: fp32 [in, out] on the CPU, FP8 [out, in] + scale on Hopper), `bias` (a GEMM bias), the token
embedding and the patch-embedding kernel -- and this module lays out the same items for all of them, so
the key walk, the fused QKV / gate-up composites and the Gemma norm folds cannot drift apart between
hardware targets. Vector parameters (norms, adaRMS and time-MLP weights, the action heads) are fp32
everywhere: they feed fp32 norm math or the load-time modulation precompute.
"""
from __future__ import annotations

from typing import Callable, Sequence

from flash_rt.executors.torch_weights import Cat, DictSink, FusedGateUp, FusedQKV, ToFp32, tT
from flash_rt.executors.weight_loader import Item, LayerBlock, ModelWeightSpec
from flash_rt.models.pi05.config import EMBED_TOKENS, EXP, LLM, PROJ, VIS, Pi05Config

ItemFn = Callable[[str, object], Item]


def build_pi05_spec(cfg: Pi05Config, sink: DictSink, *, gemm: ItemFn, bias: ItemFn,
                    embed_transforms: Sequence = (), patch_transforms: Sequence = (ToFp32(),)) -> ModelWeightSpec:
    def vec(name, key):
        return Item(name, key, [ToFp32()], sink)

    vp, lp, ep = VIS + "encoder.layers.{i}.", LLM + "layers.{i}.", EXP + "layers.{i}."
    vision = LayerBlock("vision", cfg.vis_layers, [
        vec("vis.{i}.ln1_w", vp + "layer_norm1.weight"),
        vec("vis.{i}.ln1_b", vp + "layer_norm1.bias"),
        gemm("vis.{i}.qkv_w", Cat([vp + f"self_attn.{n}_proj.weight" for n in "qkv"])),
        bias("vis.{i}.qkv_b", Cat([vp + f"self_attn.{n}_proj.bias" for n in "qkv"])),
        gemm("vis.{i}.o_w", vp + "self_attn.out_proj.weight"),
        bias("vis.{i}.o_b", vp + "self_attn.out_proj.bias"),
        vec("vis.{i}.ln2_w", vp + "layer_norm2.weight"),
        vec("vis.{i}.ln2_b", vp + "layer_norm2.bias"),
        gemm("vis.{i}.fc1_w", vp + "mlp.fc1.weight"),
        bias("vis.{i}.fc1_b", vp + "mlp.fc1.bias"),
        gemm("vis.{i}.fc2_w", vp + "mlp.fc2.weight"),
        bias("vis.{i}.fc2_b", vp + "mlp.fc2.bias"),
    ])
    llm = LayerBlock("llm", cfg.layers, [
        # Gemma RMSNorm weights fold into the next projection (W * (1 + w)), so the norms run weightless
        gemm("llm.{i}.qkv_w", FusedQKV(lp + "self_attn.q_proj.weight", lp + "self_attn.k_proj.weight",
                                       lp + "self_attn.v_proj.weight", norm_fuse=lp + "input_layernorm.weight",
                                       head_dim=cfg.head_dim)),
        gemm("llm.{i}.o_w", lp + "self_attn.o_proj.weight"),
        gemm("llm.{i}.gu_w", FusedGateUp(lp + "mlp.gate_proj.weight", lp + "mlp.up_proj.weight",
                                         norm_fuse=lp + "post_attention_layernorm.weight")),
        gemm("llm.{i}.down_w", lp + "mlp.down_proj.weight"),
    ])
    expert = LayerBlock("expert", cfg.layers, [
        gemm("ex.{i}.qkv_w", FusedQKV(ep + "self_attn.q_proj.weight", ep + "self_attn.k_proj.weight",
                                      ep + "self_attn.v_proj.weight", head_dim=cfg.head_dim)),
        gemm("ex.{i}.o_w", ep + "self_attn.o_proj.weight"),
        gemm("ex.{i}.gu_w", FusedGateUp(ep + "mlp.gate_proj.weight", ep + "mlp.up_proj.weight")),
        gemm("ex.{i}.down_w", ep + "mlp.down_proj.weight"),
        vec("ex.{i}.ada1_w", ep + "input_layernorm.dense.weight"),
        vec("ex.{i}.ada1_b", ep + "input_layernorm.dense.bias"),
        vec("ex.{i}.ada2_w", ep + "post_attention_layernorm.dense.weight"),
        vec("ex.{i}.ada2_b", ep + "post_attention_layernorm.dense.bias"),
    ])
    singletons = [
        Item("patch_w", VIS + "embeddings.patch_embedding.weight", list(patch_transforms), sink),
        vec("patch_b", VIS + "embeddings.patch_embedding.bias"),
        vec("pos_emb", VIS + "embeddings.position_embedding.weight"),
        vec("post_ln_w", VIS + "post_layernorm.weight"),
        vec("post_ln_b", VIS + "post_layernorm.bias"),
        gemm("proj_w", PROJ + "weight"),
        bias("proj_b", PROJ + "bias"),
        Item("embed", EMBED_TOKENS, list(embed_transforms), sink),
        vec("ex_final_w", EXP + "norm.dense.weight"),
        vec("ex_final_b", EXP + "norm.dense.bias"),
        # tiny action heads stay fp32, transposed for addmm(bias, x, W)
        Item("action_in_w", "action_in_proj.weight", [ToFp32(), tT()], sink),
        vec("action_in_b", "action_in_proj.bias"),
        Item("action_out_w", "action_out_proj.weight", [ToFp32(), tT()], sink),
        vec("action_out_b", "action_out_proj.bias"),
        vec("time_in_w", "time_mlp_in.weight"),
        vec("time_in_b", "time_mlp_in.bias"),
        vec("time_out_w", "time_mlp_out.weight"),
        vec("time_out_b", "time_mlp_out.bias"),
    ]
    return ModelWeightSpec(framework="torch", blocks=[vision, llm, expert], singletons=singletons)
