"""Every GPU cell on the tiny model, in seconds: load, warm up, calibrate on the first real step, predict, compare
with the FP32 reference, and the start-up phases. The first thing to run on a fresh GPU machine (a broken cell
shows here before minutes go into the full-size runs).

    python3 benchmarks/cells_smoke.py --hardware hopper thor          # thor by override on an H200
    TRITON_OVERRIDE_ARCH=sm120 python3 benchmarks/cells_smoke.py --hardware rtx_sm120
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flash_rt  # noqa: E402
from flash_rt.models.pi05.oracle import cosine64  # noqa: E402
from flash_rt.testing import TINY_STATE_DIM, build_tiny_checkpoint  # noqa: E402
from flash_rt.testing.observations import random_observation  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hardware", nargs="+", default=["auto"])
    ap.add_argument("--zero-copy", choices=("default", "on", "off"), default="default")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="frt_smoke_"))
    ck = build_tiny_checkpoint(work / "ck", layout="openpi")
    bad = 0
    for hw in args.hardware:
        for precision in ("fp8", "bf16"):
            t0 = time.perf_counter()
            kw = {} if args.zero_copy == "default" else {"zero_copy_io": args.zero_copy == "on"}
            pol = flash_rt.load_model(ck, hardware=hw, precision=precision, cache_dir=work / "cache", **kw)
            rng = np.random.default_rng(1)
            images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, pol.action_horizon)
            pol.write_state(state)
            pol.set_prompt(prompt)
            for i, im in enumerate(images):
                pol.write_image(i, im)
            pol.warmup(2)
            worst = 1.0
            for _ in range(5):
                images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, pol.action_horizon)
                got = pol.predict(images, state, prompt, noise)
                worst = min(worst, cosine64(got, pol.reference_chunk(device="cuda")))
            fe = pol.frontend
            ok = worst >= (0.995 if precision == "fp8" else 0.999) and fe.graph is not None
            bad += not ok
            phases = ", ".join(f"{p} {s:.2f}s" for p, s, _ in pol.startup_phases)
            print(f"{'OK ' if ok else 'BAD'} {hw:10s} {precision}: worst cos {worst:.5f}, zero_copy {fe.zero_copy_io}, "
                  f"split_k {fe.tuning.split_k}, overlap {fe.overlap_first_step}, {time.perf_counter() - t0:.1f} s "
                  f"[{phases}]", flush=True)
            del pol, fe
            torch.cuda.empty_cache()
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
