"""Capture a CUDA graph with Python's garbage collector held off.

Why: torch.cuda.graph no longer runs gc.collect() before a capture (torch >= 2.5 does it only under
torch.compiler.config.force_cudagraph_gc). A reference cycle of a dead object -- a policy whose constructor
raised halfway, a frontend dropped by its owner -- can then be collected *during* the capture, triggered by
any allocation the capture makes. Its finalizers free pinned host buffers and CUDA events, which are not
capturable operations: the capture is invalidated ("operation failed due to a previous error during capture"),
and the failure shows up in whichever kernel comes next. The GPU suite hit such an invalidated capture once
(2026-11-27), order-dependent, after tests whose policy constructors raise; this is the likely cause, not a
confirmed one (test/gpu/test_cuda_graph.py shows the mechanism). So: collect first, and keep the collector off
while capturing (a capture allocates only through the caching allocator's graph pool, so nothing piles up).
"""
from __future__ import annotations

import gc
from typing import Callable

import torch


def capture_graph(fn: Callable[[], None], stream: torch.cuda.Stream) -> torch.cuda.CUDAGraph:
    """A CUDA graph of fn() captured on `stream`; dead objects are collected before, none during."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            fn()
    finally:
        if enabled:
            gc.enable()
    return g


def replay_times_ms(replay: Callable[[], None], stream: torch.cuda.Stream, n: int) -> list[float]:
    """Device time of each of `n` back-to-back calls of `replay` (a graph replay), in ms, from CUDA events recorded on
    `stream` around each call: what the benchmarks and the replay-cost tests compare (host time would add launch
    jitter of the measuring process)."""
    start = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        start[i].record(stream)
        replay()
        end[i].record(stream)
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(start, end)]
