"""Real-time chunking on Pi0's CPU cell (exact FP32) against Pi0's FP32 reference under the same constraint.

Pi0 samples like Pi0.5 (x = noise at t = 1, Euler steps to t = 0), so the inpainting blend of models/pi05/rtc.py
applies unchanged: after every flow step, at the time reached, the prefix rows are pulled onto the straight
noise-to-prefix path by the soft weights. What must hold, as for Pi0.5 (test_rtc_cpu.py): the frozen rows of the new
chunk equal the prefix in output units (Pi0's z-score normalization and the delta mask there and back); the CPU
pipeline and the reference sample the same constrained chunk; all-zero weights and a cleared prefix are plain
sampling bit for bit; the prefix moves the soft rows toward itself.
"""
import numpy as np
import pytest

import flash_rt
from flash_rt.errors import InputError
from flash_rt.testing import TINY_ACTION_DIM, TINY_STATE_DIM
from flash_rt.testing.observations import random_observation

H = 10   # the tiny Pi0's horizon


@pytest.fixture(scope="module")
def rtc(tiny_pi0):
    return flash_rt.load_model(tiny_pi0, config="pi0", hardware="cpu", realtime_chunking=True,
                               action_delta_mask=[2, -1])


@pytest.fixture(scope="module")
def plain(tiny_pi0):
    return flash_rt.load_model(tiny_pi0, config="pi0", hardware="cpu", action_delta_mask=[2, -1])


def test_frozen_rows_equal_the_prefix_and_the_reference_agrees(rtc):
    assert rtc.realtime_chunking
    rng = np.random.default_rng(21)
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


def test_zero_weights_and_clearing_are_plain_sampling_bit_for_bit(rtc, plain):
    rng = np.random.default_rng(23)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, H)
    want = plain.predict(images, state, prompt, noise)
    rtc.write_action_prefix(want[2:] + 1.0, 0, 0)             # a prefix with every weight 0
    np.testing.assert_array_equal(rtc.predict(images, state, prompt, noise), want)
    rtc.write_action_prefix(want + 1.0, 4)
    assert not np.array_equal(rtc.predict(images, state, prompt, noise), want)
    rtc.write_action_prefix(None, 0)                          # cleared
    np.testing.assert_array_equal(rtc.predict(images, state, prompt, noise), want)


def test_blend_pulls_toward_the_prefix(rtc, plain):
    rng = np.random.default_rng(22)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, H)
    free = plain.predict(images, state, prompt, noise)
    prefix = free + rng.normal(0, 2.0, free.shape)          # a previous chunk far from this one
    rtc.write_action_prefix(prefix, 2)
    got = rtc.predict(images, state, prompt, noise)
    rtc.write_action_prefix(None, 0)
    row = 3                                                  # a soft row with a large weight
    assert np.abs(got[row] - prefix[row]).mean() < np.abs(free[row] - prefix[row]).mean()


def test_a_policy_without_it_refuses_a_prefix(plain):
    with pytest.raises(InputError, match="realtime_chunking=True"):
        plain.write_action_prefix(np.zeros((3, TINY_ACTION_DIM)), 1)
