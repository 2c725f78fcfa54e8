"""The outlier-stress rung (issue 16): the full-size checkpoint with a handful of activation outlier channels injected
(flash_rt/testing/outliers.py: every kind of place an FP8 activation is produced, each as <kind> -- the channel times
the scale changes the model -- and <kind>:matched -- the consumer columns over the scale, so the FP32 function is the
same and only the FP8 activation carries the outlier, as in a trained model), at 10x (one run) and 30x (three runs),
against the FP32 reference over 20 observations a run, with BF16 on the same checkpoint beside it.

What is asserted, per case: BF16 worst >= 0.999 (the injected model is one its training precision follows), and then
the default engine -- what load_model gives: per-tensor FP8 with BF16 at the blocks through the last that holds an
outlier site, bar 30 (frontends/torch/_pi05_cuda_outliers.py) -- worst >= 0.995 in every run. A case whose BF16 is
itself below 0.999 is an injected model beyond its training precision (measured: plain `ex_ada` at 30x, BF16
0.9887-0.9896 against FP32 on an H200): no engine below FP32 can hold 0.995 there, and none can follow BF16's own
actions either -- two BF16 evaluations that round in another order (the default engine with every block in BF16,
and precision="bf16") are 0.988-0.990 apart, as far as each is from FP32 (H200, 2026-12-05). So the gate there is
precision parity: in every run the default engine's distance to FP32, 1 - worst cosine, is at most BEYOND_BF16
times BF16's on the same observations (measured 0.96-1.10 with the default engine on an H200 and an H100, 2.4 with
plain FP8 on an H200).
Plain FP8 (no remedy) and the other remedies are measured by benchmarks/outlier_stress.py.

Cost: per case, the edited shards written (the rest are links into one re-sharded base), two loads, one FP32
reference, 20 chunks a run. Marked slow as well as gpu.
"""
import shutil

import pytest

from flash_rt.models.pi05.oracle import ReferenceOracle
from flash_rt.testing.outlier_stress import BEYOND_BF16, cosines, load_modes, precision_parity, summary
from flash_rt.testing.outliers import VARIANTS, inject_checkpoint, injection_base

from conftest import cell_skip_reason  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.slow]
N_OBS = 20
ENGINE = "fp8_default"   # flash_rt/testing/outlier_stress.MODES: load_model's defaults
STATE_DIM = 8   # DROID, what the full-size checkpoint's norm stats describe


@pytest.fixture(scope="module")
def base(full_ckpt, tmp_path_factory):
    from flash_rt.models.pi05.config import Pi05Config
    return injection_base(full_ckpt, tmp_path_factory.mktemp("outlier_base"), Pi05Config())


# ids a -k expression can select by (the device runs it in parts: -k "x30 and matched", -k "x30 and not matched",
# -k x10; benchmarks/open_issues_device.sh)
@pytest.mark.parametrize("scale", [10.0, 30.0], ids=lambda s: f"x{s:g}")
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.replace(":", "_"))
def test_fp8_holds_with_outlier_channels(base, tmp_path, variant, scale):
    why = cell_skip_reason("hopper")
    if why:
        pytest.skip(why)
    from flash_rt.models.pi05.config import Pi05Config
    ck = inject_checkpoint(base, tmp_path / "ck", variant, scale, Pi05Config())
    runs = []
    try:
        pols = load_modes(ck, "hopper", (ENGINE, "bf16"), tmp_path / "cache", STATE_DIM, num_views=2,
                          action_horizon=50)
        oracle = ReferenceOracle.for_policy(pols[ENGINE], device="cuda")
        for r in range(3 if scale >= 30 else 1):   # the gate: three runs at 30x
            s = summary(cosines(pols, N_OBS, seed=100 + r, state_dim=STATE_DIM, oracle=oracle, against="bf16"))
            chk = pols[ENGINE].frontend.calibration_info.get("fp8_check") or {}
            print(f"outliers {variant} x{scale:g} run {r}: fp8 worst {s[ENGINE]['worst']:.5f} mean "
                  f"{s[ENGINE]['mean']:.5f}, bf16 worst {s['bf16']['worst']:.6f}, fp8 vs bf16 worst "
                  f"{s[ENGINE + '~bf16']['worst']:.5f}"
                  + f", fp8 self-check {chk.get('in_sample', float('nan')):.5f} "
                  f"(held-out probe {chk.get('held_out') or float('nan'):.5f})"
                  + f", bf16 groups {pols[ENGINE].frontend.bf16_groups}")
            runs.append(s)
        del pols, oracle
    finally:   # 20 cases x (3-7 GB of weight caches + the injected shards) would fill the device's disk
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        shutil.rmtree(tmp_path / "ck", ignore_errors=True)
        import torch
        torch.cuda.empty_cache()
    bf16 = min(s["bf16"]["worst"] for s in runs)
    fp8 = [s[ENGINE]["worst"] for s in runs]
    if bf16 < 0.999:   # beyond BF16 too: precision parity with BF16 against FP32, run by run (module docstring)
        parity = [precision_parity(s[ENGINE]["worst"], s["bf16"]["worst"]) for s in runs]
        to_bf16 = [s[ENGINE + "~bf16"]["worst"] for s in runs]
        assert max(parity) <= BEYOND_BF16, (variant, scale, "1 - cos over BF16's", parity, "vs fp32: fp8", fp8,
                                            "bf16", [s["bf16"]["worst"] for s in runs], "fp8 vs bf16", to_bf16)
        return
    assert min(fp8) >= 0.995, (variant, scale, fp8, bf16)
