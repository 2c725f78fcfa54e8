"""Weight spec of the Pi0.5 GPU paths (hopper, thor, rtx_sm120): the shared table (_pi05_spec_common) with CUDA
storage choices -- the same bytes on every GPU target, so one spec serves them all.

GEMM weights stay [N, K] row-major (cuBLASLt takes `w.t()` as its column-major operand): FP8 e4m3 with one
per-tensor scale each (`Quant`, scales collected per weight family with `scale_into`) in precision "fp8",
bf16 in precision "bf16". Gemma norms are folded into the next projection in fp32 before quantization.
Biases, the embedding and the patch kernel are bf16 (GEMM epilogue / operand dtypes).
With a smoothing plan (runtime/smoothing.py), every GEMM weight and bias passes through `Smooth` in fp32 before it
is quantized or cast: its consumer columns are multiplied and its producer rows divided by the per-channel factors.
"""
from __future__ import annotations

from flash_rt.executors.torch_weights import DictSink, Quant, ToBf16, ToFp32
from flash_rt.executors.weight_loader import Item, ModelWeightSpec
from flash_rt.frontends.torch._pi05_spec_common import build_pi05_spec
from flash_rt.models.pi05.config import Pi05Config

PRECISIONS = ("fp8", "bf16")


def scale_group(name: str) -> str:
    """`vis.{i}.qkv_w` -> `_s_vis_qkv_w`: the attribute collecting that family's per-layer FP8 scales."""
    return "_s_" + name.replace(".{i}", "").replace(".", "_")


class Smooth:
    """The smoothing folds of one GEMM weight or bias (fp32 in, fp32 out; identity for names the plan leaves)."""

    def __init__(self, plan):
        self.plan = plan

    def apply(self, x, ctx):
        return self.plan.fold_matrix(ctx.format_name(ctx.item.name), x)

    def __repr__(self):
        return f"Smooth({self.plan.digest()})"


def build_spec(cfg: Pi05Config, precision: str = "fp8", plan=None) -> ModelWeightSpec:
    """plan: a runtime.smoothing.SmoothingPlan with factors (fp8 only), or None."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    w = DictSink("w")
    fold = [Smooth(plan)] if plan is not None and plan.active else []
    wide = [ToFp32(), *fold] if fold else []

    def gemm(name, key):
        if precision == "fp8":
            return Item(name, key, [ToFp32(), *fold, Quant()], w, scale_into=scale_group(name))
        return Item(name, key, [*wide, ToBf16()], w)

    return build_pi05_spec(cfg, w, gemm=gemm, bias=lambda name, key: Item(name, key, [*wide, ToBf16()], w),
                           embed_transforms=(ToBf16(),), patch_transforms=(ToBf16(),))


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
