"""Warm L2 with the weights the next kernel of the chain will stream, from the kernel before it (issue 17).

Why: in the expert's flow steps every GEMM is an M = 50 weight stream (2-8 MB of FP8), and the chain runs at ~19 %
of the card's streaming rate (H100, docs/kernel_fusion.md): each kernel waits for its own weights from HBM while
the memory system idles between kernels. A kernel that reads its weights from L2 instead of HBM pays L2 latency
and L2 bandwidth. So each expert GEMM can ask L2 for the weights of the next GEMM in the chain while it runs:
`cp.async.bulk.prefetch.L2.global` (sm90 and newer) hands a byte range to the copy engine and returns at once; no
register, shared memory or barrier holds it, and the data is never read here.

What was tried before and lost (kernels/triton/launch.py): a kernel prefetching its *own* weight slab before its
PDL wait (12.93 vs 12.33 ms, H100), and loading it before the wait (11.70 vs 11.44 ms). Both only start once the
kernel's programs are resident, which under PDL is when the predecessor's programs leave (their ~100 KB of shared
memory a program leaves no room), so they bought no lead time. Here the lead time is the issuing kernel's whole
run and whatever runs between it and the consumer (an attention or a norm).

Contract: `prefetch` operands are hints. They never change a result (the GPU suite checks bit identity with and
without), need no alignment from the caller (`prefetch_operand` trims to the 16-byte granules the instruction
wants) and are ignored under TRITON_INTERPRET, which has no copy engine to ask.
A kernel takes up to RANGES ranges (the next GEMM's weights; for the expert's qkv also its layer's prefix K and V,
which the attention after it reads); each is split evenly over the issuing kernel's programs, and one thread of
each program issues its share in pieces of at most PIECE bytes.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

__all__ = ["PIECE", "RANGES", "l2_prefetch_ranges", "l2_prefetch_share", "prefetch_operand", "prefetch_operands"]

# bytes one prefetch instruction asks for: a program's share of the largest next weight (gate+up, 8 MB over 128
# programs) is 64 KB, so one or two instructions a program
PIECE = tl.constexpr(32768)
# ranges a kernel can be asked to warm: its PF0, PB0, PF1, PB1, PF2, PB2 arguments
RANGES = 3


def prefetch_operand(t: torch.Tensor | None, like: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(uint8 tensor starting 16-byte aligned, bytes to prefetch: a multiple of 16) for one of a kernel's PFi / PBi
    argument pairs; (`like`, 0) when there is nothing to prefetch or the kernel is interpreted."""
    if t is None:
        return like, 0
    if not t.is_contiguous():
        raise ValueError(f"prefetch: the range to warm must be one contiguous tensor, got strides {t.stride()}")
    if t.device != like.device:
        raise ValueError(f"prefetch: the range is on {t.device}, the kernel runs on {like.device}")
    if os.environ.get("TRITON_INTERPRET") == "1":   # checked above all the same, so CPU tests catch a bad range
        return like, 0
    flat = t.reshape(-1).view(torch.uint8)
    skip = (-flat.data_ptr()) % 16
    n = (flat.numel() - skip) // 16 * 16 if flat.numel() > skip else 0
    return (flat[skip:], n) if n else (like, 0)


def prefetch_operands(prefetch, like: torch.Tensor) -> list:
    """[PF0, PB0, PF1, PB1, PF2, PB2] kernel arguments for `prefetch`: None, a tensor, or up to RANGES tensors."""
    ts = [] if prefetch is None else [prefetch] if isinstance(prefetch, torch.Tensor) else list(prefetch)
    if len(ts) > RANGES:
        raise ValueError(f"prefetch: at most {RANGES} ranges a kernel, got {len(ts)}")
    out = []
    for t in ts + [None] * (RANGES - len(ts)):
        out += prefetch_operand(t, like)
    return out


@triton.jit
def _bulk_prefetch_l2(addr, size):
    """One `cp.async.bulk.prefetch.L2.global` of `size` bytes at `addr`, issued by thread 0 of the program only
    (Triton evaluates a scalar in every thread)."""
    tl.inline_asm_elementwise(
        "{ .reg .pred p; .reg .b32 t; mov.u32 t, %tid.x; setp.eq.u32 p, t, 0; "
        "@p cp.async.bulk.prefetch.L2.global [$1], $2; mov.u32 $0, 0; }",
        "=r,l,r", [addr, size], dtype=tl.int32, is_pure=False, pack=1)


@triton.jit
def l2_prefetch_share(PF, PF_BYTES, pid, nprog):
    """Program `pid` of `nprog` asks L2 for its share of the PF_BYTES bytes at PF (16-byte aligned, PF_BYTES a
    multiple of 16: prefetch_operand's result): consecutive ranges of ceil(PF_BYTES / nprog) bytes, rounded up to
    16, in pieces of at most PIECE bytes."""
    share = tl.cdiv(tl.cdiv(PF_BYTES, nprog), 16) * 16
    start = pid * share
    end = tl.minimum(start + share, PF_BYTES)
    for off in range(start, end, PIECE):
        _bulk_prefetch_l2(PF + off, tl.minimum(end - off, PIECE))


@triton.jit
def l2_prefetch_ranges(PF0, PB0, PF1, PB1, PF2, PB2, pid, nprog):
    """l2_prefetch_share of each of the RANGES ranges (an empty one issues nothing)."""
    l2_prefetch_share(PF0, PB0, pid, nprog)
    l2_prefetch_share(PF1, PB1, pid, nprog)
    l2_prefetch_share(PF2, PB2, pid, nprog)
