"""Declarative weight spec of the Pi0.5 Hopper path: checkpoint keys -> device tensors for pipeline_hopper.

GEMM weights stay [N, K] row-major (cuBLASLt takes `w.t()` as its column-major operand): FP8 e4m3 with one
per-tensor scale each (`Quant`, scales collected per weight family with `scale_into`) in precision "fp8",
bf16 in precision "bf16". Gemma norms are folded into the next projection in fp32 before quantization.
Biases are bf16 (the GEMM epilogue's dtype), LayerNorm params fp32. The adaRMS/time-MLP weights are fp32 and
used once at load to precompute the per-step modulation. action_in/out stay fp32 (tiny, precision-critical).
"""
from __future__ import annotations

from flash_rt.executors.torch_weights import Cat, DictSink, FusedGateUp, FusedQKV, Quant, ToBf16, ToFp32, tT
from flash_rt.executors.weight_loader import Item, LayerBlock, ModelWeightSpec
from flash_rt.models.pi05.config import EMBED_TOKENS, EXP, LLM, PROJ, VIS, Pi05Config

PRECISIONS = ("fp8", "bf16")


def scale_group(name: str) -> str:
    """`vis.{i}.qkv_w` -> `_s_vis_qkv_w`: the attribute collecting that family's per-layer FP8 scales."""
    return "_s_" + name.replace(".{i}", "").replace(".", "_")


def build_spec(cfg: Pi05Config, precision: str = "fp8") -> ModelWeightSpec:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    w = DictSink("w")
    f32, bf16 = [ToFp32()], [ToBf16()]

    def gemm(name, key):
        if precision == "fp8":
            return Item(name, key, [ToFp32(), Quant()], w, scale_into=scale_group(name))
        return Item(name, key, [ToBf16()], w)

    vp, lp, ep = VIS + "encoder.layers.{i}.", LLM + "layers.{i}.", EXP + "layers.{i}."
    vision = LayerBlock("vision", cfg.vis_layers, [
        Item("vis.{i}.ln1_w", vp + "layer_norm1.weight", f32, w),
        Item("vis.{i}.ln1_b", vp + "layer_norm1.bias", f32, w),
        gemm("vis.{i}.qkv_w", Cat([vp + f"self_attn.{n}_proj.weight" for n in "qkv"])),
        Item("vis.{i}.qkv_b", Cat([vp + f"self_attn.{n}_proj.bias" for n in "qkv"]), bf16, w),
        gemm("vis.{i}.o_w", vp + "self_attn.out_proj.weight"),
        Item("vis.{i}.o_b", vp + "self_attn.out_proj.bias", bf16, w),
        Item("vis.{i}.ln2_w", vp + "layer_norm2.weight", f32, w),
        Item("vis.{i}.ln2_b", vp + "layer_norm2.bias", f32, w),
        gemm("vis.{i}.fc1_w", vp + "mlp.fc1.weight"),
        Item("vis.{i}.fc1_b", vp + "mlp.fc1.bias", bf16, w),
        gemm("vis.{i}.fc2_w", vp + "mlp.fc2.weight"),
        Item("vis.{i}.fc2_b", vp + "mlp.fc2.bias", bf16, w),
    ])
    llm = LayerBlock("llm", cfg.layers, [
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
        Item("ex.{i}.ada1_w", ep + "input_layernorm.dense.weight", f32, w),
        Item("ex.{i}.ada1_b", ep + "input_layernorm.dense.bias", f32, w),
        Item("ex.{i}.ada2_w", ep + "post_attention_layernorm.dense.weight", f32, w),
        Item("ex.{i}.ada2_b", ep + "post_attention_layernorm.dense.bias", f32, w),
    ])
    singletons = [
        Item("patch_w", VIS + "embeddings.patch_embedding.weight", bf16, w),
        Item("patch_b", VIS + "embeddings.patch_embedding.bias", f32, w),
        Item("pos_emb", VIS + "embeddings.position_embedding.weight", f32, w),
        Item("post_ln_w", VIS + "post_layernorm.weight", f32, w),
        Item("post_ln_b", VIS + "post_layernorm.bias", f32, w),
        gemm("proj_w", PROJ + "weight"),
        Item("proj_b", PROJ + "bias", bf16, w),
        Item("embed", EMBED_TOKENS, bf16, w),
        Item("ex_final_w", EXP + "norm.dense.weight", f32, w),
        Item("ex_final_b", EXP + "norm.dense.bias", f32, w),
        Item("action_in_w", "action_in_proj.weight", [ToFp32(), tT()], w),
        Item("action_in_b", "action_in_proj.bias", f32, w),
        Item("action_out_w", "action_out_proj.weight", [ToFp32(), tT()], w),
        Item("action_out_b", "action_out_proj.bias", f32, w),
        Item("time_in_w", "time_mlp_in.weight", f32, w),
        Item("time_in_b", "time_mlp_in.bias", f32, w),
        Item("time_out_w", "time_mlp_out.weight", f32, w),
        Item("time_out_b", "time_mlp_out.bias", f32, w),
    ]
    return ModelWeightSpec(framework="torch", blocks=[vision, llm, expert], singletons=singletons)


def gemm_names(cfg: Pi05Config) -> list[tuple[str, str, int | None]]:
    """(weight name, scale group, layer index or None) for every GEMM weight of the spec."""
    out = [("proj_w", scale_group("proj_w"), None)]
    for blk, n, names in (("vis", cfg.vis_layers, ("qkv_w", "o_w", "fc1_w", "fc2_w")),
                          ("llm", cfg.layers, ("qkv_w", "o_w", "gu_w", "down_w")),
                          ("ex", cfg.layers, ("qkv_w", "o_w", "gu_w", "down_w"))):
        for nm in names:
            tmpl = f"{blk}.{{i}}.{nm}"
            out += [(tmpl.format(i=i), scale_group(tmpl), i) for i in range(n)]
    return out
