"""Weight spec of the Pi0 GPU cells: Pi0's table (`_pi0_cpu_spec.build_pi0_spec`) with the CUDA storage of Pi0.5's
GPU spec -- GEMM weights [N, K] FP8 e4m3 + one scale each (or bf16), biases, the embedding and the patch kernel
bf16; Pi0's small heads (state_proj, action_time_mlp_*, action in/out) stay fp32 as the table stores them.

In the fp8 build the GEMM weights of the blocks named in `bf16_blocks` ("vision": SigLIP + projector, "prefix",
"expert": the state pass and every flow step; models/pi0/precision.py `gemm_block`) are bf16: Pi0's velocity
carries those blocks' FP8 rounding in full (the measured cause of Pi0's FP8 precision gap, in models/pi0/precision.py).
"""
from __future__ import annotations

from flash_rt.executors.torch_weights import DictSink, Quant, ToBf16, ToFp32
from flash_rt.executors.weight_loader import Item, ModelWeightSpec
from flash_rt.frontends.torch._pi05_cuda_spec import PRECISIONS, gemm_names, scale_group
from flash_rt.frontends.torch._pi0_cpu_spec import build_pi0_spec
from flash_rt.models.pi0.precision import gemm_block

__all__ = ["build_spec", "gemm_names", "PRECISIONS"]   # gemm_names: the same GEMM families as Pi0.5's


def build_spec(cfg, precision: str = "fp8", bf16_blocks: tuple = ()) -> ModelWeightSpec:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    w = DictSink("w")

    def gemm(name, key):
        if precision == "fp8" and gemm_block(name) not in bf16_blocks:
            return Item(name, key, [ToFp32(), Quant()], w, scale_into=scale_group(name))
        return Item(name, key, [ToBf16()], w)

    return build_pi0_spec(cfg, w, gemm=gemm, bias=lambda name, key: Item(name, key, [ToBf16()], w),
                          embed_transforms=(ToBf16(),), patch_transforms=(ToBf16(),))
