"""Designs for the expert's M = 50 FP8 gate+up GEMM (K = 1024, N = 2 x 4096), per call in a PDL chain.

Why: benchmarks/critical_path.py shows the fused gate+up+GeGLU GEMM adding 8.5 us to every expert layer for
8.4 MB of weights, ~1 TB/s, while a trivial kernel boundary costs 0.85 us. This compares loop shapes that put
more weight bytes in flight: the catalogue kernel (pointer loads, software pipelined), the same loop on TMA
tensor descriptors, and one K-wide dot per program; plus a pure streaming kernel (loads only) as the floor,
and each with one shared weight (L2-resident) to split HBM time from latency.

    python3 benchmarks/gemm_designs.py
"""
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_sweep import PDL, graph_us  # noqa: E402
from flash_rt.kernels.triton.activations import _gelu_tanh_f32  # noqa: E402
from flash_rt.kernels.tiles import FusedGemmConfig  # noqa: E402
from flash_rt.kernels.triton.gemm_fused import fp8_gemm_geglu  # noqa: E402
from flash_rt.kernels.triton.launch import launch_kw, pdl_enter  # noqa: E402

F8 = torch.float8_e4m3fn
N_W = 36


@triton.jit
def _geglu_tma(xd, wd, OUT, s_o, OS, M, F, K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               BLOCK_K: tl.constexpr, STAGES: tl.constexpr, QMODE: tl.constexpr, LATE: tl.constexpr,
               PDL: tl.constexpr):
    """The gate+up loop on TMA tensor descriptors. QMODE 0 writes bf16; FP8-out epilogues: 1 div_rn by a scale
    loaded after the loop (the catalogue's before 2026-11-27), 2 div_rn by a scale loaded before the loop,
    3 multiply by its reciprocal (loaded before), 4 plain `/` (loaded before). LATE loads the second weight
    tile after the first dot (the catalogue mainloop's order)."""
    n = tl.program_id(0) * BLOCK_N
    pdl_enter(PDL)
    if QMODE >= 2:
        os_ = tl.load(OS)
    acc1 = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    acc2 = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        a = xd.load([0, k])
        b1 = wd.load([n, k])
        if LATE:
            acc1 = tl.dot(a, tl.trans(b1), acc1, max_num_imprecise_acc=BLOCK_K)
            b2 = wd.load([F + n, k])
        else:
            b2 = wd.load([F + n, k])
            acc1 = tl.dot(a, tl.trans(b1), acc1, max_num_imprecise_acc=BLOCK_K)
        acc2 = tl.dot(a, tl.trans(b2), acc2, max_num_imprecise_acc=BLOCK_K)
    y = _gelu_tanh_f32(acc1) * acc2
    if QMODE > 0:
        if QMODE == 1:
            y = tl.math.div_rn(y, tl.load(OS))
        elif QMODE == 2:
            y = tl.math.div_rn(y, os_)
        elif QMODE == 3:
            y = y * (1.0 / os_)
        else:
            y = y / os_
        y = tl.minimum(tl.maximum(y, -448.0), 448.0)
    rows = tl.arange(0, BLOCK_M)
    cols = n + tl.arange(0, BLOCK_N)
    tl.store(OUT + rows[:, None] * s_o + cols[None, :], y.to(OUT.dtype.element_ty), mask=(rows < M)[:, None])


@triton.jit
def _geglu_wide(X, s_x, W, s_w, OUT, s_o, M, F, K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                IMPRECISE: tl.constexpr, PRE: tl.constexpr, PDL: tl.constexpr):
    """One K-wide dot per accumulator; PRE loads the (constant) weight slab before the PDL wait."""
    n = tl.program_id(0) * BLOCK_N
    rows = tl.arange(0, BLOCK_M)
    cn = tl.arange(0, BLOCK_N)
    ck = tl.arange(0, K)
    if PRE:
        b1 = tl.load(W + (n + cn)[:, None] * s_w + ck[None, :])
        b2 = tl.load(W + (F + n + cn)[:, None] * s_w + ck[None, :])
    pdl_enter(PDL)
    if not PRE:
        b1 = tl.load(W + (n + cn)[:, None] * s_w + ck[None, :])
        b2 = tl.load(W + (F + n + cn)[:, None] * s_w + ck[None, :])
    a = tl.load(X + rows[:, None] * s_x + ck[None, :], mask=(rows < M)[:, None], other=0.0)
    acc1 = tl.dot(a, tl.trans(b1), max_num_imprecise_acc=IMPRECISE)
    acc2 = tl.dot(a, tl.trans(b2), max_num_imprecise_acc=IMPRECISE)
    y = _gelu_tanh_f32(acc1) * acc2
    tl.store(OUT + rows[:, None] * s_o + (n + cn)[None, :], y.to(OUT.dtype.element_ty), mask=(rows < M)[:, None])


@triton.jit
def _stream_only(X, s_x, W, s_w, OUT, M, F, K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, WITH_X: tl.constexpr, PDL: tl.constexpr):
    """The floor: the same bytes as the gate+up kernel's program, loaded and summed, no MMA."""
    n = tl.program_id(0) * BLOCK_N
    pdl_enter(PDL)
    cn = tl.arange(0, BLOCK_N)
    ck = tl.arange(0, BLOCK_K)
    rows = tl.arange(0, BLOCK_M)
    s = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
    sx = tl.zeros((BLOCK_M, BLOCK_K), tl.float32)
    for k in tl.range(0, K, BLOCK_K, num_stages=4):
        s += tl.load(W + (n + cn)[:, None] * s_w + k + ck[None, :]).to(tl.float32)
        s += tl.load(W + (F + n + cn)[:, None] * s_w + k + ck[None, :]).to(tl.float32)
        if WITH_X:
            sx += tl.load(X + rows[:, None] * s_x + k + ck[None, :], mask=(rows < M)[:, None], other=0.0).to(tl.float32)
    tl.store(OUT + tl.program_id(0), tl.sum(tl.sum(s, 1), 0) + tl.sum(tl.sum(sx, 1), 0))


def fp8(*shape):
    return (torch.randn(*shape, device="cuda") * 40).clamp(-448, 448).to(F8)


def main():
    PDL[0] = True
    m, k, f = 50, 1024, 4096
    one = torch.ones(1, device="cuda")
    x = fp8(m, k)
    ws = [fp8(2 * f, k) for _ in range(N_W)]
    out = torch.empty(m, f, device="cuda", dtype=torch.bfloat16)
    out8 = torch.empty(m, f, device="cuda", dtype=F8)
    red = torch.empty(4096, device="cuda")
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device="cuda"))

    def bench(name, make):
        """make(i) -> a launch using weight i; per-call us with rotating weights (HBM) and one weight (L2)."""
        try:
            st = {"i": 0}

            def rot():
                make(st["i"] % N_W)
                st["i"] += 1
            hbm = graph_us(rot, calls=N_W)
            l2 = graph_us(lambda: make(0), calls=N_W)
            print(f"| {name} | {hbm:.2f} | {l2:.2f} |", flush=True)
        except Exception as e:  # noqa: BLE001 - a config the compiler rejects is reported, not fatal
            print(f"| {name} | {type(e).__name__}: {str(e)[:80]} | |", flush=True)

    print(f"{torch.cuda.get_device_name(0)}, triton {triton.__version__}; us per call, PDL chain of {N_W}")
    print("| design | rotating weights (HBM) | one weight (L2) |")
    print("|---|---|---|")
    if "--quick" in sys.argv:   # the TMA loop as written here vs inside the catalogue kernel, same tiles
        for bn, bk in ((16, 256), (32, 256)):
            xd = TensorDescriptor.from_tensor(x, [64, bk])
            wds = [TensorDescriptor.from_tensor(w, [bn, bk]) for w in ws]
            for qm, late in ((0, False), (0, True), (1, False), (2, False), (3, False), (4, False)):
                bench(f"tma qmode {qm} late={late} bn{bn} bk{bk} s4 w4",
                      lambda i, bn=bn, bk=bk, xd=xd, wds=wds, qm=qm, late=late: _geglu_tma[(f // bn,)](
                          xd, wds[i], out8 if qm else out, out.stride(0), one, m, f, k, BLOCK_M=64, BLOCK_N=bn,
                          BLOCK_K=bk, STAGES=4, QMODE=qm, LATE=late, num_warps=4, **launch_kw()))
            cfg = FusedGemmConfig(block_m=64, block_n=bn, block_k=bk, stages=4, warps=4, tma=True)
            bench(f"catalogue tma bn{bn} bk{bk} s4 w4",
                  lambda i, c=cfg: fp8_gemm_geglu(x, one, ws[i], one, out=out8, out_scale=one, cfg=c))
            bench(f"catalogue tma bn{bn} bk{bk} s4 w4 bf16 out",
                  lambda i, c=cfg: fp8_gemm_geglu(x, one, ws[i], one, out=out, cfg=c))
        return
    for bn, bk, st, nw in ((16, 128, 4, 4), (16, 256, 3, 4), (32, 128, 4, 4), (32, 256, 3, 8)):
        cfg = FusedGemmConfig(block_m=64, block_n=bn, block_k=bk, stages=st, warps=nw, tma=False)
        bench(f"catalogue bn{bn} bk{bk} s{st} w{nw}",
              lambda i, c=cfg: fp8_gemm_geglu(x, one, ws[i], one, out=out8, out_scale=one, cfg=c))
    for bn in (16, 32):
        for bk in (128, 256):
            for st in (3, 4, 6):
                if bk == 256 and st == 6:
                    continue
                xd = TensorDescriptor.from_tensor(x, [64, bk])
                wds = [TensorDescriptor.from_tensor(w, [bn, bk]) for w in ws]
                for nw in (4, 8):
                    bench(f"tma bn{bn} bk{bk} s{st} w{nw}",
                          lambda i, bn=bn, bk=bk, st=st, nw=nw, xd=xd, wds=wds: _geglu_tma[(f // bn,)](
                              xd, wds[i], out, out.stride(0), one, m, f, k, BLOCK_M=64, BLOCK_N=bn, BLOCK_K=bk,
                              STAGES=st, QMODE=0, LATE=False, num_warps=nw, **launch_kw()))
    for bn in (16, 32):
        for pre in (False, True):
            for nw in (4, 8):
                bench(f"wide bn{bn} pre={pre} w{nw}",
                      lambda i, bn=bn, pre=pre, nw=nw: _geglu_wide[(f // bn,)](
                          x, x.stride(0), ws[i], ws[i].stride(0), out, out.stride(0), m, f, k, BLOCK_M=64,
                          BLOCK_N=bn, IMPRECISE=128, PRE=pre, num_warps=nw, **launch_kw()))
    for bn in (16, 32, 64):
        for with_x in (False, True):
            bench(f"stream-only bn{bn} x={with_x}",
                  lambda i, bn=bn, wx=with_x: _stream_only[(f // bn,)](
                      x, x.stride(0), ws[i], ws[i].stride(0), red, m, f, k, BLOCK_M=64, BLOCK_N=bn, BLOCK_K=128,
                      WITH_X=wx, num_warps=4, **launch_kw()))


if __name__ == "__main__":
    main()
