"""Real-time chunking on the CPU cells of Pi0.5 and Pi0 (exact FP32) against each model's FP32 reference under the
same constraint (the tests that take `rtc` / `plain` run for both models).

What must hold (models/pi05/rtc.py): the frozen rows of the new chunk equal the prefix in output units (the prefix
went to model space through the delta mask and the normalization and came back); the CPU pipeline and the
reference sample the same constrained chunk; all-zero weights are bit-identical to plain sampling, and so is a
cleared prefix; the soft weights are the paper's; bad prefixes are clear errors.
"""
import math

import numpy as np
import pytest

import flash_rt
from flash_rt.errors import InputError
from flash_rt.models.pi05.rtc import soft_weights
from flash_rt.testing import TINY_ACTION_DIM, TINY_STATE_DIM
from flash_rt.testing.observations import random_observation

H = 10   # the tiny checkpoint's horizon


def _load(request, model, **kw):
    """The tiny checkpoint of `model` on the CPU cell (Pi0 samples like Pi0.5, so the same blend and the same
    checks hold for both; Pi0 normalizes by z-score, so its prefix goes to model space another way)."""
    ckpt = request.getfixturevalue("tiny_openpi" if model == "pi05" else "tiny_pi0")
    return flash_rt.load_model(ckpt, config=model, hardware="cpu", action_delta_mask=[2, -1], **kw)


@pytest.fixture(scope="module", params=["pi05", "pi0"])
def model(request):
    return request.param


@pytest.fixture(scope="module")
def rtc(request, model):
    return _load(request, model, realtime_chunking=True)


@pytest.fixture(scope="module")
def plain(request, model):
    return _load(request, model)


def paper_weights(H, s, d):
    """Black et al. 2025, eq. for W: 1 for i < d, c_i (e^c_i - 1)/(e - 1) with c_i = (H-s-i)/(H-s-d+1) for
    d <= i < H - s, 0 after; H - s rows of the previous chunk overlap the new one."""
    w = np.zeros(H)
    for i in range(H):
        if i < d:
            w[i] = 1.0
        elif i < H - s:
            c = (H - s - i) / (H - s - d + 1)
            w[i] = c * (math.exp(c) - 1) / (math.e - 1)
    return w


@pytest.mark.parametrize("s, d", [(3, 2), (5, 0), (4, 6), (1, 1)])
def test_soft_weights_are_the_papers(s, d):
    got = soft_weights(d, H - s - d, np.zeros(H, np.float32))
    np.testing.assert_allclose(got, paper_weights(H, s, d), rtol=1e-6, atol=1e-7)


def test_frozen_rows_equal_the_prefix_and_the_reference_agrees(rtc):
    rng = np.random.default_rng(11)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, H)
    prev = rtc.predict(images, state, prompt, noise)       # no prefix yet: plain
    for frozen, start, blend in ((3, 4, None), (1, 2, 2), (5, 0, 0)):
        prefix = prev[start:].copy()                        # the rows of the executing chunk still ahead
        rtc.write_action_prefix(prefix, frozen, blend)
        images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, H)
        got = rtc.predict(images, state, prompt, noise)
        np.testing.assert_allclose(got[:frozen], prefix[:frozen], rtol=0, atol=1e-5)
        assert np.abs(got[frozen:len(prefix)] - prefix[frozen:]).max() > 1e-3    # the rest is sampled, not copied
        want = rtc.reference_chunk()
        assert np.abs(got - want).max() <= 1e-4, np.abs(got - want).max()
        prev = got
    rtc.write_action_prefix(None, 0)


def test_blend_pulls_toward_the_prefix(rtc, plain):
    """Soft rows move toward the prefix, relative to the same observation and noise sampled without it."""
    rng = np.random.default_rng(12)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, H)
    free = plain.predict(images, state, prompt, noise)
    prefix = free + rng.normal(0, 2.0, free.shape)          # a previous chunk far from this one
    rtc.write_action_prefix(prefix, 2)
    got = rtc.predict(images, state, prompt, noise)
    rtc.write_action_prefix(None, 0)
    row = 3                                                  # a soft row with a large weight
    assert np.abs(got[row] - prefix[row]).mean() < np.abs(free[row] - prefix[row]).mean()


def test_zero_weights_and_clearing_are_plain_sampling_bit_for_bit(rtc, plain):
    rng = np.random.default_rng(13)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, H)
    want = plain.predict(images, state, prompt, noise)
    rtc.write_action_prefix(want[2:] + 1.0, 0, 0)             # a prefix with every weight 0
    np.testing.assert_array_equal(rtc.predict(images, state, prompt, noise), want)
    assert rtc.frontend.host.rtc.n == 8 and not rtc.frontend.host.rtc.w.any()
    rtc.write_action_prefix(want + 1.0, 4)
    assert not np.array_equal(rtc.predict(images, state, prompt, noise), want)
    rtc.write_action_prefix(None, 0)                          # cleared
    np.testing.assert_array_equal(rtc.predict(images, state, prompt, noise), want)


def test_prefix_errors_are_clear(rtc, plain):
    with pytest.raises(InputError, match="realtime_chunking=True"):
        plain.write_action_prefix(np.zeros((3, TINY_ACTION_DIM)), 1)
    bad = [
        (np.zeros((3, TINY_ACTION_DIM + 1)), 1, None, r"must be \[n, 7\]"),
        (np.zeros((H + 1, TINY_ACTION_DIM)), 1, None, r"1 <= n <= action_horizon=10"),
        (np.zeros((0, TINY_ACTION_DIM)), 0, None, r"1 <= n"),
        (np.zeros(TINY_ACTION_DIM), 1, None, r"must be \[n, 7\]"),
        (np.full((3, TINY_ACTION_DIM), np.nan), 1, None, "finite"),
        (np.zeros((3, TINY_ACTION_DIM)), 4, None, r"frozen must be an int in 0..3"),
        (np.zeros((3, TINY_ACTION_DIM)), -1, None, r"frozen must be an int in 0..3"),
        (np.zeros((3, TINY_ACTION_DIM)), True, None, r"frozen must be an int"),
        (np.zeros((3, TINY_ACTION_DIM)), 1, 3, r"blend must be an int in 0..2"),
        (np.zeros((3, TINY_ACTION_DIM)), 1, 1.5, r"blend must be an int"),
        (None, 2, None, r"clears the prefix and takes frozen=0"),
    ]
    good = np.arange(4 * TINY_ACTION_DIM, dtype=np.float32).reshape(4, TINY_ACTION_DIM)
    rtc.write_action_prefix(good, 2)
    host = rtc.frontend.host.rtc
    w = host._w.copy()
    for prefix, frozen, blend, match in bad:
        with pytest.raises(InputError, match=match):
            rtc.write_action_prefix(prefix, frozen, blend)
    assert host.pending == (4, 2, 2) and np.array_equal(host._w, w)   # a refused call changes nothing
    np.testing.assert_array_equal(host._rows[:4], good)
    rtc.write_action_prefix(None, 0)
    assert host.pending == (0, 0, 0) and not host._w.any() and (host._w1 == 1).all()


def test_prefix_and_delta_stages_allocate_nothing(tiny_openpi):
    """The per-tick host work of RTC and the delta mask (write the prefix, take it to model space with this step's
    state, add the state to the output) runs in preallocated buffers: no temporary arrays. Measured as the traced
    peak above the start (numpy reports its buffers to tracemalloc); horizon 50 x 7 dims makes any temporary of a
    chunk >= 1.4 KB, far above the bar."""
    import tracemalloc
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", realtime_chunking=True, action_delta_mask=[2, -1],
                              action_horizon=50)
    host = pol.frontend.host
    host.write_state(np.linspace(-1, 1, TINY_STATE_DIM))
    prefix = np.random.default_rng(0).normal(size=(40, TINY_ACTION_DIM)).astype(np.float32)
    out = np.zeros((50, TINY_ACTION_DIM), np.float32)

    def tick():
        host.rtc.write(prefix, 5)
        host.delta.set_state(host.state_raw, TINY_STATE_DIM)
        host.rtc.prepare(host.normalizer, host.delta)
        host.delta.apply(out)
    tick()
    tracemalloc.start()
    try:
        for _ in range(3):
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            tick()
            _, peak = tracemalloc.get_traced_memory()
            assert peak - base < 1024, peak - base
    finally:
        tracemalloc.stop()


def test_reference_uses_the_constraint_of_the_last_step(rtc):
    """A prefix written after a step (for the next one) does not change what reference_chunk() checks."""
    rng = np.random.default_rng(14)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, H)
    rtc.write_action_prefix(np.zeros((6, TINY_ACTION_DIM)), 3)
    got = rtc.predict(images, state, prompt, noise)
    rtc.write_action_prefix(np.ones((9, TINY_ACTION_DIM)), 1)     # for the next tick
    assert np.abs(got - rtc.reference_chunk()).max() <= 1e-4
    np.testing.assert_allclose(got[:3], 0.0, atol=1e-5)
    rtc.write_action_prefix(None, 0)
