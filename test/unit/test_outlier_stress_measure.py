"""The outlier rung's measurement (flash_rt/testing/outlier_stress.cosines) on CPU: what it compares is what the GPU
rung gates, so its bookkeeping is tested where CI runs. Two CPU engines of one tiny checkpoint get the same inputs:
both follow the FP32 reference, and the pairwise comparison the rung uses where BF16 itself cannot follow FP32
("<mode>~bf16") is recorded per observation, under that name only, and is 1 (to rounding) between identical engines."""
import numpy as np

import flash_rt
from flash_rt.testing.outlier_stress import cosines, summary

STATE_DIM = 8   # tiny_droid: the full-size checkpoint's DROID norm stats


def test_cosines_against_a_mode_records_the_pairwise_cosine(tiny_droid):
    pols = {m: flash_rt.load_model(tiny_droid, hardware="cpu", num_steps=2) for m in ("engine", "bf16")}
    cos = cosines(pols, 3, seed=5, state_dim=STATE_DIM, oracle_device="cpu", against="bf16")
    assert sorted(cos) == ["bf16", "engine", "engine~bf16"]
    assert all(len(v) == 3 for v in cos.values())
    assert min(cos["engine"]) > 0.99999 and min(cos["bf16"]) > 0.99999
    assert np.allclose(cos["engine~bf16"], 1.0, rtol=0, atol=1e-12)   # identical engines, identical inputs
    s = summary(cos)
    assert s["engine~bf16"]["worst"] == min(cos["engine~bf16"]) and np.isclose(s["engine"]["mean"], np.mean(cos["engine"]))


def test_cosines_without_against_adds_nothing(tiny_droid):
    pols = {"a": flash_rt.load_model(tiny_droid, hardware="cpu", num_steps=2)}
    assert list(cosines(pols, 1, seed=6, state_dim=STATE_DIM, oracle_device="cpu")) == ["a"]


def test_the_pairwise_cosine_is_between_the_two_engines_actions(tiny_droid):
    """Against an engine that acts differently (3 flow steps, not 2), "<mode>~<against>" is the cosine of the two
    engines' actions on each observation, not either one's cosine to the reference."""
    from flash_rt.models.pi05.oracle import cosine64
    from flash_rt.testing.observations import random_observation
    pols = {"two": flash_rt.load_model(tiny_droid, hardware="cpu", num_steps=2),
            "three": flash_rt.load_model(tiny_droid, hardware="cpu", num_steps=3)}
    cos = cosines(pols, 2, seed=9, state_dim=STATE_DIM, oracle_device="cpu", against="three")
    rng = np.random.default_rng(9)
    want = []
    for _ in range(2):
        obs = random_observation(rng, pols["two"].num_views, STATE_DIM, pols["two"].action_horizon)
        want.append(cosine64(pols["two"].predict(*obs), pols["three"].predict(*obs)))
    assert np.allclose(cos["two~three"], want, rtol=0, atol=1e-12) and max(want) < 0.9999


def test_precision_parity_is_the_engines_distance_to_fp32_over_bf16s():
    """The beyond-BF16 gate of the GPU rung and benchmarks/outlier_stress.py: measured on plain `ex_ada` 30x, the
    default engine 0.98818 against BF16 0.98868 is parity ~1.04 (holds); plain FP8 at 2.4 would not."""
    from flash_rt.testing.outlier_stress import BEYOND_BF16, precision_parity
    assert abs(precision_parity(0.98818, 0.98868) - 0.01182 / 0.01132) < 1e-9
    assert precision_parity(0.98818, 0.98868) <= BEYOND_BF16 < precision_parity(1 - 2.4 * 0.01132, 0.98868)
