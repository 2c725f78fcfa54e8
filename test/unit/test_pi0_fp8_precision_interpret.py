"""Pi0's FP8 precision gap, caught on the CPU: the micro Pi0's GPU forward under Triton's interpreter (Hopper's tuning
table), the fp8 build against the exact CPU cell, float64 cosine, worst of 2 observations calibrated on themselves.

Why: on an H200 the full-size random Pi0 in all-FP8 reached worst 0.99338 against the 0.995 gate (BF16 0.999996;
Pi0.5 0.998). The cause (models/pi0/precision.py): no broken site -- every site's E4M3 rounding is the ordinary
2.5-3 %, every scale calibrated -- but Pi0's velocity carries that rounding in full (its expert adds each layer to
the residual ungated, Pi0.5's adaRMS gates scale them) and the vision tower and the expert are its largest shares.
The fix: Pi0's fp8 build keeps blocks in BF16 (`bf16_blocks`). Measured here, the numbers the bar separates:
  * all-FP8 (the broken build, bf16_blocks=()):            worst 0.99722
  * vision + expert BF16, prefix FP8:                      worst 0.99975
The bar 0.999 fails the first and passes the second; both are asserted, so the test also says when the bar stops
telling them apart. The micro model is not the full-size one: here the expert's share is as large as the vision
tower's (micro vision-only 0.99808), while at full size the vision tower carries it (H200, 20 observations x 3 runs:
vision-only 0.99716 worst, vision + expert 0.99718, all FP8 0.99338), so the shipped default is ("vision",) and its
gate is the GPU's (benchmarks/pi0_full_precision.py; test_pi0_cuda_forward_interpret.py runs the default build here
against the 0.995 bar).
"""
import pytest

from _interpreter import IN_CHILD, patch_interpreter_float_conversion, run_child

if not IN_CHILD:
    def test_pi0_fp8_precision_under_the_interpreter():
        run_child(__file__)

    def test_an_unknown_bf16_block_is_refused_by_name():
        from flash_rt.errors import InputError
        from flash_rt.frontends.torch.pi0_hopper import Pi0TorchFrontendHopper
        with pytest.raises(InputError, match=r"unknown block\(s\) \['visoin'\]; expected any of"):
            Pi0TorchFrontendHopper("unused", bf16_blocks=("visoin", "expert"))
        with pytest.raises(InputError, match="pass precision='bf16'"):
            Pi0TorchFrontendHopper("unused", bf16_blocks=("vision", "prefix", "expert"))

else:
    from flash_rt.frontends.torch.pi0_hopper import Pi0TorchFrontendHopper as CELL
    from flash_rt.runtime.quant import FP8

    from _pi0_micro import cpu_policy, micro_ckpt, worst_cosine  # noqa: F401 (fixtures)

    assert patch_interpreter_float_conversion(), "this Triton's interpreter cannot narrow floats like the GPU"
    BAR = 0.999

    def worst_fp8_cosine(micro_ckpt, cpu_policy, blocks: tuple) -> float:
        worst, w = worst_cosine(micro_ckpt, cpu_policy, CELL, "fp8", blocks)
        assert [w[n].dtype == FP8 for n in ("vis.0.qkv_w", "proj_w", "llm.0.qkv_w", "ex.0.gu_w")] == [
            "vision" not in blocks, "vision" not in blocks, "prefix" not in blocks, "expert" not in blocks]
        return worst

    def test_bf16_blocks_close_pi0s_fp8_gap(micro_ckpt, cpu_policy):
        fixed = worst_fp8_cosine(micro_ckpt, cpu_policy, ("vision", "expert"))
        broken = worst_fp8_cosine(micro_ckpt, cpu_policy, ())
        print(f"pi0 micro fp8: vision + expert BF16 worst {fixed:.6f}, all-FP8 worst {broken:.6f} (bar {BAR})")
        assert fixed >= BAR, fixed
        assert broken < BAR, f"the bar no longer separates the all-FP8 build ({broken:.6f}); re-measure it"
