"""benchmarks/trace_attribution.py on a synthetic replay trace whose critical path is known by construction: a
prefix stream (a GEMM, a norm, a GEMM), step 0 on a second stream beside it, its flow kernel, then two flow steps
of an overlapping (PDL-style) chain."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from trace_attribution import GEMM, attribute, family  # noqa: E402

MAIN, SIDE = 7, 13
GEMM_NAME = "sm90_xmma_gemm_e4m3e4m3_f32_tn_n_tilesize128x128x128"


def trace():
    ks = [
        # the prefix stream: chain ends at 10, 14, 30 (GEMM 10 us, norm 4 us, GEMM 16 us)
        (GEMM_NAME, 0.0, 10.0, MAIN),
        ("_norm_row_kernel_0d1d", 9.0, 14.0, MAIN),
        (GEMM_NAME, 13.0, 30.0, MAIN),
        # step 0 beside it, on the side stream
        ("_gemm_rope_qkv_kernel", 2.0, 8.0, SIDE),
        ("_mqa_partial", 8.0, 20.0, SIDE),
        ("_flow_boundary_kernel", 31.0, 35.0, SIDE),        # step 0 ends at 35
    ]
    t = 35.0
    for _ in range(2):                                     # two steps of 3 kernels: 5 + 3 + 2 = 10 us each
        for name, d in (("_gemm_splitk_kernel", 5.0), ("_norm_row_kernel", 3.0), ("_flow_boundary_kernel", 2.0)):
            ks.append((name, t - 1.0, t + d, MAIN))        # starts before its predecessor ends (PDL)
            t += d
    return ks


def test_families():
    assert family(GEMM_NAME) == GEMM
    assert family("_norm_row_kernel_0d1d2d") == "norm_row_kernel"
    assert family("_mqa_partial") == "mqa_partial"


def test_flow_steps_after_step_0():
    r = attribute(trace())
    assert r["kernels"] == 12 and r["step0_end_us"] == 35.0 and r["replay_span_us"] == 55.0
    assert r["step_us"] == [10.0, 10.0]
    fam = r["per_step_family"]
    assert list(fam) == ["gemm_splitk_kernel", "norm_row_kernel", "flow_boundary_kernel"]
    assert fam["gemm_splitk_kernel"]["critical_us_per_step"] == 5.0
    assert fam["gemm_splitk_kernel"]["median_duration_us"] == 6.0     # PDL: started 1 us early
    assert fam["norm_row_kernel"]["calls_per_step"] == 1.0


def test_the_prefix_chain_is_its_own_stream_and_step_0_is_counted_apart():
    pre = attribute(trace())["prefix"]
    assert pre["stream"] == MAIN and pre["kernels"] == 3 and pre["side_kernels"] == 3
    assert pre["chain_us"] == 30.0 and pre["gemm_critical_us"] == 26.0
    assert pre["per_family"][GEMM]["calls_per_step"] == 2
    assert pre["per_family"]["norm_row_kernel"]["critical_us_per_step"] == 4.0
    assert list(pre["per_family"]) == [GEMM, "norm_row_kernel"]


def test_a_trace_without_flow_kernels_has_no_regions():
    r = attribute([(GEMM_NAME, 0.0, 4.0, MAIN), ("_norm_row_kernel", 3.0, 6.0, MAIN)])
    assert r["step0_end_us"] is None and r["step_us"] == [] and "prefix" not in r
    assert r["replay_span_us"] == pytest.approx(6.0)
