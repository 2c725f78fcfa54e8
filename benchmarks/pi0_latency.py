"""Pi0 latency on a GPU (the docs/benchmarks.md Pi0 rows): full-size random weights, 1/2/3 views, horizon 50; graph
replay (CUDA events) and end-to-end predict, and in the same run on the same card the eager BF16 Pi0 reference
(`Pi0Reference` in bf16) on the same inputs: the same-run ratio. Prints one JSON line per cell and a markdown table.

    python3 benchmarks/pi0_latency.py --views 1 2 3 --horizons 50 --hardware hopper
    python3 benchmarks/pi0_latency.py --views 2 --ab no-splitk no-overlap --baseline-runs 0   # same-run A/B

--ab: per cell, more policies with one of latency.py's option sets (AB_VARIANTS), timed against the default in
alternating rounds in the same process: `no-splitk` runs the expert o / down as cuBLASLt GEMMs (Pi0's code before
the ninth session), `overlap` / `no-overlap` the state pass and flow step 0 beside the prefix or after it (on in the
hopper cell since the eleventh session). The A/B also checks that either gives the default's chunk bit for bit on the
same inputs (it reuses the default's calibration cache).
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

import flash_rt  # noqa: E402
from flash_rt.models.pi0.oracle import Pi0Oracle  # noqa: E402
from flash_rt.models.pi05.oracle import cosine64  # noqa: E402
from flash_rt.testing.pi0_checkpoint import build_full_pi0_checkpoint  # noqa: E402
from latency import VARIANTS, pct, time_baseline, time_predict, time_replays, triton_version  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--views", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--horizons", type=int, nargs="+", default=[50])
    ap.add_argument("--hardware", nargs="+", default=["auto"])
    ap.add_argument("--precision", default="fp8")
    ap.add_argument("--replays", type=int, default=200)
    ap.add_argument("--baseline-runs", type=int, default=10)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--ab", nargs="+", default=[], choices=AB_VARIANTS,
                    help="also time these option variants, alternating with the default (same run)")
    args = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="frt_pi0_bench_"))
    atexit.register(shutil.rmtree, work, True)
    t0 = time.perf_counter()
    ckpt = Path(args.ckpt) if args.ckpt else build_full_pi0_checkpoint(work / "ckpt", device="cuda")[0]
    print(f"checkpoint ready in {time.perf_counter() - t0:.1f} s ({torch.cuda.get_device_name(0)})", flush=True)
    rng = np.random.default_rng(0)
    state = rng.uniform(-1, 1, 8)
    prompt = "pick up the red block and put it in the blue bowl"
    results, oracle = [], None
    for hw in args.hardware:
        for v in args.views:
            for h in args.horizons:
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                pol = flash_rt.load_model(ckpt, config="pi0", hardware=hw, precision=args.precision, num_views=v,
                                          action_horizon=h, cache_dir=work / "cache")
                t_load = time.perf_counter() - t0
                images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(v)]
                t0 = time.perf_counter()
                pol.predict(images, state, prompt)
                t_first = time.perf_counter() - t0
                fe = pol.frontend
                for _ in range(20):
                    fe.replay_only()
                rep = time_replays(fe, args.replays)
                e2e = time_predict(pol, images, state, args.replays)
                row = dict(model="pi0", hardware=pol.hardware, views=v, horizon=h, tokens=fe.host.n_tokens,
                           replay_p50=pct(rep, 50), replay_p99=pct(rep, 99), e2e_p50=pct(e2e, 50),
                           e2e_p99=pct(e2e, 99), load_s=t_load, first_predict_s=t_first,
                           gpu_mem_gb=torch.cuda.max_memory_allocated() / 2**30)
                if args.ab:
                    row["ab"] = ab_rounds(pol, args.ab, ckpt, hw, args.precision, v, h, work, images, state,
                                          prompt, args.replays)
                if args.baseline_runs:
                    if oracle is None:
                        oracle = Pi0Oracle(fe.source, fe.cfg, device="cuda", dtype=torch.bfloat16)
                    base = time_baseline(oracle, fe.host, args.baseline_runs)
                    row["eager_bf16_p50"] = pct(base, 50)
                    row["ratio_vs_eager"] = row["eager_bf16_p50"] / row["replay_p50"]
                    row["cos_vs_bf16_eager"] = cosine64(fe.host.model_out, oracle.model_space(fe.host))
                results.append(row)
                print(json.dumps(row), flush=True)
                del pol, fe
    (out / "pi0_latency.json").write_text(json.dumps(results, indent=1))
    print(f"\n{torch.cuda.get_device_name(0)}, torch {torch.__version__}, triton {triton_version()}, "
          f"{args.precision}, {args.replays} replays")
    print("| model | cell | views | horizon | replay P50 / P99 ms | predict P50 / P99 ms | eager BF16 P50 ms | "
          "ratio | GPU GB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        eager = (f"{r['eager_bf16_p50']:.1f} | {r['ratio_vs_eager']:.1f}x" if "eager_bf16_p50" in r else "- | -")
        print(f"| Pi0 | {r['hardware']} | {r['views']} | {r['horizon']} "
              f"| {r['replay_p50']:.2f} / {r['replay_p99']:.2f} | {r['e2e_p50']:.2f} / {r['e2e_p99']:.2f} | {eager} "
              f"| {r['gpu_mem_gb']:.1f} |")
    if args.ab:
        print("\n| cell | views | horizon | variant | replay P50 ms per round | min / default's min | chunk = default's |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            base = min(r["ab"]["default"]["ms"])
            for name, x in r["ab"].items():
                print(f"| {r['hardware']} | {r['views']} | {r['horizon']} | {name} | "
                      f"{' / '.join(f'{t:.3f}' for t in x['ms'])} | {min(x['ms']) / base:.3f} | "
                      f"{x.get('same_bits', '-')} |")


# latency.py's option sets that apply to Pi0's cells (its prompt buckets, say, do not)
AB_VARIANTS = ("no-splitk", "overlap", "no-overlap")


def ab_rounds(pol, names, ckpt, hw, precision, views, horizon, work, images, state, prompt, replays,
              rounds=3) -> dict:
    """{variant: {"ms": replay P50 per round[, "same_bits": chunk equal to the default's]}}, rounds alternating."""
    rng = np.random.default_rng(11)
    noise = rng.standard_normal((horizon, pol.frontend.cfg.action_dim)).astype(np.float32)
    want = pol.predict(images, state, prompt, noise).copy()
    pols, out = {"default": pol}, {"default": {"ms": []}}
    for name in names:
        p = flash_rt.load_model(ckpt, config="pi0", hardware=hw, precision=precision, num_views=views,
                                action_horizon=horizon, cache_dir=work / "cache", **VARIANTS[name])
        got = p.predict(images, state, prompt, noise)   # the default's calibration cache: the same scales
        pols[name], out[name] = p, {"ms": []}
        if name in ("overlap", "no-overlap"):   # the same kernels on the same buffers: must be the same bits
            out[name]["same_bits"] = bool(np.array_equal(got, want))
    for _ in range(rounds):
        for name, p in pols.items():
            out[name]["ms"].append(pct(time_replays(p.frontend, replays), 50))
    return out


if __name__ == "__main__":
    main()
