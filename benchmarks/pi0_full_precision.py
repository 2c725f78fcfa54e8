"""Full-size random-weight Pi0 on a GPU cell: FP8 and BF16 worst cosine (float64, per chunk) against the FP32 reference
on the same inputs and noise, over N observations. The tiny Pi0's GPU gates live in test/gpu/test_pi0_gpu.py; this is
the full-size rung the device run records in docs/benchmarks.md.

    python3 benchmarks/pi0_full_precision.py --obs 20 [--hardware hopper] [--precision fp8 bf16]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flash_rt  # noqa: E402
from flash_rt.models.pi05.oracle import cosine64  # noqa: E402
from flash_rt.testing.observations import random_observation  # noqa: E402
from flash_rt.testing.pi0_checkpoint import build_full_pi0_checkpoint  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obs", type=int, default=20)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--hardware", default="hopper")
    ap.add_argument("--precision", nargs="+", default=["fp8", "bf16"])
    ap.add_argument("--ckpt", default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="frt_pi0_full_"))
    ckpt = Path(args.ckpt) if args.ckpt else build_full_pi0_checkpoint(work / "ckpt", device="cuda")[0]
    for prec in args.precision:
        pol = flash_rt.load_model(ckpt, config="pi0", hardware=args.hardware, num_views=args.views,
                                  precision=prec, cache_dir=work / "cache")
        rng = np.random.default_rng(0)
        coss = []
        for _ in range(args.obs):
            images, state, prompt, noise = random_observation(rng, pol.num_views, pol.state_dim or 8,
                                                              pol.action_horizon)
            out = pol.predict(images, state, prompt, noise).copy()
            coss.append(cosine64(out, pol.reference_chunk(device="cuda")))
        print(f"pi0 full-size {args.hardware} {prec}: worst cos {min(coss):.6f}, mean {np.mean(coss):.6f} "
              f"over {args.obs} observations", flush=True)
        del pol
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
