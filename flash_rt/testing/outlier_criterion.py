"""The outlier-site criterion (runtime/outlier_sites.py) measured through the exact CPU cell, for checkpoints no GPU
is at hand for.

Why: bf16_outlier_sites="blocks" is the default, so what the criterion flags on a checkpoint decides which blocks of
the default engine run in BF16, and so what it costs. The GPU frontend measures it on the first real observation
with its calibration twin: BF16 activations, its GEMM weights the per-tensor FP8 ones dequantized. Here the CPU cell
stands in: its GEMM weights are put through the GPU cells' own quantizer (executors/torch_weights.Quant) and
dequantized in place (fp8_weights_in_place), then its calibration twin runs in FP32 at the same sites. The FP8
weights matter: with FP32 ones the micro model's activation maxima differ from the GPU path's by up to 68 % a
channel and its ratios by 13 %; with them, by BF16 rounding alone (test_smoothing_interpret.py checks it under the
interpreter). A verdict can still differ for a group within that much of the bar, so the ratios are returned and
the margin shows. The full-size run is benchmarks/outlier_criterion_cpu.py (docs/calibration.md has its numbers,
beside what the GPU frontend flagged on the same kinds).
"""
from __future__ import annotations

from types import SimpleNamespace

import torch

from flash_rt.executors.torch_weights import Quant
from flash_rt.executors.weight_loader import PENDING_SCALE
from flash_rt.frontends.torch._pi05_cuda_spec import gemm_names
from flash_rt.runtime.outlier_sites import product_ratios
from flash_rt.runtime.smoothing import ChannelRecorder, column_max, group_of_site


class CpuSiteRecorder(ChannelRecorder):
    """ChannelRecorder for the CPU pipeline's site names. Its expert sites are ex.<layer>.<what> (one flow step at a
    time), the GPU twin's ex.<step>.<layer>.<what>; both record the max over the steps in the layer's group.
    ex.final feeds no FP8 GEMM group (as on the GPU). Also keeps each channel's RMS over every row (`rms()`), the
    statistic of a persistent outlier channel, which the benchmark sets beside the max (docs/calibration.md: at
    full size it flags more, not less)."""

    def __init__(self):
        super().__init__()
        self.sumsq: dict[str, torch.Tensor] = {}
        self.rows: dict[str, int] = {}

    def __call__(self, site: str, t: torch.Tensor) -> None:
        p = site.split(".")
        if p[0] == "ex":
            if len(p) != 3:
                return
            site = f"ex.0.{p[1]}.{p[2]}"
        super().__call__(site, t)
        g = group_of_site(site)
        if g is not None:
            x = t.detach().reshape(-1, t.shape[-1])
            sq = x.double().square().sum(0)
            self.sumsq[g] = self.sumsq[g] + sq if g in self.sumsq else sq
            self.rows[g] = self.rows.get(g, 0) + x.shape[0]

    def rms(self) -> dict[str, torch.Tensor]:
        return {g: (sq / self.rows[g]).sqrt().float() for g, sq in self.sumsq.items()}


@torch.no_grad()
def fp8_weights_in_place(policy) -> None:
    """Replace the CPU policy's GEMM weights (the GPU cells' FP8 ones, by name) with their per-tensor e4m3 values,
    dequantized to fp32: the weights the GPU calibration twin runs. The policy is no longer the exact FP32 model
    after this: give it a policy of its own."""
    w = policy.frontend.w
    for name, _, _ in gemm_names(policy.config):
        if name in w:   # the CPU cell loads no o / MLP weights for the last prefix layer
            ctx = SimpleNamespace(scratch={}, item=None, layer_idx=None)
            q = Quant().apply(w[name], ctx)
            w[name].copy_(q.float() * ctx.scratch[PENDING_SCALE])


def cpu_product_ratios(policy, stat: str = "max") -> dict[str, float]:
    """{group: max / median of its per-channel products} for the observation in the CPU policy's buffers (write it
    and call policy.prepare_inputs(noise) first): one forward of the CPU cell's calibration twin, the column maxima
    of its weights as they are (after fp8_weights_in_place, the GPU frontend's). `stat`: the activation side as the
    per-channel "max" or "rms" (ChannelRecorder)."""
    return cpu_criteria(policy, (stat,))[stat]


def cpu_criteria(policy, stats=("max", "rms")) -> dict[str, dict[str, float]]:
    """{stat: {group: ratio}} for every activation statistic of `stats`, from one forward (cpu_product_ratios)."""
    fe = policy.frontend
    rec = CpuSiteRecorder()
    fe.run_calibration_twin(rec)
    col = column_max(policy.config, fe.w, {}, out_dim=1)
    act = {"max": lambda: rec.max, "rms": rec.rms}
    return {s: product_ratios(policy.config, act[s](), col) for s in stats}


def criterion_on_checkpoint(ckpt, num_views: int = 2, seed: int = 100, stats=("max", "rms"),
                            fp8_weights: bool = True) -> dict[str, dict[str, float]]:
    """{stat: {group: ratio}} of a checkpoint on the first observation of `seed` (the GPU rung calibrates on it), state
    dim 8, horizon 50, through a CPU cell of its own (full size: ~65 s and ~18 GB on 2 cores)."""
    import numpy as np

    import flash_rt
    from flash_rt.testing.observations import random_observation

    pol = flash_rt.load_model(ckpt, hardware="cpu", num_views=num_views, action_horizon=50)
    images, state, prompt, noise = random_observation(np.random.default_rng(seed), pol.num_views, 8, pol.action_horizon)
    pol.frontend.host.write_images(images)
    pol.frontend.host.write_state(state)
    pol.set_prompt(prompt)
    pol.prepare_inputs(noise)
    if fp8_weights:
        fp8_weights_in_place(pol)
    return cpu_criteria(pol, stats)
