"""Precision ladder, rung 1: the CPU frontend vs the FP32 reference on the tiny model, both layouts.

20 random observations (assorted camera sizes, a masked slot, states outside [-1, 1]) with matched noise;
max |delta| <= 1e-4 and cosine >= 0.99999 in float64 per sample, the worst sample counts.
"""
import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.models.pi05.oracle import ReferenceOracle, cosine64
from flash_rt.testing import TINY_ACTION_DIM, TINY_STATE_DIM
from flash_rt.testing.observations import random_observation


@pytest.mark.parametrize("layout", ["openpi", "lerobot"])
def test_cpu_frontend_matches_reference(layout, tiny_openpi, tiny_lerobot):
    ckpt = tiny_openpi if layout == "openpi" else tiny_lerobot
    pol = flash_rt.load_model(ckpt, hardware="cpu")
    assert pol.hardware == "cpu" and pol.action_dim == TINY_ACTION_DIM and pol.state_dim == TINY_STATE_DIM
    oracle = ReferenceOracle.for_policy(pol)
    rng = np.random.default_rng(1 if layout == "openpi" else 2)
    worst_cos, worst_abs = 1.0, 0.0
    for _ in range(20):
        images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, pol.action_horizon)
        got = pol.predict(images, state, prompt, noise)
        want = oracle.chunk(pol.frontend.host)
        assert got.shape == (pol.action_horizon, TINY_ACTION_DIM) and np.isfinite(got).all()
        worst_abs = max(worst_abs, float(np.abs(got - want).max()))
        worst_cos = min(worst_cos, cosine64(got, want))
    assert worst_abs <= 1e-4, worst_abs
    assert worst_cos >= 0.99999, worst_cos


def test_both_layouts_give_the_same_chunk(tiny_openpi, tiny_lerobot):
    """Same weights and stats in two layouts -> the same actions (openpi vs lerobot eps differ by ~1e-6)."""
    a = flash_rt.load_model(tiny_openpi, hardware="cpu")
    b = flash_rt.load_model(tiny_lerobot, hardware="cpu")
    rng = np.random.default_rng(5)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, a.action_horizon)
    state = np.full(TINY_STATE_DIM, 0.1)  # far from bin edges so eps differences cannot flip a state token
    ya = a.predict(images, state, prompt, noise)
    yb = b.predict(images, state, prompt, noise)
    np.testing.assert_array_equal(a.frontend.host.token_ids, b.frontend.host.token_ids)
    assert np.abs(ya - yb).max() < 1e-4


def test_bf16_checkpoint_loads_and_runs(tmp_path):
    from flash_rt.testing import build_tiny_checkpoint
    ck = build_tiny_checkpoint(tmp_path / "bf16", dtype=torch.bfloat16)
    pol = flash_rt.load_model(ck, hardware="cpu")
    oracle = ReferenceOracle.for_policy(pol)
    rng = np.random.default_rng(3)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, pol.action_horizon)
    got = pol.predict(images, state, prompt, noise)
    assert cosine64(got, oracle.chunk(pol.frontend.host)) >= 0.99999


def test_other_geometry_loads(tmp_path):
    """Dims are inferred, never hard-coded: 3 layers, head_dim 32, wider expert, horizon 7 load and match."""
    import dataclasses
    from flash_rt.testing import TINY_CONFIG, build_tiny_checkpoint
    cfg = dataclasses.replace(TINY_CONFIG, layers=3, head_dim=32, width=96, ex_width=48, ex_mlp=80,
                              vis_layers=1, vis_heads=4, vis_width=64, action_horizon=7)
    ck = build_tiny_checkpoint(tmp_path / "geo", cfg=cfg)
    pol = flash_rt.load_model(ck, hardware="cpu", num_views=2)
    c = pol.config
    assert (c.layers, c.head_dim, c.width, c.ex_width, c.vis_heads, c.action_horizon) == (3, 32, 96, 48, 4, 7)
    oracle = ReferenceOracle.for_policy(pol)
    rng = np.random.default_rng(4)
    images, state, prompt, noise = random_observation(rng, 2, TINY_STATE_DIM, 7)
    got = pol.predict(images, state, prompt, noise)
    assert np.abs(got - oracle.chunk(pol.frontend.host)).max() <= 1e-4
