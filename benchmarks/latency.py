"""Pi0.5 latency on a GPU: full-size random weights, graph replay and end-to-end predict, vs eager BF16.

For each (views, horizon): load (weight cache warm after the first), first predict (= calibrate + capture),
then >= 200 graph replays timed with CUDA events (device time, no host I/O) and >= 200 end-to-end `predict`
calls timed on the host (uint8 images + state in -> unnormalized actions out, pinned buffers). In the same
process, on the same card: the eager BF16 baseline (the reference model in bf16, same inputs). Optionally a
per-kernel breakdown of one replay (torch.profiler). Prints a markdown table.

--prompt-buckets: the replay of every prompt-length bucket's graph (models/pi05/prompt_buckets.py), each on the same
inputs -- at openpi's default 200 slots, `--max-token-len 200 --prompt-buckets` gives the 64 / 128 / 200-slot
replays of one policy side by side. --count-kernels: the kernels per replay of each timed graph, read from its DOT
dump (runtime/graph.py; the graphs are captured with their structure kept, host memory only).

    python3 benchmarks/latency.py --views 1 2 3 --horizons 10 50 --profile
    python3 benchmarks/latency.py --max-token-len 200 --prompt-buckets --count-kernels --no-baseline
"""
from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flash_rt  # noqa: E402
from flash_rt.models.pi05.oracle import ReferenceOracle, cosine64  # noqa: E402
from flash_rt.testing.full_size import build_full_checkpoint  # noqa: E402


# named frontend-option sets for A/B runs in one process (--variants); "prev-default" is the default before
# 2026-11-27 (no split-K, no PDL, no step-0 overlap) except that action_out + Euler step is the fused kernel
VARIANTS = {
    "default": {},
    "prev-default": {"fused_expert_gemms": ("rope_qkv", "geglu"), "programmatic_launch": False,
                     "overlap_first_step": False},
    "no-pdl": {"programmatic_launch": False},
    "no-overlap": {"overlap_first_step": False},
    "fast-accum": {"fast_accum": True},
    "fast-accum-gu": {"fast_accum": ("gu_w",)},       # only the gate+up GEMMs (K = 2048): the default
    "exact": {"fast_accum": False},
    "no-splitk": {"fused_expert_gemms": ("rope_qkv", "geglu")},
    # decoder attention with fewer key splits than the default 5: no / less merge work, longer key loops
    # (both slower on an H100, docs/benchmarks.md)
    "attn-1split": {"attention_tiles": {"decoder": {"max_split_keys": None, "target_programs": 25}}},
    "attn-1split-bn128": {"attention_tiles": {"decoder": {"max_split_keys": None, "target_programs": 25,
                                                          "block_n": 128}}},
    "attn-1split-bm32": {"attention_tiles": {"decoder": {"max_split_keys": None,
                                                         "block_m": 32, "target_programs": 13, "num_warps": 8}}},
    "attn-2split": {"attention_tiles": {"decoder": {"max_split_keys": None, "target_programs": 50}}},
    "attn-2split-bm32": {"attention_tiles": {"decoder": {"max_split_keys": None,
                                                         "block_m": 32, "target_programs": 26, "num_warps": 8}}},
    # more / fewer key splits now that the merge pass runs on 8 warps (default: 25 row tiles x 5 splits)
    "attn-10split": {"attention_tiles": {"decoder": {"max_split_keys": None, "target_programs": 264}}},
    "attn-3split": {"attention_tiles": {"decoder": {"max_split_keys": None, "target_programs": 75}}},
    # at openpi's 200 prompt slots the decoder has 784 keys (2 views): the rule gives 5 splits of 192 keys (3 key
    # blocks a program); 32-key blocks give 5 splits of 160, 7 splits 128 keys (175 programs)
    "attn-bn32": {"attention_tiles": {"decoder": {"block_n": 32}}},
    "attn-7split": {"attention_tiles": {"decoder": {"max_split_keys": None, "target_programs": 175}}},
    # the key-split rule before the sixteenth session (splits rounded up past the SM count), at 1-3 views, 200 slots:
    # the decoder's 6 splits at 3 views (150 programs) and the prefix's 3 at 1 view (174); the same splits elsewhere
    "prev-splits": {"attention_tiles": {"decoder": {"target_programs": 150, "max_split_keys": None},
                                        "prefix": {"target_programs": 174}}},
    # the decoder's splits before the seventeenth session: within the SMs rounded up, no bound on the keys a split
    # (200 slots: 5 splits of 192 keys at 2 views, 6 of 192 at 3), against the default's 128 keys (7 and 9 splits)
    "attn-keys192": {"attention_tiles": {"decoder": {"target_programs": 150, "max_split_keys": None}}},
    # 32-row decoder tiles (13 row tiles: half the K/V re-reads of the 25 16-row tiles) in 7 splits of 128 keys at 2
    # views (91 programs), 6 of 192 at 3
    "attn-bm32-7split": {"attention_tiles": {"decoder": {"max_split_keys": None,
                                                         "block_m": 32, "num_warps": 8, "target_programs": 91}}},
    # qkv + RoPE in 32-row programs of 16-column pairs: 160 programs (2 row tiles x 80 column pairs), against the
    # table before the eighteenth session (qkv-bn16: 80 programs)
    "qkv-bm32": {"gemm_tiles": {"rope_qkv": {"block_m": 32, "block_n": 16}}},
    # qkv + RoPE in 8-column pairs, one 16-column MMA a program (kernels/triton/gemm_fused._fp8_pair_mainloop): 160
    # programs of 16 KB of weights; the hopper table's since the eighteenth session (0.985x at 2 views, 200 slots).
    # qkv-bn16: the table before, 16-column pairs, 80 programs of 32 KB; qkv-bn8-w4: the 8-column pairs on 4 warps
    "qkv-bn8": {"gemm_tiles": {"rope_qkv": {"block_n": 8}}},
    "qkv-bn16": {"gemm_tiles": {"rope_qkv": {"block_n": 16}}},
    "qkv-bn8-w4": {"gemm_tiles": {"rope_qkv": {"block_n": 8, "warps": 4}}},
    # expert gate+up GEMM on pointer loads (16-column tiles, 48 KB shared memory) instead of TMA tiles
    "geglu-ptr": {"gemm_tiles": {"geglu": {"tma": False, "block_n": 16, "block_k": 128}}},
    "geglu-tma-bn16": {"gemm_tiles": {"geglu": {"block_n": 16}}},
    "geglu-s3": {"gemm_tiles": {"geglu": {"stages": 3}}},   # 96 KB of shared memory instead of 128 KB
    "qkv-tma": {"gemm_tiles": {"rope_qkv": {"tma": True, "block_n": 16, "stages": 4, "warps": 4}}},
    # 8 warps (two warpgroups) for the split-K o / down and the gate+up GEMMs instead of 4, as the row kernels gained
    "splitk-w8": {"gemm_tiles": {"splitk": {"warps": 8}}},
    "geglu-w8": {"gemm_tiles": {"geglu": {"warps": 8}}},
    # prefix attention (72 programs of 64 rows, 4 warps, on 132 SMs by default): 144 programs of 32 rows, 2 or 3
    # key splits (all slower in the model, docs/benchmarks.md)
    "prefix-w8": {"attention_tiles": {"prefix": {"num_warps": 8}}},    # the default before 2026-11-27 (4th)
    "prefix-bm32": {"attention_tiles": {"prefix": {"block_m": 32}}},
    "prefix-2split": {"attention_tiles": {"prefix": {"target_programs": 144}}},   # 144 programs
    "prefix-bm128": {"attention_tiles": {"prefix": {"block_m": 128, "num_warps": 8}}},
    # SigLIP attention tiles (64 rows x 128 keys, 8 warps: 2 views x 16 heads x 4 = 128 programs; at 3 views the
    # rule mha_block_m picks 128 rows, 96 programs instead of 192 on an H100's 132 SMs)
    "siglip-bm128": {"attention_tiles": {"siglip": {"block_m": 128}}},
    "siglip-bm64": {"attention_tiles": {"siglip": {"block_m": 64}}},
    "siglip-bn64-w4": {"attention_tiles": {"siglip": {"block_n": 64, "num_warps": 4}}},
    # prefix GEMMs as the transposed problem W @ act.T (the default: down only)
    "transpose-none": {"transposed_gemms": ()},
    "transpose-down-o": {"transposed_gemms": ("down_w", "o_w")},
    "transpose-down-gu": {"transposed_gemms": ("down_w", "gu_w")},   # + gate+up, read by the transposing geglu
    "seam-pieces": {"fused_flow_boundary": False},    # the seam between flow steps as 4 kernels (before)
    "unfused": {"fused_expert_gemms": (), "programmatic_launch": False, "overlap_first_step": False,
                "fused_flow_boundary": False},
    # per-tick inputs read by the graph in place from pinned host memory (Thor's default) vs staged copies
    "zero-copy": {"zero_copy_io": True},
    "staged": {"zero_copy_io": False},
    "overlap": {"overlap_first_step": True},
    # prompt-length buckets (the default since the eleventh session: 64 and 128 slots below max_token_len, exact layout)
    "buckets": {"prompt_buckets": True},
    "buckets-off": {"prompt_buckets": False},
    "buckets-compact": {"prompt_buckets": True, "prompt_bucket_layout": "compact"},
    # every 16 slots up to 128, then 160: the replay-vs-slots curve, and what a real ~70-token prompt (state tokens
    # included) gains from an 80-slot bucket over the 128 one
    "buckets-fine": {"prompt_buckets": (64, 80, 96, 112, 128, 160)},
    # the FP8 outlier remedy off (default since the eleventh session: BF16 at the blocks holding flagged sites; on a
    # checkpoint where nothing is flagged the two are the same engine), and the defaults before the eleventh session
    "plain-fp8": {"bf16_outlier_sites": False},
    "tenth-defaults": {"bf16_outlier_sites": False, "prompt_buckets": False},
}


def triton_version() -> str:
    import triton
    return triton.__version__


def pct(x, q):
    return float(np.percentile(np.asarray(x), q))


def time_replays(fe, n, slots=None):
    start = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    end = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for i in range(n):
        start[i].record(fe.stream)
        fe.replay_only(slots)
        end[i].record(fe.stream)
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(start, end)]


def time_predict(pol, images, state, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        pol.predict(images, state)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def time_baseline(oracle, host, n):
    ms = []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        oracle.model_space(host)
        torch.cuda.synchronize()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def profile_replay(fe, path):
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fe.replay_only()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        dt = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        if dt > 0:
            rows.append((e.key, e.count, dt / 1e3))
    rows.sort(key=lambda r: -r[2])
    total = sum(r[2] for r in rows)
    lines = ["| kernel | calls | ms | % |", "|---|---|---|---|"]
    lines += [f"| {k[:90]} | {c} | {t:.3f} | {100 * t / total:.1f} |" for k, c, t in rows[:30]]
    lines.append(f"| **total (sum of kernel time)** | {sum(r[1] for r in rows)} | {total:.3f} | 100 |")
    Path(path).write_text("\n".join(lines) + "\n")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--views", type=int, nargs="+", default=[2])
    ap.add_argument("--horizons", type=int, nargs="+", default=[50])
    ap.add_argument("--max-token-len", type=int, default=64)
    ap.add_argument("--precision", default="fp8")
    ap.add_argument("--hardware", nargs="+", default=["auto"],
                    help="cells to time, one after another in this process: auto (this GPU's own), hopper, thor, "
                         "rtx_sm120. A cell other than the GPU's own runs by override: label such numbers "
                         "'<card>, <target> path by override' (the rtx_sm120 lowering needs TRITON_OVERRIDE_ARCH=sm120)")
    ap.add_argument("--replays", type=int, default=200)
    ap.add_argument("--baseline-runs", type=int, default=10)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--fast-accum", action="store_true",
                    help="cuBLASLt FP8 fast accumulation on every GEMM (the frontend default: prefix gate+up only)")
    ap.add_argument("--fused", choices=("default", "off", "qkv", "all", "splitk", "ab"), default="default",
                    help="expert fused GEMM epilogues: the frontend default, none, qkv+RoPE, qkv+RoPE and "
                         "gate+up+GeGLU, all + split-K o/down, or ab = off, all and splitk in one process")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=None,
                    help="named frontend-option sets run one after another in this process (overrides --fused): "
                         + "; ".join(f"{k} = {v}" for k, v in VARIANTS.items()))
    ap.add_argument("--prompt-buckets", action="store_true",
                    help="also time every prompt-length bucket's graph (replay P50 / P99 per bucket's slots)")
    ap.add_argument("--count-kernels", action="store_true",
                    help="kernels per replay of the timed graph(s), from the CUDA graph's DOT dump")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="frt_bench_"))
    # the generated checkpoint (6.7 GB) and weight caches: a few runs on one machine filled its 64 GB disk
    atexit.register(shutil.rmtree, work, True)
    t0 = time.perf_counter()
    ckpt = Path(args.ckpt) if args.ckpt else build_full_checkpoint(work / "ckpt", device="cuda")[0]
    print(f"checkpoint ready in {time.perf_counter() - t0:.1f} s ({torch.cuda.get_device_name(0)})", flush=True)
    rng = np.random.default_rng(0)
    state = rng.uniform(-1, 1, 8)
    prompt = "pick up the red block and put it in the blue bowl on the left side of the table"
    results, baseline_oracle = [], None
    named = {"off": (), "qkv": ("rope_qkv",), "all": ("rope_qkv", "geglu"), "splitk": ("rope_qkv", "geglu", "splitk")}
    if args.variants:
        variants = [(name, VARIANTS[name]) for name in args.variants]
    else:
        variants = [("default", {})] if args.fused == "default" else [
            (k, {"fused_expert_gemms": named[k]}) for k in (("off", "all", "splitk") if args.fused == "ab"
                                                           else (args.fused,))]
    runs = ((hw, v, h, x) for hw in args.hardware for v in args.views for h in args.horizons for x in variants)
    for hw, v, h, (vname, opts) in runs:
        gc.collect()  # the previous policy (reference cycles) must be gone before its memory is measured
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        pol = flash_rt.load_model(ckpt, hardware=hw, precision=args.precision, num_views=v,
                                  action_horizon=h, max_token_len=args.max_token_len, cache_dir=work / "cache",
                                  **{**({"fast_accum": True} if args.fast_accum else {}),
                                     **({"prompt_buckets": True} if args.prompt_buckets else {}), **opts})
        t_load = time.perf_counter() - t0
        if args.count_kernels:
            pol.frontend.graph_debug = True   # before the first predict, which captures
        images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(v)]
        t0 = time.perf_counter()
        pol.predict(images, state, prompt)
        t_first = time.perf_counter() - t0
        fe = pol.frontend
        mem_gb = torch.cuda.max_memory_allocated() / 2**30
        n_tok = fe.host.n_tokens
        for _ in range(20):
            fe.replay_only()
        rep = time_replays(fe, args.replays)
        bucket = fe.buckets.active.slots
        by_bucket = {}
        if args.prompt_buckets:   # every bucket's graph on the same inputs (the tokens fit them all: masked tail)
            for slots in fe.buckets.slots:
                for _ in range(20):
                    fe.replay_only(slots)
                r = time_replays(fe, args.replays, slots)
                by_bucket[slots] = {"replay_p50": pct(r, 50), "replay_p99": pct(r, 99)}
                if args.count_kernels:
                    by_bucket[slots]["kernels"] = fe.kernel_count(slots).get("KERNEL", 0)
        kernels = fe.kernel_count().get("KERNEL", 0) if args.count_kernels else None
        e2e = time_predict(pol, images, state, args.replays)
        fused = "+".join(pol.frontend.fused_expert_gemms) or "none"
        row = dict(hardware=pol.hardware, views=v, horizon=h, variant=vname, fused=fused, pdl=fe.programmatic_launch, tokens=n_tok, max_token_len=args.max_token_len,
                   bucket=bucket, buckets=list(fe.buckets.slots), bucket_layout=fe.prompt_bucket_layout,
                   bucket_extra_mib=fe.buckets.extra_bytes() / 2**20, kernels=kernels,
                   replay_by_bucket={str(k): x for k, x in by_bucket.items()},
                   replay_p50=pct(rep, 50), replay_p99=pct(rep, 99), e2e_p50=pct(e2e, 50), e2e_p99=pct(e2e, 99),
                   load_s=t_load, first_predict_s=t_first, weight_cache=fe.weight_cache_status,
                   calibration=fe.calibration_info.get("source"), gpu_mem_gb=mem_gb)
        if args.profile and v == 2 and h == 50:
            lines = profile_replay(fe, out / f"profile_v2_h50_{vname}.md")
            print("\n".join(lines), flush=True)
        if not args.no_baseline:
            if baseline_oracle is None:
                baseline_oracle = ReferenceOracle.for_policy(pol, device="cuda", dtype=torch.bfloat16)
            base = time_baseline(baseline_oracle, fe.host, args.baseline_runs)
            row["baseline_p50"] = pct(base, 50)
            row["speedup_vs_bf16_eager"] = row["baseline_p50"] / row["replay_p50"]
            ref_bf16 = baseline_oracle.model_space(fe.host)
            row["cos_vs_bf16_eager"] = cosine64(fe.host.model_out, ref_bf16)
        results.append(row)
        print(json.dumps(row), flush=True)
        del pol, fe
    (out / "latency.json").write_text(json.dumps(results, indent=1))
    override = os.environ.get("TRITON_OVERRIDE_ARCH")
    print(f"\n{torch.cuda.get_device_name(0)}, torch {torch.__version__}, triton {triton_version()}, "
          f"{args.precision}, {args.replays} replays, max_token_len {args.max_token_len}"
          + (f", TRITON_OVERRIDE_ARCH={override}" if override else ""))
    print("| cell | views | horizon | variant | fused | PDL | tokens | bucket | replay P50 / P99 ms |"
          + (" kernels |" if args.count_kernels else "")
          + " predict P50 / P99 ms | eager BF16 P50 ms | speedup | load s | 1st predict s | GPU GB |")
    print("|---|---|---|---|---|---|---|---|---|" + ("---|" if args.count_kernels else "") + "---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['hardware']} | {r['views']} | {r['horizon']} | {r['variant']} | {r['fused']} | {'on' if r['pdl'] else 'off'} | "
              f"{r['tokens']} | {r['bucket']} of {r['buckets']} | {r['replay_p50']:.2f} / {r['replay_p99']:.2f} | "
              + (f"{r['kernels']} | " if args.count_kernels else "") +
              f"{r['e2e_p50']:.2f} / {r['e2e_p99']:.2f} | {r.get('baseline_p50', float('nan')):.1f} | "
              f"{r.get('speedup_vs_bf16_eager', float('nan')):.1f}x | {r['load_s']:.1f} "
              f"({r['weight_cache']}) | {r['first_predict_s']:.1f} | {r['gpu_mem_gb']:.1f} |")
    if args.prompt_buckets:   # one policy per row, every bucket's graph on the same inputs
        print("\n| cell | views | horizon | variant | layout | bucket slots | replay P50 / P99 ms |"
              + (" kernels |" if args.count_kernels else "") + " MiB beside the full length |")
        print("|---|---|---|---|---|---|---|" + ("---|" if args.count_kernels else "") + "---|")
        for r in results:
            for slots, x in r["replay_by_bucket"].items():
                print(f"| {r['hardware']} | {r['views']} | {r['horizon']} | {r['variant']} | {r['bucket_layout']} | "
                      f"{slots} | {x['replay_p50']:.2f} / {x['replay_p99']:.2f} | "
                      + (f"{x['kernels']} | " if args.count_kernels else "") + f"{r['bucket_extra_mib']:.1f} |")


if __name__ == "__main__":
    main()
