"""Quantization to e4m3 inside the catalogue's epilogues: multiply by the scale's reciprocal, never divide.

Why: `tl.math.div_rn` (PTX div.rn.f32, the correctly rounded division) per element made the expert's
gate+up+GeGLU GEMM 1.3-2.4 us slower per call than the same kernel writing bf16 (H100, PDL chain of 36 calls,
benchmarks/gemm_designs.py --quick, 2026-11-27): 6.89 vs 5.63 us (16-column tiles), 7.82 vs 5.40 us (32).
Multiplying by RN(1 / scale), computed once per program right after the PDL wait so its load overlaps the
main work, costs nothing measurable. The result can differ from RN(y / scale) by an fp32 ulp, which moves an
e4m3 rounding only when y / scale lies within that ulp of a rounding boundary; the torch twins
(kernels/reference.py) quantize the same way, so kernel and twin still agree exactly.
"""
import triton
import triton.language as tl

__all__ = ["e4m3_rcp", "e4m3_range"]


@triton.jit
def e4m3_rcp(SCALE, QUANT: tl.constexpr = True):
    """RN(1 / scale) of the per-tensor scale at SCALE (one correctly rounded division per thread); 1.0 without
    a load when QUANT is off, so a kernel with an optional FP8 output takes its reciprocal in one line."""
    rcp = 1.0
    if QUANT:
        rcp = tl.math.div_rn(1.0, tl.load(SCALE))
    return rcp


@triton.jit
def e4m3_range(y, rcp):
    """y / scale, as y * rcp, clamped to e4m3's finite range (the store's cast then rounds to nearest even)."""
    return tl.minimum(tl.maximum(y * rcp, -448.0), 448.0)
