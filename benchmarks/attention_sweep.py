"""Decoder-site attention configs on a GPU: per-call time inside a CUDA graph (18 calls captured, as one
expert step has), for the RoPE kernel and the MQA flash-decoding configs. (A RoPE-on-load attention kernel was
measured here too and lost, 19.6 vs 12.2 us; RoPE now rides in the qkv GEMM's epilogue, gemm_fused.py.)

    python3 benchmarks/attention_sweep.py [--pdl] [--site decoder|prefix]

--pdl captures with programmatic dependent launch (kernels/triton/launch.py), as the model now runs.
--site siglip sweeps the SigLIP kernel (mha.py) against the SDPA path it replaced (SDPA + copy + FP8 quantize).
--site prefix sweeps the prefix site instead (8 heads x 576 queries over 576 keys, 18 calls as the prefix has),
against torch SDPA on the same shapes (K/V expanded to 8 heads; with and without the key-padding mask).
"""
import argparse
import itertools
import sys
from pathlib import Path

import torch
import triton

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flash_rt.hardware.hopper.tuning import TUNING  # noqa: E402  (the defaults the sweep starts from)
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
    ap.add_argument("--site", choices=["decoder", "prefix", "siglip", "merge"], default="decoder")
    ap.add_argument("--kv", type=int, nargs="*", help="decoder site: sweep the key splits at these key counts "
                    "(the model's kv_len: 784 for 2 views at 200 prompt slots, 640 at 64)")
    args = ap.parse_args()
    PDL[0] = args.pdl
    if args.site == "prefix":
        return sweep_prefix()
    if args.site == "siglip":
        return sweep_siglip()
    if args.site == "merge":
        return sweep_merge()
    if args.kv:
        return sweep_decoder_splits(args.kv)
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
        ws = MqaWorkspace(n * s_len, kv, h, "cuda", TUNING.attention_tiles(n * s_len).with_overrides(
            block_m=bm, block_n=bn, target_programs=tp, max_split_keys=None, num_warps=nw, num_stages=st))
        f = lambda ws=ws: mqa_attention(q, cache_k[0], cache_v[0], bias, out=out, ws=ws, sm_scale=h ** -0.5)  # noqa
        try:
            rows.append((graph_us(f), f"mqa bm={bm} bn={bn} target={tp} warps={nw} stages={st} splits={ws.splits}"))
        except Exception as e:  # a config the compiler rejects (shared memory) is skipped
            print(f"mqa bm={bm} bn={bn} target={tp} warps={nw} stages={st}: {type(e).__name__}")
    for t, name in sorted(rows)[:25]:
        print(f"{t:8.2f} us  {name}")


def sweep_decoder_splits(kvs, n=8, s_len=50, h=256):
    """The decoder site as the model runs it (FP8 out, partial + merge) at each key count in `kvs`, over the key
    split itself: row tiles x keys per split (a multiple of the key block) instead of the rule's choice from
    target_programs. Why: the decode tiles were swept at 640 keys (2 views, 64 prompt slots), where the rule gives
    5 splits of 128 keys; at openpi's 200 slots (784 keys) the same rule gives 5 splits of 192 keys, a third more
    serial key blocks per program."""
    scale = torch.full((64,), 0.05, device="cuda")[:1]
    q = torch.randn(n, s_len, h, device="cuda").bfloat16()
    out = torch.empty(s_len, n * h, device="cuda", dtype=torch.float8_e4m3fn)
    base = TUNING.attention_tiles(n * s_len)
    for kv in kvs:
        k, v = (torch.randn(kv, h, device="cuda").bfloat16() for _ in range(2))
        bias = torch.zeros(kv, device="cuda", dtype=torch.bfloat16)
        rows = []
        default = MqaWorkspace(n * s_len, kv, h, "cuda", base)
        configs = [(None, base.block_m, base.block_n)]
        for bm, bn in itertools.product([16, 32], [32, 64]):
            m_blocks = triton.cdiv(n * s_len, bm)
            for kps in range(bn, kv + bn, bn):
                if 40 <= m_blocks * triton.cdiv(kv, kps) <= 300:
                    configs.append((kps, bm, bn))
        for kps, bm, bn in configs:
            ws = MqaWorkspace(n * s_len, kv, h, "cuda", base.with_overrides(block_m=bm, block_n=bn),
                              keys_per_split=kps)
            f = lambda ws=ws: mqa_attention(q, k, v, bias, out=out, ws=ws, sm_scale=h ** -0.5,  # noqa: E731
                                            out_scale=scale)
            progs = triton.cdiv(n * s_len, bm) * ws.splits
            tag = "rule" if kps is None else "    "
            rows.append((graph_us(f), f"{tag} bm={bm} bn={bn} keys/split={ws.keys_per_split} splits={ws.splits} "
                                      f"programs={progs}"))
        print(f"\ndecoder, {kv} keys (rule: {default.splits} splits of {default.keys_per_split}), partial + merge, "
              f"us per call of 18:")
        for t, name in sorted(rows)[:12] + [r for r in rows if r[1].startswith("rule")]:
            print(f"{t:8.2f} us  {name}")


def sweep_merge(n=8, s_len=50, p_len=576, h=256):
    """The decoder site with its default partial pass (16-row tiles, 5 key splits) and FP8 out: the merge pass's
    rows per program and warps (the merge is ~2.6 us of every decoder attention on the critical path)."""
    kv = p_len + 64
    k, v = (torch.randn(kv, h, device="cuda").bfloat16() for _ in range(2))
    bias = torch.zeros(kv, device="cuda", dtype=torch.bfloat16)
    q = torch.randn(n, s_len, h, device="cuda").bfloat16()
    out = torch.empty(s_len, n * h, device="cuda", dtype=torch.float8_e4m3fn)
    scale = torch.full((64,), 0.05, device="cuda")[:1]
    for rows, warps in itertools.product([2, 4, 8, 16], [1, 2, 4, 8]):
        ws = MqaWorkspace(n * s_len, kv, h, "cuda", TUNING.attention_tiles(n * s_len).with_overrides(
            merge_rows=rows, merge_warps=warps))
        f = lambda ws=ws: mqa_attention(q, k, v, bias, out=out, ws=ws, sm_scale=h ** -0.5,  # noqa: E731
                                        out_scale=scale)
        print(f"merge rows={rows:2d} warps={warps}: {graph_us(f):.2f} us (partial + merge, {ws.splits} splits)")


def sweep_prefix(n=8, p_len=576, h=256):
    """The prefix site: one pass over 4,608 stacked query rows. The default (64-row tiles, one split) runs 72
    programs on 132 SMs; this asks whether smaller row tiles, key splits or SDPA do better."""
    import torch.nn.functional as F
    q = torch.randn(n, p_len, h, device="cuda").bfloat16()
    k = torch.randn(p_len, h, device="cuda").bfloat16()
    v = torch.randn(p_len, h, device="cuda").bfloat16()
    bias = torch.zeros(p_len, device="cuda", dtype=torch.bfloat16)
    bias[p_len - 10:] = float("-inf")  # padded prompt slots, as the model has
    out = torch.empty(p_len, n * h, device="cuda", dtype=torch.bfloat16)
    qs, ke, ve = q[None], k[None, None].expand(1, n, p_len, h), v[None, None].expand(1, n, p_len, h)
    mask = bias.view(1, 1, 1, -1).expand(1, n, p_len, p_len)
    kc, vc = ke.contiguous(), ve.contiguous()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    for name, backend, m in [("flash, no mask", SDPBackend.FLASH_ATTENTION, None),
                             ("cudnn, no mask", SDPBackend.CUDNN_ATTENTION, None),
                             ("cudnn, mask", SDPBackend.CUDNN_ATTENTION, mask),
                             ("efficient, mask", SDPBackend.EFFICIENT_ATTENTION, mask)]:
        def f(backend=backend, m=m):
            with sdpa_kernel(backend):
                F.scaled_dot_product_attention(qs, kc, vc, attn_mask=m, scale=h ** -0.5)
        try:
            print(f"{graph_us(f):8.2f} us  sdpa {name} (K/V expanded)")
        except Exception as e:
            print(f"sdpa {name}: {type(e).__name__}: {str(e)[:120]}")
    rows = []
    for bm, bn, tp, nw, st in itertools.product([32, 64, 128], [32, 64, 128], [72, 132, 264], [4, 8], [2]):
        try:
            ws = MqaWorkspace(n * p_len, p_len, h, "cuda", TUNING.attention_tiles(n * p_len).with_overrides(
                block_m=bm, block_n=bn, target_programs=tp, num_warps=nw, num_stages=st))
            f = lambda ws=ws: mqa_attention(q, k, v, bias, out=out, ws=ws, sm_scale=h ** -0.5)  # noqa: E731
            rows.append((graph_us(f), f"mqa bm={bm} bn={bn} target={tp} warps={nw} stages={st} splits={ws.splits}"))
        except Exception as e:  # a config the compiler rejects (shared memory) is skipped
            print(f"mqa bm={bm} bn={bn} target={tp} warps={nw} stages={st}: {type(e).__name__}")
    default = MqaWorkspace(n * p_len, p_len, h, "cuda", TUNING.attention_tiles(n * p_len))
    print(f"default: bm={default.block_m} bn={default.block_n} warps={default.num_warps} "
          f"stages={default.num_stages} splits={default.splits}")
    for t, name in sorted(rows)[:25]:
        print(f"{t:8.2f} us  {name}")


def sweep_siglip(views=2, n=16, t=256, hd=72):
    """The SigLIP site as the model runs it: q/k/v are views of the qkv GEMM's rows, FP8 out."""
    import torch.nn.functional as F
    from flash_rt.kernels.triton import quantize_fp8
    from flash_rt.kernels.triton.mha import mha_attention
    qkv = (torch.randn(views, t, 3 * n * hd, device="cuda") * 2).bfloat16()
    q, k, v = qkv.view(views, t, 3, n, hd).permute(2, 0, 3, 1, 4)
    att = torch.empty(views, t, n * hd, device="cuda", dtype=torch.bfloat16)
    att8 = torch.empty(views * t, n * hd, device="cuda", dtype=torch.float8_e4m3fn)
    scale = torch.full((64,), 0.01, device="cuda")[:1]

    def sdpa_path():
        o = F.scaled_dot_product_attention(q, k, v, scale=hd ** -0.5)
        att.view(views, t, n, hd).copy_(o.transpose(1, 2))
        quantize_fp8(att.view(views * t, n * hd), scale, out=att8)
    print(f"{graph_us(sdpa_path, calls=27):8.2f} us  sdpa + copy + quantize_fp8 (the path before mha.py)")
    rows = []
    for bm, bn, nw, st in itertools.product([32, 64, 128], [32, 64, 128, 256], [4, 8], [1, 2]):
        f = lambda bm=bm, bn=bn, nw=nw, st=st: mha_attention(  # noqa: E731
            q, k, v, out=att8.view(views, t, n * hd), sm_scale=hd ** -0.5, out_scale=scale, block_m=bm,
            block_n=bn, num_warps=nw, num_stages=st)
        try:
            rows.append((graph_us(f, calls=27), f"mha bm={bm} bn={bn} warps={nw} stages={st}"))
        except Exception as e:  # a config the compiler rejects (shared memory) is skipped
            print(f"mha bm={bm} bn={bn} warps={nw} stages={st}: {type(e).__name__}")
    for tm, name in sorted(rows)[:15]:
        print(f"{tm:8.2f} us  {name}")


if __name__ == "__main__":
    main()
