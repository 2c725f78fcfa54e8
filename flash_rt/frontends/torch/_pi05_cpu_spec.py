"""Weight spec of the Pi0.5 CPU (FP32) path: the shared table with CPU storage choices.

GEMM weights are fp32 and transposed ([in, out], `tT`) so pipeline_cpu runs `addmm(bias, x, W)` straight into
its preallocated outputs; biases fp32. The token embedding keeps the checkpoint dtype (bf16 in openpi
files): the pipeline gathers the prompt's rows and widens them, so the 527 M-parameter table is never held in
fp32. The conv kernel of the patch embedding stays [W, 3, p, p] for conv2d.
"""
from __future__ import annotations

from flash_rt.executors.torch_weights import DictSink, ToFp32, tT
from flash_rt.executors.weight_loader import Item, ModelWeightSpec
from flash_rt.frontends.torch._pi05_spec_common import build_pi05_spec
from flash_rt.models.pi05.config import Pi05Config


def build_spec(cfg: Pi05Config) -> ModelWeightSpec:
    w = DictSink("w")
    return build_pi05_spec(
        cfg, w,
        gemm=lambda name, key: Item(name, key, [ToFp32(), tT()], w),
        bias=lambda name, key: Item(name, key, [ToFp32()], w),
        embed_transforms=(), patch_transforms=(ToFp32(),))
