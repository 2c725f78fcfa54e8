"""Does a persistent kernel with in-kernel phase barriers beat a PDL chain of kernels for the expert's dependent
GEMM phases? The question issue 17's fused expert layer rests on, measured in isolation before the layer is built.

Why this probe: a flow step is ~126 dependent phases (7 a layer x 18), each a latency-bound M = 50 GEMM or row op
whose ~4 us is mostly the handoff: the PDL boundary (~0.9 us, critical_path.py) plus the first dependent loads, the
weights' HBM latency among them. Two earlier attempts at moving weight loads ahead of the dependency lost (weight
slabs loaded before griddepcontrol.wait: 11.70 vs 11.44 ms; L2 prefetch: 12.93 vs 12.33 ms, docs/benchmarks.md) --
but under PDL the next kernel's programs only become resident where the previous kernel's leave room, which its
~100 KB of shared memory a program does not, so those loads could not start early. In one persistent kernel the
same program owns its tile in every phase: it can load phase p+1's weight slab while the other programs finish
phase p, and wait only for the activations. Whether an in-kernel barrier (a release/acquire counter per phase) plus
that prefetch costs less than a PDL boundary is what this measures; an arrive-last tail that also reduced was
measured slower (+4.6 us a call), a plain barrier was not.

The phase is the expert's GEMM shape: y[64, D] = e4m3(x[64, D] @ W_p[D, D]^T * c), FP8 in and out, one 16-column
tile a program (D = 1024: 64 programs, 16 KB of weights each; 1 MB a phase), PHASES distinct weight matrices so
they stream from HBM (128 MB by default, beyond the 50 MB L2 of an H200). Variants, each in a CUDA graph:
  chain       PHASES launches of _phase_kernel, PDL on (the catalogue's launch contract: wait, then work)
  persistent  one launch (+ a memset of the counters): per phase, the weight slab is loaded, then the program waits
              for every tile of the previous phase (acquire), reads x with .cg loads, computes, stores, arrives
              (CTA barrier + release increment)
  no-prefetch the same with the weight load after the wait
  no-barrier  the persistent kernel without waits: wrong results, the time of the work alone (a lower bound)
Prints us per phase of each and the ratios to chain, after checking every variant's output equals chain's bit for
bit (no-barrier excepted).

    python3 benchmarks/persistent_probe.py [--dim 1024] [--phases 128] [--reps 20]

Under TRITON_INTERPRET=1 (CPU, test/unit/test_persistent_probe.py) the persistent kernel runs as ONE program that
owns every tile (the interpreter runs programs one after another, so a wait on a later program would never end);
the GPU runs one program a tile, all resident (grid <= SMs).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_rt.kernels.triton.fp8_quant import e4m3_range  # noqa: E402
from flash_rt.kernels.triton.launch import launch_kw, pdl_enter, programmatic_dependent_launch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

BM, BN = 64, 16
# one stage: the phase loop is not a K loop worth pipelining; Triton 3.6 pipelined it with its default three stages,
# the x and w tiles three times in shared memory (246,784 bytes at D = 1024, over the H200's 232,448)
PERSISTENT_OPTS = dict(num_warps=8, num_stages=1, enable_fp_fusion=True)   # fusion pinned as launch_kw pins it
FP8 = torch.float8_e4m3fn


@triton.jit
def _load_slab(W, p, n0, D: tl.constexpr, BN: tl.constexpr):
    """Phase p's weight rows [n0, n0 + BN) x D (fp8)."""
    cn = tl.arange(0, BN)
    ck = tl.arange(0, D)
    return tl.load(W + p * D * D + (n0 + cn)[:, None] * D + ck[None, :])   # < 2**31 for D <= 2048, 512 phases


@triton.jit
def _tile(X, Y, w, n0, c, D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, CG: tl.constexpr):
    """y[:, n0:n0+BN] = e4m3(x @ w.T * c); x read through L2 only (.cg) when another program of this kernel wrote
    it (an L1 line of this SM could be stale)."""
    rows = tl.arange(0, BM)
    ck = tl.arange(0, D)
    if CG:
        x = tl.load(X + rows[:, None] * D + ck[None, :], cache_modifier=".cg")
    else:
        x = tl.load(X + rows[:, None] * D + ck[None, :])
    acc = tl.dot(x, tl.trans(w))
    y = e4m3_range(acc, c)
    tl.store(Y + rows[:, None] * D + (n0 + tl.arange(0, BN))[None, :], y.to(Y.dtype.element_ty))


@triton.jit
def _phase_kernel(X, W, Y, p, c, D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, PDL: tl.constexpr):
    pdl_enter(PDL)
    n0 = tl.program_id(0) * BN
    _tile(X, Y, _load_slab(W, p, n0, D, BN), n0, c, D, BM, BN, False)


@triton.jit
def _wait_count(CNT, target):
    """Spin until *CNT >= target (acquire at GPU scope: the arrivals' stores are then visible), then a CTA barrier
    so every thread's later loads come after it. Triton lowers the +0 acquire to ld.global.gpu.acquire and the
    release increment to red.global.gpu.release (checked by test/unit/test_persistent_probe.py)."""
    seen = tl.atomic_add(CNT, 0, sem="acquire", scope="gpu")
    while seen < target:
        seen = tl.atomic_add(CNT, 0, sem="acquire", scope="gpu")
    tl.debug_barrier()


@triton.jit
def _arrive(CNT):
    """Every thread's stores of this program issued (CTA barrier), then one release increment (cumulative)."""
    tl.debug_barrier()
    tl.atomic_add(CNT, 1, sem="release", scope="gpu")


@triton.jit
def _persistent_kernel(BUF, W, CNT, c, PHASES, D: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr,
                       PREFETCH: tl.constexpr, BARRIER: tl.constexpr):
    """Phase p reads BUF[p % 2] and writes BUF[(p + 1) % 2]; tiles t = pid, pid + G, ... of every phase belong to
    this program. The barrier after phase p also orders its reads of BUF[p % 2] before anyone's phase p + 1
    writes it."""
    pid = tl.program_id(0)
    G = tl.num_programs(0)
    tiles: tl.constexpr = D // BN
    for p in range(PHASES):
        X = BUF + (p % 2) * BM * D
        Y = BUF + ((p + 1) % 2) * BM * D
        for t in range(pid, tiles, G):
            n0 = t * BN
            if PREFETCH:
                w = _load_slab(W, p, n0, D, BN)
            if BARRIER:
                if p > 0:
                    _wait_count(CNT + p - 1, tiles)
            if not PREFETCH:
                w = _load_slab(W, p, n0, D, BN)
            _tile(X, Y, w, n0, c, D, BM, BN, True)
            if BARRIER:
                _arrive(CNT + p)


class Probe:
    """The buffers of one probe: weights [phases, D, D] fp8, the ping-pong activations, the phase counters."""

    def __init__(self, dim: int, phases: int, device, seed: int = 0):
        g = torch.Generator(device="cpu").manual_seed(seed)
        self.dim, self.phases, self.c = dim, phases, dim ** -0.5
        self.w = torch.randn(phases, dim, dim, generator=g).to(FP8).to(device)
        self.x0 = torch.randn(BM, dim, generator=g).to(FP8).to(device)
        self.buf = torch.zeros(2, BM, dim, dtype=FP8, device=device)
        self.cnt = torch.zeros(phases, dtype=torch.int32, device=device)

    def result(self) -> torch.Tensor:
        """The activations after the last phase."""
        return self.buf[self.phases % 2]

    def chain(self) -> None:
        self.buf[0].copy_(self.x0)
        grid = (self.dim // BN,)
        for p in range(self.phases):
            _phase_kernel[grid](self.buf[p % 2], self.w, self.buf[(p + 1) % 2], p, self.c, D=self.dim, BM=BM,
                                BN=BN, num_warps=8, **launch_kw())

    def persistent(self, prefetch: bool = True, barrier: bool = True, programs: int | None = None) -> None:
        self.buf[0].copy_(self.x0)
        self.cnt.zero_()
        g = programs or self.dim // BN
        _persistent_kernel[(g,)](self.buf, self.w, self.cnt, self.c, self.phases, D=self.dim, BM=BM, BN=BN,
                                 PREFETCH=prefetch, BARRIER=barrier, **PERSISTENT_OPTS)


def reference(probe: Probe) -> torch.Tensor:
    """The torch twin: the same phases in fp32 with the same rounding of every phase's output to e4m3."""
    x = probe.x0.float().cpu()
    c = torch.tensor(probe.c, dtype=torch.float32)
    for p in range(probe.phases):
        x = (x @ probe.w[p].float().cpu().t() * c).clamp(-448, 448).to(FP8).float()
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--phases", type=int, default=128)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args(argv)
    dev = "cuda"
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, triton {triton.__version__}; "
          f"D = {args.dim}, {args.dim // BN} programs, {args.phases} phases, "
          f"{args.phases * args.dim * args.dim / 2**20:.0f} MiB of weights")
    from attention_sweep import PDL, graph_us   # one graph of the whole chain (or kernel), us per phase
    pr = Probe(args.dim, args.phases, dev)
    PDL[0] = True
    with programmatic_dependent_launch(True):
        pr.chain()
        torch.cuda.synchronize()
        want = pr.result().clone()
    times = {"chain": graph_us(pr.chain, calls=1, reps=args.reps) / args.phases}
    for name, kw in (("persistent", {}), ("no-prefetch", {"prefetch": False}), ("no-barrier", {"barrier": False})):
        pr.persistent(**kw)
        torch.cuda.synchronize()
        same = torch.equal(pr.result().view(torch.uint8), want.view(torch.uint8))
        if kw.get("barrier", True) and not same:
            print(f"{name}: output differs from the chain's -- a broken barrier; not timed")
            continue
        times[name] = graph_us(lambda kw=kw: pr.persistent(**kw), calls=1, reps=args.reps) / args.phases
    print("| variant | us per phase | / chain |\n|---|---|---|")
    for name, us in times.items():
        print(f"| {name} | {us:.2f} | {us / times['chain']:.3f} |")
    return 0


if __name__ == "__main__":
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("run the probe on a GPU; test/unit/test_persistent_probe.py runs it under the interpreter")
    raise SystemExit(main())
