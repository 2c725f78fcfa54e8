"""Declarative weight spec of the Pi0.5 CPU (FP32) path: checkpoint keys -> the tensors pipeline_cpu reads.

Every GEMM weight is stored transposed ([in, out], `tT`) so the pipeline runs `addmm(bias, x, W)` straight
into its preallocated outputs. The Gemma RMSNorm weights are folded into the following projection
(`norm_fuse`: W * (1 + w)), so the prefix norms are weightless; the expert's adaRMS `dense` layers are kept
only to precompute the per-step modulation (the flow timesteps are fixed). The token embedding keeps the
checkpoint dtype (bf16 in openpi files): the pipeline gathers the prompt's rows and widens them, so the
527 M-row table is never held in fp32.
"""
from __future__ import annotations

from flash_rt.executors.torch_weights import Cat, DictSink, FusedGateUp, FusedQKV, ToFp32, tT
from flash_rt.executors.weight_loader import Item, LayerBlock, ModelWeightSpec
from flash_rt.models.pi05.config import EMBED_TOKENS, EXP, LLM, PROJ, VIS, Pi05Config


def build_spec(cfg: Pi05Config) -> ModelWeightSpec:
    w = DictSink("w")
    f32, lin = [ToFp32()], [ToFp32(), tT()]
    vp, lp, ep = VIS + "encoder.layers.{i}.", LLM + "layers.{i}.", EXP + "layers.{i}."
    vision = LayerBlock("vision", cfg.vis_layers, [
        Item("vis.{i}.ln1_w", vp + "layer_norm1.weight", f32, w),
        Item("vis.{i}.ln1_b", vp + "layer_norm1.bias", f32, w),
        Item("vis.{i}.qkv_w", Cat([vp + f"self_attn.{n}_proj.weight" for n in "qkv"]), lin, w),
        Item("vis.{i}.qkv_b", Cat([vp + f"self_attn.{n}_proj.bias" for n in "qkv"]), f32, w),
        Item("vis.{i}.o_w", vp + "self_attn.out_proj.weight", lin, w),
        Item("vis.{i}.o_b", vp + "self_attn.out_proj.bias", f32, w),
        Item("vis.{i}.ln2_w", vp + "layer_norm2.weight", f32, w),
        Item("vis.{i}.ln2_b", vp + "layer_norm2.bias", f32, w),
        Item("vis.{i}.fc1_w", vp + "mlp.fc1.weight", lin, w),
        Item("vis.{i}.fc1_b", vp + "mlp.fc1.bias", f32, w),
        Item("vis.{i}.fc2_w", vp + "mlp.fc2.weight", lin, w),
        Item("vis.{i}.fc2_b", vp + "mlp.fc2.bias", f32, w),
    ])
    llm = LayerBlock("llm", cfg.layers, [
        Item("llm.{i}.qkv_w", FusedQKV(lp + "self_attn.q_proj.weight", lp + "self_attn.k_proj.weight",
                                       lp + "self_attn.v_proj.weight", norm_fuse=lp + "input_layernorm.weight",
                                       head_dim=cfg.head_dim), [tT()], w),
        Item("llm.{i}.o_w", lp + "self_attn.o_proj.weight", lin, w),
        Item("llm.{i}.gu_w", FusedGateUp(lp + "mlp.gate_proj.weight", lp + "mlp.up_proj.weight",
                                         norm_fuse=lp + "post_attention_layernorm.weight"), [tT()], w),
        Item("llm.{i}.down_w", lp + "mlp.down_proj.weight", lin, w),
    ])
    expert = LayerBlock("expert", cfg.layers, [
        Item("ex.{i}.qkv_w", FusedQKV(ep + "self_attn.q_proj.weight", ep + "self_attn.k_proj.weight",
                                      ep + "self_attn.v_proj.weight", head_dim=cfg.head_dim), [tT()], w),
        Item("ex.{i}.o_w", ep + "self_attn.o_proj.weight", lin, w),
        Item("ex.{i}.gu_w", FusedGateUp(ep + "mlp.gate_proj.weight", ep + "mlp.up_proj.weight"), [tT()], w),
        Item("ex.{i}.down_w", ep + "mlp.down_proj.weight", lin, w),
        Item("ex.{i}.ada1_w", ep + "input_layernorm.dense.weight", f32, w),
        Item("ex.{i}.ada1_b", ep + "input_layernorm.dense.bias", f32, w),
        Item("ex.{i}.ada2_w", ep + "post_attention_layernorm.dense.weight", f32, w),
        Item("ex.{i}.ada2_b", ep + "post_attention_layernorm.dense.bias", f32, w),
    ])
    singletons = [
        Item("patch_w", VIS + "embeddings.patch_embedding.weight", f32, w),
        Item("patch_b", VIS + "embeddings.patch_embedding.bias", f32, w),
        Item("pos_emb", VIS + "embeddings.position_embedding.weight", f32, w),
        Item("post_ln_w", VIS + "post_layernorm.weight", f32, w),
        Item("post_ln_b", VIS + "post_layernorm.bias", f32, w),
        Item("proj_w", PROJ + "weight", lin, w),
        Item("proj_b", PROJ + "bias", f32, w),
        Item("embed", EMBED_TOKENS, (), w),
        Item("ex_final_w", EXP + "norm.dense.weight", f32, w),
        Item("ex_final_b", EXP + "norm.dense.bias", f32, w),
        Item("action_in_w", "action_in_proj.weight", lin, w),
        Item("action_in_b", "action_in_proj.bias", f32, w),
        Item("action_out_w", "action_out_proj.weight", lin, w),
        Item("action_out_b", "action_out_proj.bias", f32, w),
        Item("time_in_w", "time_mlp_in.weight", f32, w),
        Item("time_in_b", "time_mlp_in.bias", f32, w),
        Item("time_out_w", "time_mlp_out.weight", f32, w),
        Item("time_out_b", "time_mlp_out.bias", f32, w),
    ]
    return ModelWeightSpec(framework="torch", blocks=[vision, llm, expert], singletons=singletons)
