"""Decoder-site attention configs on a GPU: per-call time inside a CUDA graph (18 calls captured, as one
expert step has), for the RoPE kernel and the MQA flash-decoding configs. (A RoPE-on-load attention kernel was
measured here too and lost, 19.6 vs 12.2 us; RoPE now rides in the qkv GEMM's epilogue, gemm_fused.py.)

    python3 benchmarks/attention_sweep.py [--pdl]

--pdl captures with programmatic dependent launch (kernels/triton/launch.py), as the model now runs.
"""
import argparse
import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flash_rt.kernels.triton import rope_qkv_split  # noqa: E402
from flash_rt.kernels.triton.attention import MqaWorkspace, mqa_attention  # noqa: E402
from flash_rt.kernels.triton.launch import programmatic_dependent_launch  # noqa: E402

PDL = [False]   # set by --pdl (here and in gemm_sweep.py, which shares graph_us)


def graph_us(fn, calls=18, reps=20):
    s = torch.cuda.Stream()
    with programmatic_dependent_launch(PDL[0]):
        with torch.cuda.stream(s):
            fn()
            fn()
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s):
            for _ in range(calls):
                fn()
    g.replay()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for _ in range(reps):
        e0.record()
        g.replay()
        e1.record()
        torch.cuda.synchronize()
        ts.append(e0.elapsed_time(e1) * 1e3 / calls)
    return sorted(ts)[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pdl", action="store_true", help="capture with programmatic dependent launch")
    PDL[0] = ap.parse_args().pdl
    n, s_len, p_len, h = 8, 50, 576, 256
    kv = p_len + 64
    qkv = torch.randn(s_len, (n + 2) * h, device="cuda").bfloat16()
    pos = torch.arange(s_len, device="cuda") + p_len
    cache_k = torch.randn(1, kv, h, device="cuda").bfloat16()
    cache_v = torch.randn(1, kv, h, device="cuda").bfloat16()
    bias = torch.zeros(kv, device="cuda", dtype=torch.bfloat16)
    q = torch.empty(n, s_len, h, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(s_len, n * h, device="cuda", dtype=torch.bfloat16)
    rope = lambda: rope_qkv_split(qkv, pos, q_out=q, k_out=cache_k[:, p_len:p_len + s_len],  # noqa: E731
                                  v_out=cache_v[:, p_len:p_len + s_len])
    print(f"rope_qkv_split alone: {graph_us(rope):.2f} us")
    rows = []
    # targets 13..50 give 1-2 key splits (no or little merge work, longer key loops); 132 / 264 give 5-10
    for bm, bn, tp, nw, st in itertools.product([16, 32], [64, 128], [13, 25, 50, 132, 264], [4, 8], [2]):
        ws = MqaWorkspace(n * s_len, kv, h, "cuda", block_m=bm, block_n=bn, target_programs=tp, num_warps=nw,
                          num_stages=st)
        f = lambda ws=ws: mqa_attention(q, cache_k[0], cache_v[0], bias, out=out, ws=ws, sm_scale=h ** -0.5)  # noqa
        try:
            rows.append((graph_us(f), f"mqa bm={bm} bn={bn} target={tp} warps={nw} stages={st} splits={ws.splits}"))
        except Exception as e:  # a config the compiler rejects (shared memory) is skipped
            print(f"mqa bm={bm} bn={bn} target={tp} warps={nw} stages={st}: {type(e).__name__}")
    for t, name in sorted(rows)[:25]:
        print(f"{t:8.2f} us  {name}")


if __name__ == "__main__":
    main()
