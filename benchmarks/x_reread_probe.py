"""What the activation tile costs the expert's fused FP8 GEMMs: per call at M = 64 / 50 / 32 / 16 / 1 rows.

Why: every program of an expert GEMM streams its own weight columns but reads the whole activation tile x
[M, K] (FP8, L2-resident) as well. Over a GEMM that is W * (1 + M / cols_per_x_read) bytes into the SMs:
gate+up (64 weight rows a program) reads 1.78x its weights, qkv + RoPE and the split-K o / down (32 rows)
2.56x. If the calls wait on bytes into each SM, fewer rows must be faster at the same weights, and sharing x
between the programs of a cluster (TMA multicast) is worth building; if M = 1 costs about what M = 50 does,
the x re-read is not the limit and multicast is not worth its complexity. Same kernels, tiles and PDL chain as
the model (hopper tuning table, 36 calls a graph, each on its own weights: HBM; and one shared weight: L2).

    python3 benchmarks/x_reread_probe.py [--rows 64 50 32 16 1]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_sweep import PDL, graph_us  # noqa: E402
from gemm_sweep import N_W, fp8, rotating  # noqa: E402
from flash_rt.hardware.hopper.tuning import TUNING  # noqa: E402
from flash_rt.kernels.triton.gemm_fused import fp8_gemm_geglu, fp8_gemm_rope_qkv, fp8_gemm_splitk  # noqa: E402

D, F, NQ, H, SPLITS = 1024, 4096, 8, 256, TUNING.split_k


def site_calls(m: int, shared: bool, block_m: int | None = None):
    """{site: fn(i)} for the four expert GEMMs at m rows; shared=True gives every call weight 0 (L2-resident);
    block_m overrides the table's rows per program (64 = one wgmma tile; 32 / 16 take mma.sync and split the
    rows over 2 / 4 programs, each reading a part of x)."""
    one = torch.ones(1, device="cuda")
    n_w = 1 if shared else N_W
    g = {k: c if block_m is None else c.with_overrides(block_m=block_m) for k, c in TUNING.gemm.items()}
    x = fp8(m, D)
    w_gu = [fp8(2 * F, D) for _ in range(n_w)]
    act = torch.empty(m, F, device="cuda", dtype=torch.float8_e4m3fn)
    w_qkv = [fp8((NQ + 2) * H, D) for _ in range(n_w)]
    q = torch.empty(NQ, m, H, device="cuda", dtype=torch.bfloat16)
    kc = torch.zeros(1, m, H, device="cuda", dtype=torch.bfloat16)
    vc = torch.zeros_like(kc)
    pos = torch.arange(m, device="cuda") + 576
    x_o, x_d = fp8(m, 2 * D), fp8(m, F)
    w_o = [fp8(D, 2 * D) for _ in range(n_w)]
    w_d = [fp8(D, F) for _ in range(n_w)]
    parts = torch.empty(SPLITS, m, D, device="cuda")
    return {
        "qkv+rope": lambda i: fp8_gemm_rope_qkv(x, one, w_qkv[i % n_w], one, pos, q_out=q, k_out=kc, v_out=vc,
                                                cfg=g["rope_qkv"]),
        "gate+up": lambda i: fp8_gemm_geglu(x, one, w_gu[i % n_w], one, out=act, out_scale=one, cfg=g["geglu"]),
        "o": lambda i: fp8_gemm_splitk(x_o, one, w_o[i % n_w], one, out_partials=parts, cfg=g["splitk"]),
        "down": lambda i: fp8_gemm_splitk(x_d, one, w_d[i % n_w], one, out_partials=parts, cfg=g["splitk"]),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[64, 50, 32, 16, 1])
    ap.add_argument("--no-pdl", action="store_true")
    a = ap.parse_args()
    PDL[0] = not a.no_pdl
    print(f"{torch.cuda.get_device_name()}, PDL {PDL[0]}, us per call (median of 20 replays of {N_W} calls)")
    table = {}
    for shared in (False, True):
        for m in a.rows:
            for site, fn in site_calls(m, shared).items():
                table[site, m, shared] = graph_us(rotating(fn), calls=N_W)
            torch.cuda.empty_cache()
    for bm in (32, 16):
        for site, fn in site_calls(50, False, block_m=bm).items():
            try:
                table[site, "bm", bm] = graph_us(rotating(fn), calls=N_W)
            except Exception as e:  # a tile the compiler rejects is reported, not fatal
                print(f"{site} block_m={bm}: {type(e).__name__}: {str(e)[:160]}")
                table[site, "bm", bm] = float("nan")
    for shared in (False, True):
        print(f"\nweights {'L2-resident (one shared)' if shared else 'from HBM (36 distinct)'}")
        head = " ".join(f"M={m:<5d}" for m in a.rows)
        print(f"{'site':9s} {head}" + "  M=50 - M=1" * (50 in a.rows and 1 in a.rows))
        for site in ("qkv+rope", "gate+up", "o", "down"):
            row = " ".join(f"{table[site, m, shared]:7.2f}" for m in a.rows)
            diff = (f"  {table[site, 50, shared] - table[site, 1, shared]:+.2f}"
                    if 50 in a.rows and 1 in a.rows else "")
            print(f"{site:9s} {row}{diff}")

    print("\nM = 50, weights from HBM, rows per program (the table's 64 against 32 and 16)")
    for site in ("qkv+rope", "gate+up", "o", "down"):
        print(f"{site:9s} 64: {table[site, 50, False]:6.2f}  32: {table[site, 'bm', 32]:6.2f}  "
              f"16: {table[site, 'bm', 16]:6.2f}")


if __name__ == "__main__":
    main()
