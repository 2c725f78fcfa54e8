"""The FP8 self-check's decision (flash_rt/runtime/fp8_check.py); on real forwards (the micro model under the
interpreter) in test_smoothing_interpret.py."""
import warnings

import numpy as np
import pytest

from flash_rt.io.prompt import FlashRTWarning
from flash_rt.runtime.fp8_check import BAR, Fp8Check, cosine


def test_cosine_is_float64_and_scale_free():
    a = np.random.default_rng(0).standard_normal((50, 32)).astype(np.float32)
    assert cosine(a, 3 * a) == pytest.approx(1.0, abs=1e-12)
    assert cosine(a, -a) == pytest.approx(-1.0, abs=1e-12)
    assert cosine(np.zeros(4), np.zeros(4)) == 1.0


def test_the_worst_observation_decides_and_a_bad_one_warns():
    rng = np.random.default_rng(1)
    chk = Fp8Check()
    twin = rng.standard_normal((50, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # a passing check says nothing
        chk.add(twin, twin + 1e-3 * rng.standard_normal(twin.shape))
        assert chk.result()["ok"]
    c = chk.add(twin, twin + 0.2 * rng.standard_normal(twin.shape))
    assert c < BAR
    with pytest.warns(FlashRTWarning, match="FP8 self-check: worst cosine .* below 0.995.*bf16_outlier_sites"):
        r = chk.result()
    assert r["cosine"] == c and not r["ok"] and r["num_observations"] == 2 and r["bar"] == BAR


def test_a_non_finite_chunk_fails_the_check():
    chk = Fp8Check()
    bad = np.ones((4, 4))
    bad[1, 2] = np.nan
    chk.add(np.ones((4, 4)), bad)
    with pytest.warns(FlashRTWarning):
        assert chk.result()["ok"] is False


def test_nothing_checked_is_no_result():
    assert Fp8Check().result() is None
