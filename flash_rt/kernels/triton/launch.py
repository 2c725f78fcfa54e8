"""Programmatic dependent launch (PDL) for every Triton kernel of the catalogue.

Why: the 10 expert steps are ~1,500 small kernels in a row, and inside a CUDA graph each boundary costs about
1 us of launch and ramp-up even when the kernel does almost nothing (docs/benchmarks.md). With PDL (sm90+) a
kernel is launched while its predecessor still runs: its programs are resident and waiting when the
predecessor's last wave ends, so the launch latency hides behind work instead of adding to it.

Contract, kept by `pdl_enter` at the top of every kernel:
* `griddepcontrol.wait` before the first global memory access: it returns when the previous kernel in the
  stream has completed and its writes are visible. Every kernel waits, unconditionally, so completion stays
  transitive (kernel C reading kernel A's output after B is safe because B could not finish before A).
* `griddepcontrol.launch_dependents` right after the wait: the next kernel may be scheduled once every
  program of this one got that far, i.e. during this kernel's work, never while its predecessor still runs
  (so waiting programs never pile up two deep or starve a multi-wave grid of SMs).
torch and cuBLAS kernels between two Triton kernels launch normally; ordering around them is the ordinary
stream order. CUDA-graph capture keeps the programmatic edges (CUDA >= 12.3).

What a kernel may do before its wait: read nothing a predecessor could still be writing. It may warm L2
with data no kernel of the forward writes -- the GEMMs' weights (`prefetch_rows_l2`): an M = 50 expert GEMM
spends most of its time streaming 2-8 MB of FP8 weights from HBM, and that stream can run while the previous
kernel finishes. (An L2 prefetch is safe even for data a predecessor writes: L2 is the GPU's point of coherence,
so the prefetch cannot make a later load see stale bytes; only the loads themselves must wait.)

Off by default; a frontend turns it on around its warm-up and capture with `programmatic_dependent_launch()`.
Each kernel compiles separately for PDL on and off (launch_pdl is a compile option), and the flag is read at
launch time only, so a captured graph keeps what it was captured with. Under TRITON_INTERPRET (CPU) PDL is
never on: the constexpr branch drops the inline PTX.
"""
from __future__ import annotations

import contextlib

import triton
import triton.language as tl
from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

__all__ = ["programmatic_dependent_launch", "pdl_enabled", "launch_kw", "pdl_enter", "prefetch_rows_l2"]

_OFF, _WAIT_ONLY, _WITH_PREFETCH = 0, 1, 2
_PDL = [_OFF]


@contextlib.contextmanager
def programmatic_dependent_launch(enabled: bool = True, prefetch: bool = True):
    """Launch the catalogue's Triton kernels with PDL inside this block (restores the previous setting).
    prefetch=False keeps PDL but drops the L2 prefetches before the wait (for A/B measurements)."""
    prev = _PDL[0]
    _PDL[0] = (_WITH_PREFETCH if prefetch else _WAIT_ONLY) if enabled else _OFF
    try:
        yield
    finally:
        _PDL[0] = prev


def pdl_enabled() -> bool:
    return _PDL[0] != _OFF


def launch_kw() -> dict:
    """Keyword arguments for `kernel[grid](...)`: the kernel's PDL constexpr (0 off, 1 wait only, 2 wait and
    prefetch) and, when on, Triton's launch_pdl option (which adds
    CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION to the launch)."""
    return {"PDL": _PDL[0], "launch_pdl": True} if _PDL[0] else {"PDL": 0}


@triton.jit
def pdl_enter(PDL: tl.constexpr):
    """First statement of every kernel (see the module contract)."""
    if PDL:
        gdc_wait()
        gdc_launch_dependents()


@triton.jit
def prefetch_rows_l2(BASE, row0, s_row, ROWS: tl.constexpr, ROW_BYTES: tl.constexpr):
    """Ask L2 for ROWS rows of ROW_BYTES bytes at BASE + (row0 + r) * s_row (a 1-byte element type, e.g. an
    FP8 weight slab), one `prefetch.global.L2` per 128-byte line
    (ROW_BYTES a multiple of 128; ROWS a power of two). Fire and forget: no register holds the data."""
    rows = BASE + (row0 + tl.arange(0, ROWS)).to(tl.int64) * s_row
    for line in tl.static_range(ROW_BYTES // 128):
        tl.inline_asm_elementwise("prefetch.global.L2 [$1]; // dummy $0", "=r,l", [rows + line * 128],
                                  dtype=tl.int32, is_pure=False, pack=1)
