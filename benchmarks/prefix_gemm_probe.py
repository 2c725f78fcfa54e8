"""Prefix and SigLIP FP8 GEMMs (cuBLASLt through torch._scaled_mm) in the orientations and options the model could
use: per call inside a CUDA graph, rotating over distinct weight copies so weights stream from HBM as in the model.

Why: at M = 576 (prefix) and M = 512 (SigLIP, 2 views) cuBLASLt's own tile choice decides ~3.4 ms of the
forward. Measured here: the model's orientation (activations as A), the transposed problem (weights as A, so
cuBLASLt tiles the large N as its M), and fast accumulation. A variant only pays if it beats the model's by more
than the cost of a transposing consumer.

    python3 benchmarks/prefix_gemm_probe.py [--views 2] [--tokens 64]
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_sweep import graph_us  # noqa: E402

F8 = torch.float8_e4m3fn


def fp8(*shape):
    return (torch.randn(*shape, device="cuda") * 40).clamp(-448, 448).to(F8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64)
    a = ap.parse_args()
    p_len = a.views * 256 + a.tokens
    v_len = a.views * 256
    shapes = [("prefix qkv", p_len, 2048, 2560), ("prefix o", p_len, 2048, 2048),
              ("prefix gate+up", p_len, 2048, 32768), ("prefix down", p_len, 16384, 2048),
              ("siglip qkv", v_len, 1152, 3456), ("siglip o", v_len, 1152, 1152),
              ("siglip fc1", v_len, 1152, 4304), ("siglip fc2", v_len, 4304, 1152)]
    one = torch.ones(1, device="cuda")
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; us per call (graph of rotating weights)")
    print("| GEMM | M x K x N | model (act @ W.T) | fast accum | transposed (W @ act.T) | transposed + fast "
          "| transposed into out.t() | same + fast |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m, k, n in shapes:
        n_w = max(2, min(24, int(200e6 // (n * k))))   # > 50 MB of weights per graph: HBM, not L2
        ws = [fp8(n, k) for _ in range(n_w)]
        x = fp8(m, k)
        out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
        out_t = torch.empty(n, m, device="cuda", dtype=torch.bfloat16)
        st = {"i": 0}

        def call(transposed, fast):
            w = ws[st["i"] % n_w]
            st["i"] += 1
            if transposed == "into":   # the transposed problem written straight into the row-major out
                torch._scaled_mm(w, x.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                 use_fast_accum=fast, out=out.t())
            elif transposed:
                torch._scaled_mm(w, x.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                 use_fast_accum=fast, out=out_t)
            else:
                torch._scaled_mm(x, w.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                                 use_fast_accum=fast, out=out)
        ref = torch._scaled_mm(x, ws[0].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
        st["i"] = 0
        call("into", False)
        torch.cuda.synchronize()
        same = torch.equal(out, ref)
        res = [graph_us(lambda t=t, f=f: call(t, f), calls=n_w, reps=20)
               for t, f in ((False, False), (False, True), (True, False), (True, True), ("into", False),
                            ("into", True))]
        tf = 2 * m * k * n / 1e6
        print(f"| {name} | {m} x {k} x {n} | " + " | ".join(f"{r:.1f} ({tf / r:.0f} TF/s)" for r in res)
              + f" |  (out.t() result == model's: {same})")


if __name__ == "__main__":
    main()
