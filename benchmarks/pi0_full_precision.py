"""Full-size random-weight Pi0 on a GPU cell: worst cosine (float64, per chunk) against the FP32 reference on the same
inputs and noise over N observations, for the BF16 build and the fp8 build with several `bf16_blocks` choices, plus
the replay latency of each, so the precision gate (FP8 worst >= 0.995, issue 14) and its price are read off one run.
The tiny Pi0's GPU gates live in test/gpu/test_pi0_gpu.py; this is the full-size rung docs/benchmarks.md records.

Variants (`--variants`): bf16; fp8 (the default build: vision + expert in BF16); fp8:all (all FP8, the build that
measured 0.99338); fp8:vision, fp8:expert, fp8:vision+expert (the blocks kept in BF16, models/pi0/precision.py).

    python3 benchmarks/pi0_full_precision.py --obs 20 [--hardware hopper] [--variants fp8 fp8:all bf16]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flash_rt  # noqa: E402
from flash_rt.models.pi05.oracle import cosine64  # noqa: E402
from flash_rt.testing.observations import random_observation  # noqa: E402
from flash_rt.testing.pi0_checkpoint import build_full_pi0_checkpoint  # noqa: E402


def variant_options(v: str) -> dict:
    """'bf16' | 'fp8' | 'fp8:all' | 'fp8:<block>+<block>' -> load_model options."""
    if v == "bf16":
        return {"precision": "bf16"}
    if v == "fp8":
        return {"precision": "fp8"}
    if v.startswith("fp8:"):
        blocks = v[4:]
        return {"precision": "fp8", "bf16_blocks": () if blocks == "all" else tuple(blocks.split("+"))}
    raise SystemExit(f"unknown variant {v!r}: expected bf16, fp8, fp8:all or fp8:<block>[+<block>...]")


def replay_ms(pol, images, state, prompt, noise, n: int) -> tuple[float, float]:
    """Wall time of predict (one graph replay + IO) after warm-up: (P50, P99) in ms."""
    import torch
    for _ in range(5):
        pol.predict(images, state, prompt, noise)
    t = []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        pol.predict(images, state, prompt, noise)
        torch.cuda.synchronize()
        t.append((time.perf_counter() - t0) * 1e3)
    return float(np.percentile(t, 50)), float(np.percentile(t, 99))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obs", type=int, default=20)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--hardware", default="hopper")
    ap.add_argument("--variants", nargs="+", default=["fp8", "fp8:all", "bf16"])
    ap.add_argument("--runs", type=int, default=3, help="fresh loads per variant (observation seed = run)")
    ap.add_argument("--replays", type=int, default=50, help="timed predicts per variant (0: no latency)")
    ap.add_argument("--ckpt", default=None, help="checkpoint dir; built there when it has no model.safetensors yet "
                    "(so later invocations reuse it)")
    ap.add_argument("--cache-dir", default=None, help="weight/calibration cache dir (default: a fresh temp dir)")
    args = ap.parse_args(argv)
    opts = {v: variant_options(v) for v in args.variants}
    work = Path(tempfile.mkdtemp(prefix="frt_pi0_full_"))
    ckpt = Path(args.ckpt) if args.ckpt else work / "ckpt"
    if not (ckpt / "model.safetensors").exists():
        build_full_pi0_checkpoint(ckpt, device="cuda")
    for v, o in opts.items():
        for run in range(args.runs):   # run 0 builds the weight + calibration caches, later runs hit them
            pol = flash_rt.load_model(ckpt, config="pi0", hardware=args.hardware, num_views=args.views,
                                      cache_dir=Path(args.cache_dir) if args.cache_dir else work / "cache", **o)
            rng = np.random.default_rng(run)
            coss = []
            for _ in range(args.obs):
                obs = random_observation(rng, pol.num_views, pol.state_dim or 8, pol.action_horizon)
                out = pol.predict(*obs).copy()
                coss.append(cosine64(out, pol.reference_chunk(device="cuda")))
            last = run == args.runs - 1
            lat = (" predict P50 / P99 %.2f / %.2f ms" % replay_ms(pol, *obs, args.replays)
                   if args.replays and last else "")
            print(f"pi0 full-size {args.hardware} {v} run {run}: worst cos {min(coss):.6f}, mean {np.mean(coss):.6f} "
                  f"over {args.obs} observations;{lat}", flush=True)
            del pol
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
