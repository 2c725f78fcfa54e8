"""One outlier-stress measurement: FP8 (with and without smoothing) and BF16 against the FP32 reference, on the same
checkpoint and the same observations. Shared by the GPU suite's outlier rung (test/gpu/test_outlier_stress_gpu.py)
and benchmarks/outlier_stress.py, so the gate and the printed table cannot measure different things.

The reference runs once per observation: every policy sees the same images, state, prompt and noise, so their host
buffers (what the oracle reads) are identical; that is checked, not assumed.
"""
from __future__ import annotations

import numpy as np

import flash_rt
from flash_rt.models.pi05.oracle import ReferenceOracle, cosine64
from flash_rt.testing.observations import random_observation

MODES = {"fp8_default": dict(precision="fp8"),   # the engine load_model gives (its outlier remedy included)
         "fp8": dict(precision="fp8", bf16_outlier_sites=False), "fp8_smooth": dict(precision="fp8", smoothing=0.5),
         "fp8_bf16out": dict(precision="fp8", bf16_outlier_sites=True),
         "fp8_bf16blocks": dict(precision="fp8", bf16_outlier_sites="blocks"), "bf16": dict(precision="bf16")}


def load_modes(ckpt, hardware: str, modes, cache_dir, state_dim: int, alpha: float | None = None, **kw) -> dict:
    """{mode: policy}; `alpha` overrides the smoothed mode's alpha."""
    out = {}
    for m in modes:
        opts = dict(MODES[m])
        if alpha is not None and "smoothing" in opts:
            opts["smoothing"] = alpha
        # one weight cache for the modes: the FP8 engines share the unsmoothed FP8 weights (built once, then hits)
        out[m] = flash_rt.load_model(ckpt, hardware=hardware, cache_dir=cache_dir, **opts, **kw)
    return out


def cosines(policies: dict, n_obs: int, seed: int, state_dim: int, oracle_device: str = "cuda", oracle=None,
            against: str | None = None) -> dict:
    """{mode: [cosine per observation]} over n_obs random observations (float64 cosine vs the FP32 reference);
    `oracle`: a ReferenceOracle of the same checkpoint to reuse (building one loads the FP32 weights again).
    `against`: a mode of `policies` (e.g. "bf16") that every other mode is also compared with, as "<mode>~<against>":
    on an injected model BF16 itself cannot follow FP32 (ex_ada plain 30x: BF16 0.9888), the question left is whether
    FP8 follows the training precision there."""
    first = next(iter(policies.values()))
    own = oracle is None
    if own:
        oracle = ReferenceOracle.for_policy(first, device=oracle_device)
    rng = np.random.default_rng(seed)
    out = {m: [] for m in policies}
    for _ in range(n_obs):
        images, state, prompt, noise = random_observation(rng, first.num_views, state_dim, first.action_horizon)
        got = {m: p.predict(images, state, prompt, noise) for m, p in policies.items()}
        h0 = first.frontend.host
        for p in policies.values():
            h = p.frontend.host
            assert np.array_equal(h.token_ids, h0.token_ids) and np.array_equal(h.noise, h0.noise) \
                and np.array_equal(h.images, h0.images), "the policies were fed different inputs"
        want = oracle.chunk(h0)
        for m, g in got.items():
            out[m].append(cosine64(g, want))
            if against is not None and m != against:
                out.setdefault(f"{m}~{against}", []).append(cosine64(g, got[against]))
    if own:
        del oracle
    return out


def summary(cos: dict) -> dict:
    return {m: {"worst": float(min(v)), "mean": float(np.mean(v))} for m, v in cos.items()}


# beyond BF16 (a case BF16 itself holds below 0.999 against FP32): an FP8 engine is gated on precision parity, its
# 1 - worst cosine against FP32 at most this many times BF16's on the same observations (test_outlier_stress_gpu.py)
BEYOND_BF16 = 1.25


def precision_parity(engine_worst: float, bf16_worst: float) -> float:
    """(1 - engine worst cosine) / (1 - BF16 worst cosine), both against FP32 on the same observations."""
    return (1 - engine_worst) / (1 - bf16_worst)
