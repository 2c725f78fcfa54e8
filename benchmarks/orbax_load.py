"""openpi Orbax checkpoint on a GPU, full size: first load, cached load, GPU memory, FP8 chunks vs the torch cell.

Writes the full-size random Pi0.5 weights (flash_rt.testing.full_size, bf16 safetensors) and the same weights as
openpi's released Orbax layout (params/ in float32, written with orbax as openpi does), then on this GPU's cell:

* jax cell, first load (weight cache cold: Orbax decode + GPU spec + FP8 quantization + cache write) and a second
  load in the same process (weight cache hit; the OS page cache is warm too);
* GPU memory: peak allocated from before the load to after the first predict (calibration + capture);
* the torch cell on the safetensors twin, same inputs and noise: the FP8 chunks must be bit-identical (the Orbax
  leaves are the bf16 weights widened to fp32, so every tensor the GPU spec reads has the same value);
* cosine of the jax cell's chunk vs the FP32 reference (the oracle on the same inputs);
* graph replay latency of both cells (CUDA events, P50/P99 over --replays).

    python3 benchmarks/orbax_load.py            # prints one JSON line and a markdown table; results in $OUT
Budget: about 3-5 minutes on an H200 (the Orbax write of 13.4 GB fp32 and its first decode dominate).
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

os.environ.setdefault("JAX_PLATFORMS", "cpu")   # orbax's JAX must not claim the GPU

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import flash_rt  # noqa: E402
from flash_rt.executors.safetensors_io import open_checkpoint  # noqa: E402
from flash_rt.models.pi05.config import Pi05Config  # noqa: E402
from flash_rt.models.pi05.oracle import ReferenceOracle, cosine64  # noqa: E402
from flash_rt.testing.full_size import build_full_checkpoint, full_size_norm_stats  # noqa: E402
from flash_rt.testing.orbax_checkpoint import build_orbax_checkpoint  # noqa: E402


def du(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def time_replays(fe, n):
    for _ in range(10):
        fe.replay_only()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for s, e in ev:
        s.record(fe.stream)
        fe.replay_only()
        e.record(fe.stream)
    torch.cuda.synchronize()
    ms = [s.elapsed_time(e) for s, e in ev]
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--hardware", default="auto")
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--horizon", type=int, default=50)
    ap.add_argument("--max-token-len", type=int, default=64)
    ap.add_argument("--replays", type=int, default=200)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args(argv)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="frt_orbax_"))
    atexit.register(shutil.rmtree, work, True)
    r: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}

    t0 = time.perf_counter()
    st, n_params = build_full_checkpoint(work / "torch", device="cuda")
    r["safetensors_write_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    src = open_checkpoint(st)
    sd = {k: src.get(k) for k in src.keys() if not k.endswith("embed_tokens.weight")}
    cfg = Pi05Config()
    orbax = build_orbax_checkpoint(work / "pi05_orbax", sd, vis_heads=cfg.vis_heads, heads=cfg.heads,
                                   norm_stats=full_size_norm_stats(), asset_id="robot")
    shutil.copy(st / "tokenizer.model", orbax / "tokenizer.model")   # the tiny test tokenizer (ids < 512)
    del sd, src
    gc.collect()
    r["orbax_write_s"] = time.perf_counter() - t0
    r["orbax_bytes"] = du(orbax / "params")
    print(f"checkpoints ready: {n_params / 1e9:.2f} B params, Orbax {r['orbax_bytes'] / 1e9:.2f} GB "
          f"(written in {r['orbax_write_s']:.0f} s)", flush=True)

    kw = dict(hardware=args.hardware, num_views=args.views, action_horizon=args.horizon,
              max_token_len=args.max_token_len, cache_dir=work / "cache", seed=0)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (224, 224, 3), dtype=np.uint8) for _ in range(args.views)]
    state = rng.uniform(-1, 1, 8)
    noise = rng.standard_normal((args.horizon, 32)).astype(np.float32)
    prompt = "pick up the red block and put it in the blue bowl"

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    jx = flash_rt.load_model(orbax, **kw)
    r["jax_first_load_s"] = time.perf_counter() - t0
    r["jax_first_load_cache"] = jx.frontend.weight_cache_status
    r["cell"] = type(jx.frontend).__name__
    t0 = time.perf_counter()
    c_jax = jx.predict(images, state, prompt, noise=noise)
    r["jax_first_predict_s"] = time.perf_counter() - t0
    r["gpu_mem_peak_gb"] = (torch.cuda.max_memory_allocated() - base) / 2**30
    r["gpu_mem_gb"] = (torch.cuda.memory_allocated() - base) / 2**30
    r["jax_replay_p50_ms"], r["jax_replay_p99_ms"] = time_replays(jx.frontend, args.replays)
    del jx
    gc.collect()
    torch.cuda.empty_cache()

    t0 = time.perf_counter()
    jx2 = flash_rt.load_model(orbax, **kw)
    r["jax_cached_load_s"] = time.perf_counter() - t0
    r["jax_cached_load_cache"] = jx2.frontend.weight_cache_status
    c_jax2 = jx2.predict(images, state, prompt, noise=noise)
    r["cached_chunk_equal"] = bool(np.array_equal(c_jax, c_jax2))
    del jx2
    gc.collect()
    torch.cuda.empty_cache()

    t0 = time.perf_counter()
    tp = flash_rt.load_model(st, **kw)
    r["torch_first_load_s"] = time.perf_counter() - t0
    c_torch = tp.predict(images, state, prompt, noise=noise)
    r["fp8_chunks_bit_identical"] = bool(np.array_equal(c_torch, c_jax))
    r["max_abs_jax_vs_torch"] = float(np.abs(c_torch - c_jax).max())
    r["torch_replay_p50_ms"], r["torch_replay_p99_ms"] = time_replays(tp.frontend, args.replays)
    oracle = ReferenceOracle(tp.frontend.source, tp.frontend.cfg, device="cuda")
    ref = oracle.chunk(tp.frontend.host)   # both cells' last step had the same images, state, prompt and noise
    r["cos_jax_vs_fp32"] = cosine64(c_jax, ref)
    r["cos_torch_vs_fp32"] = cosine64(c_torch, ref)
    print(json.dumps(r), flush=True)
    (out / "orbax_load.json").write_text(json.dumps(r, indent=1))
    print(f"\n{r['gpu']}, torch {r['torch']}, {r['cell']}, views {args.views}, horizon {args.horizon}")
    print("| Orbax GB | first load s | cached load s | GPU GB (peak) | FP8 cos vs FP32 | = torch cell | "
          "replay P50/P99 ms (jax) | (torch) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {r['orbax_bytes'] / 1e9:.2f} | {r['jax_first_load_s']:.1f} ({r['jax_first_load_cache']}) | "
          f"{r['jax_cached_load_s']:.1f} ({r['jax_cached_load_cache']}) | "
          f"{r['gpu_mem_gb']:.1f} ({r['gpu_mem_peak_gb']:.1f}) | "
          f"{r['cos_jax_vs_fp32']:.5f} | {'bit-identical' if r['fp8_chunks_bit_identical'] else 'DIFFERS'} | "
          f"{r['jax_replay_p50_ms']:.2f} / {r['jax_replay_p99_ms']:.2f} | "
          f"{r['torch_replay_p50_ms']:.2f} / {r['torch_replay_p99_ms']:.2f} |")
    if not (r["fp8_chunks_bit_identical"] and r["cached_chunk_equal"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
