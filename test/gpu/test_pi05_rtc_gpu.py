"""Real-time chunking and the delta mask on every GPU cell: FP8 chunks under the RTC constraint vs the FP32 reference
under the same constraint, frozen rows equal to the prefix, no recapture when the prefix changes, and all-zero
weights bit-identical to plain sampling.

Run on the device like test_pi05_gpu.py (test/gpu/run_rtc.sh runs both passes): `python3 -m pytest -m gpu
test/gpu/test_pi05_rtc_gpu.py -q -s`, then with `TRITON_OVERRIDE_ARCH=sm120` (and sm89) for the RTX cells.
Each observation: the previous chunk (this policy's) is the prefix, shifted by the rows executed since it was
computed (s), the first d rows frozen, the rest of the overlap blended; the worst float64 cosine over the
observations counts (the FP8 bar, 0.995).
"""
import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.models.pi05.oracle import ReferenceOracle, cosine64
from flash_rt.testing import TINY_STATE_DIM
from flash_rt.testing.observations import random_observation

pytestmark = pytest.mark.gpu


def rtc_run(pol, oracle, seed, n, executed, frozen, state_dim=TINY_STATE_DIM):
    """n constrained chunks in a row; returns (worst cosine vs the reference, worst |frozen - prefix|)."""
    rng = np.random.default_rng(seed)
    pol.write_action_prefix(None, 0)
    images, state, prompt, noise = random_observation(rng, pol.num_views, state_dim, pol.action_horizon)
    prev = pol.predict(images, state, prompt, noise)
    worst_cos, worst_frozen = 1.0, 0.0
    for _ in range(n):
        prefix = prev[executed:]
        pol.write_action_prefix(prefix, frozen)
        images, state, prompt, noise = random_observation(rng, pol.num_views, state_dim, pol.action_horizon)
        got = pol.predict(images, state, prompt, noise)
        want = oracle.chunk(pol.frontend.host)
        assert np.isfinite(got).all()
        worst_cos = min(worst_cos, cosine64(got, want))
        worst_frozen = max(worst_frozen, float(np.abs(got[:frozen] - prefix[:frozen]).max()))
        prev = got
    pol.write_action_prefix(None, 0)
    return worst_cos, worst_frozen


def test_tiny_fp8_rtc_matches_the_constrained_reference(tiny_openpi, tmp_path, cell):
    pol = flash_rt.load_model(tiny_openpi, hardware=cell, cache_dir=tmp_path, realtime_chunking=True,
                              action_delta_mask=[2, -1])
    cos, frozen = rtc_run(pol, ReferenceOracle.for_policy(pol, device="cuda"), seed=40, n=8, executed=3, frozen=2)
    print(f"tiny fp8 rtc {cell}: worst cos {cos:.6f}, worst |frozen - prefix| {frozen:.2e}")
    assert cos >= 0.995
    assert frozen <= 1e-5
    assert pol.frontend.graph is not None


def test_prefix_changes_do_not_recapture_or_allocate(tiny_openpi, tmp_path, cell):
    pol = flash_rt.load_model(tiny_openpi, hardware=cell, cache_dir=tmp_path, realtime_chunking=True)
    rng = np.random.default_rng(41)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, pol.action_horizon)
    out = pol.predict(images, state, prompt, noise).copy()
    g = pol.frontend.graph
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for k in range(50):
        pol.write_action_prefix(out[k % 4:], k % 3, None if k % 2 else 1)
        out = pol.step().copy()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before and pol.frontend.graph is g


def test_zero_weights_are_plain_sampling_bit_for_bit(tiny_openpi, tmp_path, cell):
    """W = 0 is an exact identity (0 * y + 1 * x) in the seam kernel and in the calibration twin's pieces, so the
    RTC graph with a zero-weight prefix gives the plain graph's bits (same scales: the twin sees the same x_t)."""
    plain = flash_rt.load_model(tiny_openpi, hardware=cell, cache_dir=tmp_path / "plain")
    rtc = flash_rt.load_model(tiny_openpi, hardware=cell, cache_dir=tmp_path / "rtc", realtime_chunking=True)
    rng = np.random.default_rng(42)
    for _ in range(3):
        images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, plain.action_horizon)
        want = plain.predict(images, state, prompt, noise)
        rtc.write_action_prefix(want[1:] + 1.0, 0, 0)
        np.testing.assert_array_equal(rtc.predict(images, state, prompt, noise), want)


def test_full_size_fp8_rtc_per_cell(full_ckpt, tmp_path, cell):
    """Full size, 3 views, horizon 50, d = 5 frozen of a 40-row overlap (10 rows executed per chunk)."""
    pol = flash_rt.load_model(full_ckpt, hardware=cell, num_views=3, action_horizon=50, cache_dir=tmp_path,
                              realtime_chunking=True)
    cos, frozen = rtc_run(pol, ReferenceOracle.for_policy(pol, device="cuda"), seed=43, n=3, executed=10, frozen=5,
                          state_dim=pol.state_dim)
    print(f"full-size fp8 rtc {cell}: worst cos {cos:.6f}, worst |frozen - prefix| {frozen:.2e}")
    assert cos >= 0.995
    assert frozen <= 1e-4


def _median_replay_ms(pol, n=50):
    from flash_rt.runtime.graph import replay_times_ms
    return float(np.median(replay_times_ms(pol.frontend.replay_only, pol.frontend.stream, n)))


@pytest.fixture
def hopper():
    from conftest import cell_skip_reason
    why = cell_skip_reason("hopper")
    if why:
        pytest.skip(why)
    return "hopper"


def test_full_size_rtc_replay_cost(full_ckpt, tmp_path, hopper):
    """What real-time chunking costs per inference: the blend rides in the seam kernel (one row-wise FMA per flow
    step), so the replay should stay within noise of the plain graph. Record both numbers."""
    ms = {}
    for rtc in (False, True):
        pol = flash_rt.load_model(full_ckpt, hardware=hopper, num_views=3, action_horizon=50,
                                  cache_dir=tmp_path, realtime_chunking=rtc)
        images, state, prompt, noise = random_observation(np.random.default_rng(44), 3, pol.state_dim, 50)
        prev = pol.predict(images, state, prompt, noise)
        if rtc:
            pol.write_action_prefix(prev[10:], 5)
            pol.predict(images, state, prompt, noise)
        ms[rtc] = _median_replay_ms(pol)
        del pol
        torch.cuda.empty_cache()
    print(f"full-size hopper replay: plain {ms[False]:.3f} ms, realtime_chunking {ms[True]:.3f} ms")
    assert ms[True] <= 1.05 * ms[False]
