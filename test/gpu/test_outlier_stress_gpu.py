"""The outlier-stress rung (issue 16): the full-size checkpoint with a handful of activation outlier channels injected
(flash_rt/testing/outliers.py; every kind of place an FP8 activation is produced), at 10x and 30x. FP8 -- with the
engine's default options -- must keep worst cosine >= 0.995 against the FP32 reference over 20 observations, and BF16
on the same checkpoint is measured beside it (>= 0.999: the comparison itself is sane). FP8 with per-channel smoothing
(runtime/smoothing.py, smoothing=0.5; off by default) and FP8 with BF16 at the outlier sites (bf16_outlier_sites=True,
experimental) are measured and printed beside it.

Why: random-weight checkpoints have no outlier channels, real Gemma-family ones do; before smoothing, per-tensor FP8
fell to 0.993 (10x) / 0.988 (30x) on an H200 while BF16 stayed >= 0.9998. The numbers go to docs/calibration.md
(benchmarks/outlier_stress.py prints the full table, with and without smoothing and the replay A/B).

Cost: per kind and scale, one injected shard written (the untouched shards are links into one re-sharded base), two
loads (fp8, bf16) and 20 FP32 reference chunks per run (three runs at 30x). Marked slow as well as gpu.
"""
import pytest

from flash_rt.testing.outlier_stress import cosines, load_modes, summary
from flash_rt.testing.outliers import KINDS, inject_checkpoint, injection_base

from conftest import cell_skip_reason  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
N_OBS = 20
STATE_DIM = 8   # DROID, what the full-size checkpoint's norm stats describe


@pytest.fixture(scope="module")
def base(full_ckpt, tmp_path_factory):
    from flash_rt.models.pi05.config import Pi05Config
    return injection_base(full_ckpt, tmp_path_factory.mktemp("outlier_base"), Pi05Config())


@pytest.mark.parametrize("scale", [10.0, 30.0])
@pytest.mark.parametrize("kind", KINDS)
def test_fp8_holds_with_outlier_channels(base, tmp_path, kind, scale):
    why = cell_skip_reason("hopper")
    if why:
        pytest.skip(why)
    from flash_rt.models.pi05.config import Pi05Config
    ck = inject_checkpoint(base, tmp_path / "ck", kind, scale, Pi05Config())
    pols = load_modes(ck, "hopper", ("fp8", "fp8_smooth", "fp8_bf16out", "bf16"), tmp_path / "cache", STATE_DIM,
                      num_views=3, action_horizon=50)
    runs = []
    for r in range(3 if scale >= 30 else 1):   # the gate: three runs at 30x
        s = summary(cosines(pols, N_OBS, seed=100 + r, state_dim=STATE_DIM))
        print(f"outliers {kind} x{scale:g} run {r}: fp8 worst {s['fp8']['worst']:.5f} mean {s['fp8']['mean']:.5f}, "
              f"smoothed worst {s['fp8_smooth']['worst']:.5f} mean {s['fp8_smooth']['mean']:.5f}, "
              f"bf16 at outlier sites worst {s['fp8_bf16out']['worst']:.5f}, "
              f"bf16 worst {s['bf16']['worst']:.6f}")
        runs.append(s)
    assert min(s["bf16"]["worst"] for s in runs) >= 0.999, runs
    assert min(s["fp8"]["worst"] for s in runs) >= 0.995, runs
