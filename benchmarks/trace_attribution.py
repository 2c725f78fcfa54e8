"""Critical-path attribution of one graph replay's kernel trace (benchmarks/critical_path.py), kept free of torch and
Triton so the CPU suite tests it on synthetic traces (test/unit/test_trace_attribution.py).

A kernel is (name, start_us, end_us, stream). Under programmatic dependent launch a kernel starts while its
predecessor still runs, so durations overlap and their sum says nothing; kernel *end* times stay in stream order,
and end(k) - end(k-1) on one stream is what kernel k added to that stream's critical path.

Two regions of a Pi0.5 replay:
- the flow steps after step 0: one stream, from the end of step 0's flow kernel on (per step and per family);
- the prefix (SigLIP, projector, Gemma prefix and its KV): the stream of the replay's first kernel, up to the end of
  step 0's flow kernel. With the step-0 overlap, step 0's own kernels run on a second stream beside it; they are
  counted apart, so the prefix table is the prefix's own chain (issue 17: what the prefix spends beyond its GEMMs).
"""
from __future__ import annotations

import statistics
from collections import defaultdict

# the kernel that ends a flow step: the seam kernel (default) or the split-K flow kernel (seam-pieces)
FLOW_KERNELS = ("_flow_boundary_kernel", "_linear_flow_kernel")
GEMM = "cublas/cutlass GEMM"


def family(name: str) -> str:
    """A short kernel-family name (Triton kernels keep their function name; cuBLAS/cutlass names are long)."""
    for key in ("_norm_row_kernel", "_gemm_rope_qkv_kernel", "_mqa_partial", "_mqa_merge", "_gemm_splitk_kernel",
                "_gemm_geglu_kernel", *FLOW_KERNELS, "_time_embedding_kernel", "_eltwise_kernel"):
        if key in name:
            return key.strip("_")
    if "gemm" in name.lower() or "cutlass" in name.lower() or "sm90" in name:
        return GEMM
    return name[:60]


def family_table(rows, per: float = 1.0) -> dict:
    """rows: (family, critical_us, duration_us) -> {family: calls, critical us (each divided by `per`), medians},
    the largest critical share first."""
    fam = defaultdict(list)
    for f, crit, dur in rows:
        fam[f].append((crit, dur))
    return {f: {"calls_per_step": len(v) / per,
                "critical_us_per_step": sum(d for d, _ in v) / per,
                "median_critical_us": statistics.median(d for d, _ in v),
                "median_duration_us": statistics.median(d for _, d in v)}
            for f, v in sorted(fam.items(), key=lambda kv: -sum(d for d, _ in kv[1]))}


def attribute(ks) -> dict:
    """Per-step times and the per-family critical-path share of the flow steps after step 0, and of the prefix."""
    ks = sorted(ks, key=lambda k: k[2])
    flow_ends = [e for n, _, e, _ in ks if any(f in n for f in FLOW_KERNELS)]
    t0 = min(s for _, s, _, _ in ks)
    out = {"replay_span_us": max(e for _, _, e, _ in ks) - t0, "kernels": len(ks),
           "step0_end_us": flow_ends[0] - t0 if flow_ends else None,
           "step_us": [b - a for a, b in zip(flow_ends, flow_ends[1:])]}
    if not flow_ends:
        return out
    out["prefix"] = attribute_prefix(ks, t0, flow_ends[0])
    if len(flow_ends) < 2:
        return out
    rows, prev = [], flow_ends[0]
    for n, s, e, _ in ks:
        if e <= flow_ends[0]:
            continue
        rows.append((family(n), e - prev, e - s))
        prev = e
    out["per_step_family"] = family_table(rows, per=len(flow_ends) - 1)
    return out


def attribute_prefix(ks, t0: float, step0_end: float) -> dict:
    """The prefix stream's chain up to step 0's end: its length, its kernels by family (critical us, calls), the
    GEMMs' share, and how many kernels ran beside it on other streams (step 0 with the overlap)."""
    first = min(ks, key=lambda k: k[1])
    stream = first[3]
    rows, prev, side = [], t0, 0
    for n, s, e, st in ks:
        if e > step0_end:
            continue
        if st != stream:
            side += 1
            continue
        rows.append((family(n), e - prev, e - s))
        prev = e
    table = family_table(rows)
    gemm = table.get(GEMM, {}).get("critical_us_per_step", 0.0)
    return {"stream": stream, "chain_us": prev - t0, "kernels": len(rows), "side_kernels": side,
            "gemm_critical_us": gemm, "per_family": table}
