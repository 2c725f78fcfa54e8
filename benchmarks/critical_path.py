"""Where one Pi0.5 graph replay spends its time on the critical path, with PDL on (as it runs in production).

Why not the profiler's kernel sums: under programmatic dependent launch a kernel starts while its predecessor
still runs, so kernel durations overlap and their sum says nothing about the replay. Kernel *end* times stay
in stream order, though: end(k) - end(k-1) is what kernel k added to the replay. This script attributes those
end-to-end deltas per kernel family (benchmarks/trace_attribution.py), for the expert steps after step 0 (one
stream) and for the prefix's own stream up to step 0's end (step 0 runs beside it), and gives per-step times from
the ends of the flow-update kernels. A second part measures the floor:
a CUDA graph of N trivial Triton kernels, PDL on and off, i.e. what any kernel boundary costs on this card.
--l2-resident KINDS.. re-captures the graph with every expert layer reading layer 0's weights of those kinds (qkv_w,
o_w, gu_w, down_w; wrong actions, same kernels and shapes): those weights then stay in L2 across the layers, so the
step time it gives is the most that keeping them out of the HBM stream (an L2 prefetch beside the chain) could buy.
Kind `kv` does the same to the KV cache (every layer reads and writes layer 0's rows: the decoder attention's prefix
K/V stay in L2); `all` is the four weights; kinds join with '+'. Measured (H100, fifteenth session, 2 views): all
weights and the KV cache L2-resident give 0.965x of the replay, 515 vs 555 us a step (docs/kernel_fusion.md).
Each step is also set against the weight-streaming floor (issue 17): the bytes one flow step must read
(cuda_forward.flow_step_bytes: expert weights, seam projections, KV cache, modulation) over the median step time
is the step's achieved GB/s, and over --bandwidth (the card's copy rate, measured here by a device-to-device copy
unless given) the floor in us and the fraction of it reached.

    python3 benchmarks/critical_path.py [--variants default no-overlap] [--views 2] [--horizon 50]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import flash_rt  # noqa: E402
from attention_sweep import PDL, graph_us  # noqa: E402
from flash_rt.kernels.triton.launch import launch_kw, pdl_enter  # noqa: E402
from flash_rt.models.pi05.cuda_forward import flow_step_bytes  # noqa: E402
from flash_rt.testing.full_size import build_full_checkpoint  # noqa: E402
from latency import VARIANTS, time_replays  # noqa: E402
from trace_attribution import attribute  # noqa: E402


def kernel_events(fe):
    """(name, start_us, end_us, stream) of every kernel of one replay, sorted by end."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fe.replay_only()
        torch.cuda.synchronize()
    path = Path(tempfile.mkdtemp()) / "trace.json"
    prof.export_chrome_trace(str(path))
    events = json.loads(path.read_text())["traceEvents"]
    shutil.rmtree(path.parent, True)
    ks = [(e["name"], float(e["ts"]), float(e["ts"]) + float(e["dur"]), e.get("args", {}).get("stream", e.get("tid")))
          for e in events if e.get("cat") == "kernel" and e.get("ph") == "X"]
    return sorted(ks, key=lambda k: k[2])


@triton.jit
def _touch_kernel(X, PDL: tl.constexpr):
    """The least a kernel of the catalogue does: PDL handoff, one dependent load and one store."""
    pdl_enter(PDL)
    i = tl.program_id(0)
    tl.store(X + i, tl.load(X + i) + 1.0)


def boundary_floor(programs: int, n: int = 400, pdl: bool = True) -> float:
    """us per kernel of a CUDA graph of n `_touch_kernel`s with `programs` programs each."""
    x = torch.zeros(programs, device="cuda")
    PDL[0] = pdl
    return graph_us(lambda: _touch_kernel[(programs,)](x, **launch_kw()), calls=n)


def copy_bandwidth(nbytes: int = 1 << 30, reps: int = 20) -> float:
    """Bytes per second of a device-to-device copy of nbytes (read + write counted): what streaming can reach."""
    a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    return 2 * nbytes * reps / (start.elapsed_time(end) * 1e-3)


def streaming_floor(step_bytes: dict, step_us: list, bandwidth: float) -> dict:
    """The median flow step against the time its bytes take at `bandwidth` (bytes/s)."""
    med = statistics.median(step_us)
    floor_us = step_bytes["total"] / bandwidth * 1e6
    return {"bytes": step_bytes, "median_step_us": med, "achieved_GBps": step_bytes["total"] / med / 1e3,
            "floor_us": floor_us, "fraction_of_floor": floor_us / med}


EXPERT_WEIGHTS = ("qkv_w", "o_w", "gu_w", "down_w")
CACHES = ("k_cache", "v_cache")


def resident_kinds(arg: str) -> tuple:
    """`--l2-resident` argument -> kinds: names joined by '+', `all` standing for the four expert weights."""
    kinds = []
    for t in arg.split("+"):
        kinds += EXPERT_WEIGHTS if t == "all" else [t]
    unknown = set(kinds) - set(EXPERT_WEIGHTS) - {"kv"}
    if unknown:
        raise SystemExit(f"--l2-resident: unknown {sorted(unknown)}; expected {', '.join(EXPERT_WEIGHTS)}, kv or all")
    return tuple(dict.fromkeys(kinds))


def alias_expert_weights(fe, kinds) -> dict:
    """Point every expert layer's weights (and FP8 weight scales) of `kinds` at layer 0's, in the dicts the
    production context reads, and with `kv` every layer's KV cache at layer 0's (fe.b is the full length's buffers,
    the graph's at max_token_len 64); returns the originals for restore_weights. Only a re-capture makes it take
    effect."""
    saved = {}
    if "kv" in kinds:
        for c in CACHES:
            saved[c] = fe.b[c]
            fe.b[c] = fe.b[c][:1].expand_as(fe.b[c])
    for i in range(1, fe.d.layers):
        for k in kinds:
            if k == "kv":
                continue
            name = f"ex.{i}.{k}"
            saved[name] = (fe.w[name], fe.ws.get(name))
            fe.w[name] = fe.w[f"ex.0.{k}"]
            if name in fe.ws:
                fe.ws[name] = fe.ws[f"ex.0.{k}"]
    return saved


def recapture(fe) -> None:
    """Capture the frontend's graphs again as its first step does: on its stream, under its launch mode (PDL on
    Hopper), without autograd. A capture outside that context launches without PDL (every kernel boundary 1.29
    instead of 0.86 us on an H100): the first run of --l2-resident did that and measured the lost PDL, not L2."""
    with torch.no_grad(), torch.cuda.stream(fe.stream), fe._launch_mode():
        fe._capture()


def restore_weights(fe, saved: dict) -> None:
    for c in CACHES:
        if c in saved:
            fe.b[c] = saved.pop(c)
    for name, (wt, sc) in saved.items():
        fe.w[name] = wt
        if sc is not None:
            fe.ws[name] = sc


def comparison_rows(report: dict) -> list:
    """[(label, replay P50 ms, median step us, {family: critical us per step})] of every trace, in report order."""
    rows = []
    for label, r in report.items():
        fams = r["runs"][-1].get("per_step_family", {})
        rows.append((label, r["replay_p50_ms"], r["streaming_floor"]["median_step_us"],
                     {f: v["critical_us_per_step"] for f, v in fams.items()}))
    return rows


def print_comparison(report: dict) -> None:
    """One table over the traces (the L2-resident bounds beside the default): replay, flow step and each kernel
    family's critical us per step, the first trace's families as columns."""
    rows = comparison_rows(report)
    fams = list(rows[0][3])
    print("\n| trace | replay P50 ms | step us | " + " | ".join(fams) + " |")
    print("|---" * (3 + len(fams)) + "|")
    for label, p50, step, per in rows:
        print(f"| {label} | {p50:.3f} | {step:.0f} | " + " | ".join(f"{per.get(f, 0.0):.1f}" for f in fams) + " |")


def print_families(table: dict, calls: str, critical: str) -> None:
    """A family table of trace_attribution (per flow step, or for the prefix) as markdown."""
    print(f"| family | {calls} | {critical} | median critical us | median duration us |")
    print("|---|---|---|---|---|")
    for f, v in table.items():
        print(f"| {f} | {v['calls_per_step']:.0f} | {v['critical_us_per_step']:.1f} | "
              f"{v['median_critical_us']:.2f} | {v['median_duration_us']:.2f} |")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=["default"])
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--hardware", default="auto", help="the cell to trace (another GPU's cell runs by override)")
    ap.add_argument("--horizon", type=int, default=50)
    ap.add_argument("--max-token-len", type=int, default=64,
                    help="prompt slots (64: every earlier trace; 200: openpi's default, whose 68-token prompt here "
                         "replays the 128-slot bucket)")
    ap.add_argument("--ckpt", default=None, help="a full-size checkpoint (default: generate one)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--l2-resident", nargs="*", default=[], metavar="KINDS",
                    help=f"one more trace per argument, with these expert weight kinds ({', '.join(EXPERT_WEIGHTS)}; "
                         "'all' for the four, 'kv' for the KV cache; joined by '+') shared by every layer, i.e. "
                         "L2-resident: what an L2 prefetch could buy at most")
    ap.add_argument("--bandwidth", type=float, default=None,
                    help="the card's streaming rate in GB/s for the floor (default: measured by a copy)")
    args = ap.parse_args(argv)
    if args.l2_resident and args.max_token_len > 64:
        # above 64 slots the frontend captures one graph per prompt bucket; recapture() re-captures only one
        ap.error("--l2-resident re-captures one graph: run it at --max-token-len 64 (no prompt buckets)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, triton {triton.__version__}")
    print("kernel boundary floor (us per trivial kernel in a graph of 400):")
    for p in (1, 132, 264):
        print(f"  {p:4d} programs: PDL on {boundary_floor(p, pdl=True):.2f}, off {boundary_floor(p, pdl=False):.2f}")
    bandwidth = args.bandwidth * 1e9 if args.bandwidth else copy_bandwidth()
    print(f"streaming rate for the floor: {bandwidth / 1e9:,.0f} GB/s "
          f"({'given' if args.bandwidth else 'device-to-device copy, read + write'})")
    work = Path(tempfile.mkdtemp(prefix="frt_cp_"))
    try:
        ckpt = Path(args.ckpt) if args.ckpt else build_full_checkpoint(work / "ckpt", device="cuda")[0]
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(args.views)]
        state = rng.uniform(-1, 1, 8)
        report = {}
        resident = [resident_kinds(t) for t in args.l2_resident]
        for name in args.variants:
            pol = flash_rt.load_model(ckpt, hardware=args.hardware, precision="fp8", num_views=args.views,
                                      action_horizon=args.horizon, max_token_len=args.max_token_len,
                                      cache_dir=work / "cache",
                                      **VARIANTS[name])
            pol.predict(images, state, "pick up the red block and put it in the blue bowl")
            fe = pol.frontend
            step_bytes = flow_step_bytes(fe.w, fe.b, fe.d)
            for label, kinds in [(name, None)] + [(f"{name}, L2-resident {'+'.join(k)}", k) for k in resident]:
                saved = alias_expert_weights(fe, kinds) if kinds else {}
                if resident:    # every trace of the comparison on a graph captured the same way, the default's too
                    recapture(fe)
                report[label] = trace(fe, label, step_bytes, bandwidth)
                restore_weights(fe, saved)
            del pol, fe
            torch.cuda.empty_cache()
        if len(report) > 1:
            print_comparison(report)
        (out / "critical_path.json").write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(work, True)


def trace(fe, name, step_bytes, bandwidth) -> dict:
    """Replay P50 / P99 of 200 replays, then the critical-path attribution of three traced replays (the last
    printed)."""
    for _ in range(20):
        fe.replay_only()
    ms = sorted(time_replays(fe, 200))
    p50, p99 = ms[len(ms) // 2], ms[int(0.99 * (len(ms) - 1))]
    runs = [attribute(kernel_events(fe)) for _ in range(3)]
    r = runs[-1]
    floor = streaming_floor(step_bytes, r["step_us"], bandwidth)
    print(f"\n## {name}: replay P50 {p50:.3f} ms, P99 {p99:.3f} ms; {r['kernels']} kernels, span "
          f"{r['replay_span_us']:.0f} us, step 0 ends at "
          f"{r['step0_end_us']:.0f} us; steps 1.. (us): {' '.join(f'{x:.0f}' for x in r['step_us'])}")
    sb = floor["bytes"]
    print(f"flow step: {sb['total'] / 1e6:.1f} MB (expert weights {sb['expert_weights'] / 1e6:.1f}, seam "
          f"{sb['seam_weights'] / 1e6:.2f}, KV {sb['kv_cache'] / 1e6:.2f}, modulation "
          f"{sb['modulation'] / 1e6:.2f}) in {floor['median_step_us']:.0f} us = "
          f"{floor['achieved_GBps']:,.0f} GB/s; floor {floor['floor_us']:.0f} us "
          f"({100 * floor['fraction_of_floor']:.1f} % of it reached)")
    print_families(r.get("per_step_family", {}), "calls/step", "critical us/step")
    pre = r.get("prefix")
    if pre:   # the prefix's own chain (step 0 beside it on another stream is counted apart)
        print(f"\nprefix stream: {pre['chain_us']:.0f} us in {pre['kernels']} kernels "
              f"({pre['side_kernels']} beside it on other streams), "
              f"GEMMs {pre['gemm_critical_us']:.0f} us of it")
        print_families(pre["per_family"], "calls", "critical us")
    return {"replay_p50_ms": p50, "replay_p99_ms": p99, "runs": runs, "streaming_floor": floor}


if __name__ == "__main__":
    main()
