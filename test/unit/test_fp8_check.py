"""The FP8 self-check's decision (flash_rt/runtime/fp8_check.py); on real forwards (the micro model under the
interpreter) in test_smoothing_interpret.py."""
import warnings

import numpy as np
import pytest

from flash_rt.io.prompt import FlashRTWarning
from flash_rt.runtime.fp8_check import BAR, HELD_OUT_SEED, Fp8Check, cosine, held_out_inputs


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


def test_the_held_out_probe_decides_with_the_calibrated_observations():
    """A held-out comparison below the bar fails the check that the calibrated one passes, and the warning says
    which side it was; the result keeps both numbers."""
    rng = np.random.default_rng(2)
    twin = rng.standard_normal((50, 32))
    chk = Fp8Check()
    chk.add(twin, twin + 1e-3 * rng.standard_normal(twin.shape))
    r = chk.result()
    assert r["ok"] and r["held_out"] is None and r["cosine"] == r["in_sample"]
    c = chk.add(twin, twin + 0.2 * rng.standard_normal(twin.shape), held_out=True)
    with pytest.warns(FlashRTWarning, match=r"on the 1 calibration observation\(s\), 0\.9\d+ on the held-out probe"):
        r = chk.result()
    assert not r["ok"] and r["cosine"] == r["held_out"] == c < r["in_sample"] and r["num_observations"] == 1


def test_held_out_inputs_mirror_every_view_and_draw_fixed_noise():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    noise = rng.standard_normal((10, 32)).astype(np.float32)
    before = images.copy()
    held_out_inputs(images, noise)
    assert np.array_equal(images, before[:, :, ::-1]) and not np.array_equal(images, before)
    want = np.random.default_rng(HELD_OUT_SEED).standard_normal((10, 32)).astype(np.float32)
    assert noise.dtype == np.float32 and np.array_equal(noise, want)


def _frontend_check(scope, groups):
    """The GPU frontend's choice of the self-check (its outlier mixin's real method, on the state it reads)."""
    from flash_rt.frontends.torch._pi05_cuda_outliers import OutlierRemedies

    class Front(OutlierRemedies):
        pass
    f = Front()
    f.bf16_scope, f.bf16_groups = scope, groups
    return f._fp8_check()


@pytest.mark.parametrize("scope, groups, every_block", [
    ("blocks", ["ex.1.norm1"], True),                     # the expert flagged: every block runs in BF16
    ("blocks", ["attn.3"], True),                         # attn.<i> is prefix and expert
    ("blocks", ["llm.4.norm2"], False),                   # SigLIP and the LLM only: the expert stays FP8
    ("blocks", [], False), ("blocks", None, False),       # nothing flagged / not measured yet
    ("groups", ["ex.1.norm1"], False), (None, None, False)])
def test_the_advice_says_when_no_fp8_site_is_left(scope, groups, every_block):
    """Where the remedy ran every block in BF16, advising BF16 would be no advice (H200, plain ex_ada 30x: the
    engine warned 0.99122 with every block in BF16 already); the warning then names the checkpoint's sensitivity."""
    from flash_rt.runtime.fp8_check import ADVICE, ADVICE_ALL_BF16
    chk = _frontend_check(scope, groups)
    assert chk.advice == (ADVICE_ALL_BF16 if every_block else ADVICE)
    twin = np.random.default_rng(3).standard_normal((50, 32))
    chk.add(twin, -twin)
    with pytest.warns(FlashRTWarning, match="rounding orders" if every_block else "leave load_model's"):
        assert chk.result()["advice"] == chk.advice
