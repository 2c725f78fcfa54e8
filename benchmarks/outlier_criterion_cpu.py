"""What the default engine's outlier criterion flags on the full-size checkpoint, measured on the CPU.

bf16_outlier_sites="blocks" (the default) runs in BF16 the blocks through the last one that holds a group whose
per-channel products max|X_j| * max|W_j| reach max / median >= outlier_min_ratio on the first observation
(runtime/outlier_sites.py). Whether it flags anything where plain FP8 already holds -- the un-injected checkpoint,
the ':matched' injections -- decides whether the default costs anything there: where it flags nothing, the default
engine IS plain FP8 (the same weights, kernels and calibration key). This runs the criterion through the exact CPU
cell (flash_rt/testing/outlier_criterion.py: FP32 activations standing in for the GPU twin's BF16 ones, the GEMM
weights at their FP8 values as the GPU twin has them; --fp32-weights keeps them exact) on the full-size random
checkpoint and its injected copies, over the observation the GPU rung calibrates on (seed 100, 2 views, horizon 50),
and prints each block's highest group and what the bar flags (30, and smoothing's 6, the bar until the thirteenth
session: it flagged the un-injected checkpoint). The plain injections are the control: on an H200 the GPU frontend
flagged 54 (`llm_norm` 30x) and 61 (`vis_ln` 30x) groups at 6; this gives 53 and 72.

    python benchmarks/outlier_criterion_cpu.py [--kinds none llm_norm:matched ...] [--scale 30] [--json out.json]

Cost on a 2-core machine: ~1 min to write the checkpoint (and ~1 min its injection base), then ~65 s a kind;
~18 GB of memory. Measured: docs/calibration.md "The criterion at full size".
"""
from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_KINDS = ("none", "llm_norm:matched", "vis_ln:matched", "v_proj:matched", "up_proj:matched",
                 "ex_ada:matched", "llm_norm", "vis_ln", "ex_ada", "v_proj", "up_proj")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS),
                    help="'none' (the checkpoint as built) or an injection variant (flash_rt/testing/outliers.py)")
    ap.add_argument("--scale", type=float, default=30.0)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--seed", type=int, default=100, help="the observation: the first of this seed (the rung's run 0)")
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir, removed at the end)")
    ap.add_argument("--json", default=None, help="write every group's ratio per kind here")
    ap.add_argument("--fp32-weights", action="store_true",
                    help="keep the FP32 GEMM weights (default: their FP8 values, what the GPU twin runs)")
    args = ap.parse_args(argv)

    from flash_rt.models.pi05.config import Pi05Config
    from flash_rt.runtime.bf16_blocks import BLOCKS
    from flash_rt.runtime.outlier_sites import BF16_MIN_RATIO, bf16_blocks_for, blocks_of
    from flash_rt.runtime.smoothing import MIN_RATIO
    from flash_rt.testing.full_size import build_full_checkpoint
    from flash_rt.testing.outlier_criterion import criterion_on_checkpoint
    from flash_rt.testing.outliers import BASE_MARKER, inject_checkpoint, injection_base

    cfg = Pi05Config()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="frt_criterion_"))
    results = {}
    try:
        t0 = time.perf_counter()
        ckpt = work / "ckpt"   # a kept --dir is reused: writing the 7 GB checkpoint and its base is half the time
        if not (ckpt / "config.json").is_file():
            build_full_checkpoint(ckpt)
        base = None
        if any(k != "none" for k in args.kinds):
            base = work / "base"
            if not (base / BASE_MARKER).is_file():
                injection_base(ckpt, base, cfg)
        print(f"checkpoint and injection base in {time.perf_counter() - t0:.0f} s", flush=True)
        for kind in args.kinds:
            t0 = time.perf_counter()
            shutil.rmtree(work / "ck", ignore_errors=True)   # a kept --dir may hold the copy of a run cut short
            ck = ckpt if kind == "none" else inject_checkpoint(base, work / "ck", kind, args.scale, cfg)
            crit = criterion_on_checkpoint(ck, args.views, args.seed, fp8_weights=not args.fp32_weights)
            results[kind] = {}
            for stat, ratios in crit.items():
                per_block = {}
                for g, r in ratios.items():
                    for blk in blocks_of([g]):
                        if r > per_block.get(blk, ("", 0.0))[1]:
                            per_block[blk] = (g, round(r, 2))
                results[kind][stat] = {"ratios": ratios, "per_block": per_block}
                at = {bar: [g for g, r in ratios.items() if r >= bar] for bar in (MIN_RATIO, BF16_MIN_RATIO)}
                print(f"{kind} x{args.scale:g} [{stat}]: highest per block {per_block}; at the bar {BF16_MIN_RATIO:g} "
                      f"{len(at[BF16_MIN_RATIO])} of {len(ratios)} groups flagged, BF16 blocks "
                      f"{list(bf16_blocks_for(at[BF16_MIN_RATIO])) or 'none'}; at {MIN_RATIO:g} "
                      f"{len(at[MIN_RATIO])}", flush=True)
            print(f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
            if args.json:   # after every kind: a run cut short keeps what it measured
                Path(args.json).write_text(json.dumps({"scale": args.scale, "seed": args.seed, "views": args.views,
                                                       "fp8_weights": not args.fp32_weights,
                                                       "kinds": results}, indent=1))
            gc.collect()
        print(f"blocks: {list(BLOCKS)}")
    finally:   # the injected copy goes either way; a --dir keeps the checkpoint and its base for the next run
        shutil.rmtree(work / "ck" if args.dir else work, ignore_errors=True)


if __name__ == "__main__":
    main()
