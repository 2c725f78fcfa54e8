"""Capture a CUDA graph with Python's garbage collector held off; count a captured graph's kernel nodes.

Why the collector: torch.cuda.graph no longer runs gc.collect() before a capture (torch >= 2.5 does it only under
torch.compiler.config.force_cudagraph_gc). A reference cycle of a dead object -- a policy whose constructor
raised halfway, a frontend dropped by its owner -- can then be collected *during* the capture, triggered by
any allocation the capture makes. Its finalizers free pinned host buffers and CUDA events, which are not
capturable operations: the capture is invalidated ("operation failed due to a previous error during capture"),
and the failure shows up in whichever kernel comes next. The GPU suite hit such an invalidated capture once
(2026-11-27), order-dependent, after tests whose policy constructors raise; this is the likely cause, not a
confirmed one (test/gpu/test_cuda_graph.py shows the mechanism). So: collect first, and keep the collector off
while capturing (a capture allocates only through the caching allocator's graph pool, so nothing piles up).

Why the count: every graph node costs a launch slot (~3 us a node on Jetson Thor, issue 17), so the kernels per
replay are a number the benchmarks report. A graph captured with debug=True keeps its cudaGraph_t, which
`CUDAGraph.debug_dump(path)` writes as CUDA's DOT (cudaGraphDebugDotPrint); count_dot_nodes reads the node
types from it.
"""
from __future__ import annotations

import collections
import gc
import os
import re
import tempfile
from typing import Callable

import torch


def capture_graph(fn: Callable[[], None], stream: torch.cuda.Stream, debug: bool = False) -> torch.cuda.CUDAGraph:
    """A CUDA graph of fn() captured on `stream`; dead objects are collected before, none during. debug: keep the
    graph's structure for debug_dump (kernel_nodes); host memory only, the replay is the same."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        # debug: keep_graph=True keeps the cudaGraph_t after capture. enable_debug_mode alone no longer does (torch
        # 2.11 on the H200, 2026-12-04: debug_dump then printed "calling debug_dump()" and wrote no node).
        g = torch.cuda.CUDAGraph(keep_graph=True) if debug else torch.cuda.CUDAGraph()
        if debug:
            g.enable_debug_mode()
        with torch.cuda.graph(g, stream=stream):
            fn()
        if debug:
            g.instantiate()   # now, not on the first replay (which would then carry the instantiation)
    finally:
        if enabled:
            gc.enable()
    return g


# a node statement of CUDA's DOT: "graph_<g>_node_<n>"[attributes ... label="..."], its type (KERNEL, MEMCPY, ...)
# the first of these words in the label -- as "{KERNEL\n| {ID | 0 | <name>} ..." (verbose, what torch's
# debug_dump asks for) or "0\nKERNEL\n<name>" (plain); an edge statement has "->" where a node has "["
_NODE = re.compile(r'^[ \t]*"(graph_\d+_node_\d+)"\s*\[([^\]]*?)label\s*=\s*"((?:[^"\\]|\\.)*)"', re.M)
NODE_TYPES = ("KERNEL", "MEMCPY", "MEMSET", "HOST", "GRAPH", "EMPTY", "WAIT_EVENT", "EVENT_RECORD",
              "EXT_SEMAS_SIGNAL", "EXT_SEMAS_WAIT", "MEM_ALLOC", "MEM_FREE", "BATCH_MEM_OP", "CONDITIONAL")
_TYPE = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(sorted(NODE_TYPES, key=len, reverse=True)) + r")(?![A-Za-z0-9_])")


def count_dot_nodes(dot: str) -> collections.Counter:
    """{node type: count} of a CUDA-graph DOT dump (KERNEL, MEMCPY, MEMSET, EVENT_RECORD, WAIT_EVENT, EMPTY, ...;
    OTHER for a label without a known type), each node counted once. Raises ValueError for text without a graph
    node: a format this does not know must not read as an empty graph."""
    seen, out = set(), collections.Counter()
    for m in _NODE.finditer(dot):
        if m.group(1) in seen:
            continue
        seen.add(m.group(1))
        t = _TYPE.search(m.group(3))
        out[t.group(1) if t else "OTHER"] += 1
    if not out:
        raise ValueError("count_dot_nodes: no graph node found; expected CUDA's DOT (cudaGraphDebugDotPrint) with "
                         'statements like "graph_0_node_0"[... label="{KERNEL ..."]')
    return out


def kernel_nodes(graph: torch.cuda.CUDAGraph) -> collections.Counter:
    """Node types of a graph captured with debug=True (KERNEL: the kernels one replay launches)."""
    fd, path = tempfile.mkstemp(suffix=".dot")
    os.close(fd)
    try:
        graph.debug_dump(path)
        with open(path) as f:
            return count_dot_nodes(f.read())
    finally:
        os.unlink(path)


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
