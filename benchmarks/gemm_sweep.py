"""Expert-site FP8 GEMMs on a GPU: cuBLASLt + the separate epilogue kernel vs the fused Triton kernels
(kernels/triton/gemm_fused.py) over tile configs. Per call inside a CUDA graph of 36 back-to-back calls, each
on its own weight tensor (as the 18 layers are): with one shared weight it stays in the 50 MB L2 and the sweep
measures L2, not HBM, streaming (the first sweep did; its winners were slower in the model).

    python3 benchmarks/gemm_sweep.py [--m 50] [--pdl] [--tma]
"""
import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flash_rt.kernels.triton import geglu, rope_qkv_split  # noqa: E402
from flash_rt.kernels.tiles import FusedGemmConfig  # noqa: E402
from flash_rt.kernels.triton.gemm_fused import (fp8_gemm_geglu, fp8_gemm_rope_qkv,  # noqa: E402
                                                fp8_gemm_splitk)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_sweep import PDL, graph_us  # noqa: E402

F8 = torch.float8_e4m3fn


def fp8(*shape):
    return (torch.randn(*shape, device="cuda") * 40).clamp(-448, 448).to(F8)


N_W = 36   # distinct weights per graph: 36 x 8.4 MB (gate+up) / 2.6 MB (qkv) do not fit the 50 MB L2


def rotating(fn):
    """fn(i) -> a no-arg call that uses weight i % N_W on each successive call (so a captured graph of N_W
    calls touches every copy once)."""
    state = {"i": 0}

    def call():
        fn(state["i"] % N_W)
        state["i"] += 1
    return call


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=50)
    ap.add_argument("--pdl", action="store_true", help="capture with programmatic dependent launch")
    ap.add_argument("--tma", action="store_true", help="sweep TMA (tensor-descriptor) tiles against the defaults")
    ap.add_argument("--skip-splitk", action="store_true", help="only the fused qkv and gate+up GEMMs")
    a = ap.parse_args()
    PDL[0] = a.pdl
    m, d, f, n, h, p_len = a.m, 1024, 4096, 8, 256, 576
    one = torch.ones(1, device="cuda")
    x = fp8(m, d)
    w_gu = [fp8(2 * f, d) for _ in range(N_W)]
    w_qkv = [fp8((n + 2) * h, d) for _ in range(N_W)]
    gu = torch.empty(m, 2 * f, device="cuda", dtype=torch.bfloat16)
    act = torch.empty(m, f, device="cuda", dtype=F8)
    qkv = torch.empty(m, (n + 2) * h, device="cuda", dtype=torch.bfloat16)
    q = torch.empty(n, m, h, device="cuda", dtype=torch.bfloat16)
    ck = torch.zeros(1, p_len + 64, h, device="cuda", dtype=torch.bfloat16)
    cv = torch.zeros_like(ck)
    pos = torch.arange(m, device="cuda") + p_len
    kc, vc = ck[:, p_len:p_len + m], cv[:, p_len:p_len + m]

    def mm(w, out):
        torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16, out=out)

    def t(fn):
        return graph_us(rotating(fn), calls=N_W)

    t_gu = t(lambda i: mm(w_gu[i], gu))
    t_geglu = t(lambda i: geglu(gu, out=act, out_scale=one))
    t_qkv = t(lambda i: mm(w_qkv[i], qkv))
    t_rope = t(lambda i: rope_qkv_split(qkv, pos, q_out=q, k_out=kc, v_out=vc))
    print(f"M={m}: cuBLASLt gate+up {t_gu:.2f} + geglu {t_geglu:.2f} = {t_gu + t_geglu:.2f} us; "
          f"cuBLASLt qkv {t_qkv:.2f} + rope {t_rope:.2f} = {t_qkv + t_rope:.2f} us", flush=True)
    rows = []
    if a.tma:   # the catalogue defaults (pointer loads) against TMA tiles
        cfgs = [(16, 256, 3, 8, False), (16, 128, 4, 4, False), (32, 256, 4, 4, False)] + list(
            itertools.product([16, 32], [128, 256], [3, 4], [4, 8], [True]))
    else:
        cfgs = list(itertools.product([16, 32, 64], [128, 256], [3, 4], [4, 8], [False]))
    for bn, bk, st, nw, tma in cfgs:
        cfg = FusedGemmConfig(block_m=64, block_n=bn, block_k=bk, stages=st, warps=nw, tma=tma)
        for name, fn in (("geglu", lambda i, c=cfg: fp8_gemm_geglu(x, one, w_gu[i], one, out=act, out_scale=one,
                                                                   cfg=c)),
                         ("qkv+rope", lambda i, c=cfg: fp8_gemm_rope_qkv(x, one, w_qkv[i], one, pos, q_out=q,
                                                                         k_out=kc, v_out=vc, cfg=c))):
            try:
                rows.append((name, t(fn), f"bn={bn} bk={bk} stages={st} warps={nw} tma={tma}"))
            except Exception as e:  # a config the compiler rejects (shared memory, layout) is skipped
                print(f"{name} bn={bn} bk={bk} stages={st} warps={nw} tma={tma}: {type(e).__name__}")
    # o (K 2048) and down (K 4096), N = 1024: cuBLASLt bf16 out vs split-K fp32 partials (summed by the norm)
    for kk, nm in ((2 * d, "o"), (4 * d, "down")) if not a.skip_splitk else ():
        xk = fp8(m, kk)
        ws_ = [fp8(d, kk) for _ in range(N_W)]
        y = torch.empty(m, d, device="cuda", dtype=torch.bfloat16)
        t_cublas = t(lambda i: torch._scaled_mm(xk, ws_[i].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                                out=y))
        print(f"cuBLASLt {nm}: {t_cublas:.2f} us", flush=True)
        for sp, bn, bk, tma in itertools.product([2, 4, 8], [16, 32, 64], [128, 256],
                                                 [False, True] if a.tma else [False]):
            if kk % (sp * bk) or (a.tma and sp == 2):
                continue
            parts = torch.empty(sp, m, d, device="cuda")
            cfg = FusedGemmConfig(block_m=64, block_n=bn, block_k=bk, stages=4, warps=4, tma=tma)
            try:
                rows.append((f"splitk-{nm}", t(lambda i, c=cfg, pp=parts: fp8_gemm_splitk(xk, one, ws_[i], one,
                                                                                          out_partials=pp, cfg=c)),
                             f"splits={sp} bn={bn} bk={bk} tma={tma}"))
            except Exception as e:
                print(f"splitk-{nm} splits={sp} bn={bn} bk={bk} tma={tma}: {type(e).__name__}")
    for name in ("geglu", "qkv+rope", "splitk-o", "splitk-down"):
        for r in sorted((r for r in rows if r[0] == name), key=lambda r: r[1])[:8]:
            print(f"fused {name:9s} {r[1]:6.2f} us  {r[2]}")


if __name__ == "__main__":
    main()
