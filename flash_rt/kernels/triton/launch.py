"""Programmatic dependent launch (PDL) for every Triton kernel of the catalogue.

Why: the 10 expert steps are ~1,500 small kernels in a row. Inside a CUDA graph the gap between two kernels is
~0.4 us (H100: 11.78 ms of kernel time in a 12.52 ms replay over 1,974 kernels), and each kernel's own ramp-up
(programs scheduled, first loads issued) adds to its duration. With PDL (sm90+) a kernel is launched while its
predecessor still runs, so its programs are resident and waiting when the predecessor's last wave ends.

Measured (H100, 2 views, horizon 50, A/B in one process, 2026-11-27): with the expert's o/down GEMMs as Triton
split-K, i.e. every expert kernel a Triton one, replay 12.52 -> 12.33 ms; with cuBLASLt o/down in the chain
(which breaks it every other kernel) 12.77 -> 12.84 ms, no gain. Prefetching each GEMM program's weight slab
into L2 before the wait was tried too and lost (12.93 and 13.63 ms), so kernels do nothing before the wait.

Contract, kept by `pdl_enter` at the top of every kernel:
* `griddepcontrol.wait` before the first global memory access: it returns when the previous kernel in the
  stream has completed and its writes are visible. Every kernel waits, unconditionally, so completion stays
  transitive (kernel C reading kernel A's output after B is safe because B could not finish before A).
* `griddepcontrol.launch_dependents` right after the wait: the next kernel may be scheduled once every
  program of this one got that far, i.e. during this kernel's work, never while its predecessor still runs
  (so waiting programs never pile up two deep or starve a multi-wave grid of SMs).
torch and cuBLAS kernels between two Triton kernels launch normally; ordering around them is the ordinary
stream order. CUDA-graph capture keeps the programmatic edges (CUDA >= 12.3).

Off unless asked for: the GPU frontends (option programmatic_launch, on by default) wrap their warm-up and
capture in `programmatic_dependent_launch()`; a later A/B gave 12.33 -> 11.99 ms (docs/benchmarks.md).
Each kernel compiles separately for PDL on and off (launch_pdl is a compile option), and the flag is read at
launch time only, so a captured graph keeps what it was captured with. Under TRITON_INTERPRET (CPU) PDL is
never on: the constexpr branch drops the inline PTX.
"""
from __future__ import annotations

import contextlib

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

__all__ = ["programmatic_dependent_launch", "pdl_enabled", "launch_kw", "pdl_enter"]

_PDL = [False]


@contextlib.contextmanager
def programmatic_dependent_launch(enabled: bool = True):
    """Launch the catalogue's Triton kernels with PDL inside this block (restores the previous setting)."""
    prev = _PDL[0]
    _PDL[0] = bool(enabled)
    try:
        yield
    finally:
        _PDL[0] = prev


def pdl_enabled() -> bool:
    return _PDL[0]


# FP contraction (a*b+c -> fma) pinned on: it is what every measurement and bit-identity test here was made with,
# and Triton 3.9 warns that its default flips to off in 3.10 (TRITON_DEFAULT_FP_FUSION); pinning it keeps the
# numerics the same across the Triton versions the targets need (3.6 on the GPU images, >= 3.7 for Thor)
_FP_FUSION = {"enable_fp_fusion": True}


def launch_kw() -> dict:
    """Keyword arguments for `kernel[grid](...)`: the kernel's PDL constexpr and, when on, Triton's launch_pdl
    option (which adds CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION to the launch); FP fusion pinned."""
    return {"PDL": True, "launch_pdl": True, **_FP_FUSION} if _PDL[0] else {"PDL": False, **_FP_FUSION}


@triton.jit
def pdl_enter(PDL: tl.constexpr):
    """First statement of every kernel (see the module contract)."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()

