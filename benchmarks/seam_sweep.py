"""The expert's row kernels per call. The seam between two flow steps (kernels/triton/flow_boundary.py) per call, inside a CUDA graph of 18 calls,
against the four pieces it replaces (gated adaRMS, split-K action_out + Euler, the cuBLAS action_in addmm, the
next layer-0 adaRMS). Expert sizes: 50 rows, D 1024, A 32, 4 split-K partials, FP8 out.

    python3 benchmarks/seam_sweep.py [--pdl] [--rows 50]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from attention_sweep import PDL, graph_us  # noqa: E402
from flash_rt.kernels.triton import ada_rms_norm, flow_boundary, gated_add_ada_rms_norm, linear_flow_update  # noqa: E402
from flash_rt.kernels.triton.misc import LinearFlowWorkspace  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdl", action="store_true")
    ap.add_argument("--rows", type=int, default=50)
    args = ap.parse_args()
    PDL[0] = args.pdl
    m, d, a, dev = args.rows, 1024, 32, "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    r = lambda *s, sc=1.0: torch.randn(*s, generator=g, device=dev) * sc   # noqa: E731
    x_t, res, parts = r(m, a), r(m, d), r(4, m, d)
    gate, sc, sh, sc1, sh1 = r(d), r(d, sc=0.1), r(d), r(d, sc=0.1), r(d)
    w_out, b_out, w_in, b_in = r(a, d, sc=0.03), r(a), r(a, d, sc=0.1), r(d)
    scale = torch.full((64,), 0.05, device=dev)[:1]
    out8 = torch.empty(m, d, device=dev, dtype=torch.float8_e4m3fn)
    hf = torch.empty(m, d, device=dev)
    w_out_t = w_out.t().contiguous()
    ws = LinearFlowWorkspace(m, d, a, dev)
    print(f"{torch.cuda.get_device_name()}, rows {m}, PDL {'on' if args.pdl else 'off'} (us per call)")

    def pieces():
        gated_add_ada_rms_norm(res, parts, gate, sc, sh, 1e-6, out=hf)
        linear_flow_update(x_t, hf, w_out_t, b_out, -0.1, ws=ws)
        torch.addmm(b_in, x_t, w_in, out=res)
        ada_rms_norm(res, sc1, sh1, 1e-6, out=out8, out_scale=scale)

    print(f"pieces (norm + split-K flow + addmm + norm): {graph_us(pieces):.2f}")
    for chunk, warps in ((8, 4), (16, 2), (16, 4), (16, 8), (32, 4), (32, 8)):
        def seam(chunk=chunk, warps=warps):
            flow_boundary(x_t, res, parts, gate, sc, sh, w_out, b_out, -0.1, w_in=w_in, b_in=b_in,
                          next_scale=sc1, next_shift=sh1, out=out8, out_scale=scale, chunk=chunk, num_warps=warps)
        try:
            print(f"flow_boundary chunk {chunk:2d}, {warps:2d} warps: {graph_us(seam):.2f}")
        except Exception as e:   # noqa: BLE001 (a config that does not compile is a result of the sweep)
            print(f"flow_boundary chunk {chunk:2d}, {warps:2d} warps: failed ({type(e).__name__}: {str(e)[:80]})")
    # the expert's other row kernel, the gated adaRMS over 4 split-K partials into FP8 (35 per flow step):
    # warps per one-row program (norms.row_warps gives 4 for D = 1024)
    import flash_rt.kernels.triton.norms as norms
    from flash_rt.kernels.triton import add_layer_norm, add_rms_norm
    rule = norms.row_warps
    # the prefix's add_rms_norm (576 x 2048, bf16 y) and SigLIP's add_layer_norm (512 x 1152), both into FP8
    pres, py, p8 = r(576, 2048), r(576, 2048).bfloat16(), torch.empty(576, 2048, device=dev, dtype=out8.dtype)
    vres, vy, v8 = r(512, 1152), r(512, 1152).bfloat16(), torch.empty(512, 1152, device=dev, dtype=out8.dtype)
    vw, vb = r(1152, sc=0.1), r(1152)
    sites = {"expert gated_add_ada_rms_norm 50 x 1024 over 4 partials":
             lambda: gated_add_ada_rms_norm(res, parts, gate, sc, sh, 1e-6, out=out8, out_scale=scale),
             "prefix add_rms_norm 576 x 2048": lambda: add_rms_norm(pres, py, None, 1e-6, out=p8, out_scale=scale),
             "SigLIP add_layer_norm 512 x 1152": lambda: add_layer_norm(vres, vy, vw, vb, 1e-6, out=v8,
                                                                        out_scale=scale)}
    for name, f in sites.items():
        for warps in (2, 4, 8, 16):
            norms.row_warps = lambda block, warps=warps: warps
            print(f"{name}, {warps:2d} warps: {graph_us(f):.2f}")
    norms.row_warps = rule


if __name__ == "__main__":
    main()
