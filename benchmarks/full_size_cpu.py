"""Full-size random-weight Pi0.5 (3.35 B parameters used at inference) on the CPU: one inference.

The checkpoint is described on the meta device (shapes only, from the key schema) and filled tensor by
tensor through the streaming safetensors writer, so building the 7 GB bf16 file never holds more than one
tensor. It is then loaded through the normal load_model(hardware="cpu") path (streamed safe_open reads,
fp32 weights) and runs one inference with 2 camera views. Prints load time, inference time and peak RSS.

    python benchmarks/full_size_cpu.py [--dir /tmp/pi05_full] [--keep]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_rt.testing.full_size import build_full_checkpoint  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default=None, help="where to write the checkpoint (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint")
    ap.add_argument("--views", type=int, default=2)
    args = ap.parse_args(argv)
    tmp = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="pi05_full_"))
    try:
        t0 = time.perf_counter()
        ckpt, n = build_full_checkpoint(tmp)
        t_build = time.perf_counter() - t0
        print(f"checkpoint: {n / 1e9:.3f} B params in the file, written in {t_build:.1f} s")
        import flash_rt
        t0 = time.perf_counter()
        pol = flash_rt.load_model(ckpt, hardware="cpu", num_views=3)
        t_load = time.perf_counter() - t0
        used = sum(v.numel() for k, v in pol.frontend.w.items())
        print(f"load: {t_load:.1f} s, {used / 1e9:.3f} B params held by the engine")
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(args.views)]
        t0 = time.perf_counter()
        out = pol.predict(imgs, rng.uniform(-1, 1, 8), "pick up the red block")
        t_inf = time.perf_counter() - t0
        rss_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"inference ({args.views} views + 1 masked slot, horizon {pol.action_horizon}, "
              f"{pol.config.num_steps} steps, torch threads {torch.get_num_threads()}): {t_inf:.1f} s; "
              f"finite={bool(np.isfinite(out).all())}")
        print(f"peak RSS: {rss_gb:.1f} GB")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
