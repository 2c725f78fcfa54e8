"""Hopper (sm90: H100 / H200 SXM) tuning table: every number here was measured on an H100 80GB HBM3 through the
device tool (docs/benchmarks.md has each A/B run), and re-checked on an H200 (same SMs, 1.4x the bandwidth).

- GEMM tiles: the fused expert GEMMs at M = 50 are latency-bound weight streams. `benchmarks/gemm_sweep.py --pdl
  --tma` per call: qkv+RoPE 4.99 us with TMA tiles vs 5.22 us with pointer loads, yet TMA tiles made the whole
  replay 0.2 ms slower (10.57 vs 10.34 ms: the attention partial after it went 5.76 -> 7.39 us on the critical
  path), so qkv uses pointer loads; gate+up+GeGLU 5.64 us with TMA tiles vs 5.72 us. Rows per program: 64, one
  warpgroup MMA tile (padded rows cost nothing in a weight stream; M = 10 and 50 share one compile). qkv runs
  in 8-column pairs (q, k: the two RoPE halves) loaded as one 16-column MMA, 160 programs of 16 KB of weights:
  replay at 200 slots 10.00 / 9.99 / 10.01 / 9.99 ms against 10.16 / 10.18 / 10.15 / 10.15 with 16-column pairs
  (80 programs of 32 KB) at 2 views, 11.80 vs 11.94 at 3, in both orders (eighteenth session); with the decoder's
  earlier 192-key splits the same change had lost at 2 views (10.47 vs 10.33).
- split-K 4 for o and down (N = 1024: 32 column tiles x 4 = 128 programs on 132 SMs): o 3.01 us, down 3.87 us vs
  cuBLASLt 4.79 / 6.14 us; 8 splits gain <= 0.05 us and double what the norm sums.
- Attention: decode sites (8 heads x horizon rows) on 16-row tiles (8.4 vs 9.3 us with 64), their keys split
  into at most 128 a split, past the 132 SMs if need be (replay at 200 slots, 2 views: 7 splits of 128 keys
  10.15 ms, 5 of 192 10.33 ms; 3 views: 9 of 128 11.98, 6 of 192 12.08; kernels/tiles.py);
  prefill on 64-row tiles, 4 warps (27.0 -> 23.0 us vs 8 warps), split within the SMs (1 view: 2 splits, 116
  programs, replay 8.92 ms; 3 splits, 174 programs, 9.00 ms); merge pass 4 rows on 8 warps (7.71 us vs 8.21
  on 4). SigLIP: 128 keys x 8 warps (10.26 us vs 12.78 for 64 x 64 on 4 warps), rows per program
  from the SM count (3 views: 12.35 -> 12.17 ms replay with 128-row tiles).
- Flow seam: chunk 16 on 4 warps, 5.90 us a call (8/4 6.96, 32/8 6.57, 16/8 7.23).
"""
from flash_rt.kernels.tiles import FlowTiles, FusedGemmConfig, MhaTiles, MqaTiles
from flash_rt.runtime.tuning import GpuTuning

TUNING = GpuTuning(
    hardware="hopper", arch=90, mma="wgmma", min_triton=(3, 6), pdl=True,
    sm_count=132, smem_per_block=232448, unified_memory=False,
    gemm={"rope_qkv": FusedGemmConfig(block_m=64, block_n=8, block_k=256, stages=3, warps=8, tma=False),
          "geglu": FusedGemmConfig(block_m=64, block_n=32, block_k=256, stages=4, warps=4, tma=True),
          "splitk": FusedGemmConfig(block_m=64, block_n=32, block_k=256, stages=4, warps=4, tma=False)},
    split_k=4, fused_max_m=64,
    attention={"decode": MqaTiles(block_m=16, block_n=64, target_programs=132, max_split_keys=128,
                                  num_warps=4, num_stages=2, merge_rows=4, merge_warps=8),
               "prefill": MqaTiles(block_m=64, block_n=64, target_programs=132, max_split_keys=None,
                                   num_warps=4, num_stages=2, merge_rows=4, merge_warps=8)},
    decode_max_rows=1024,
    full_attention=MhaTiles(block_m=None, block_n=128, num_warps=8, num_stages=2),
    flow_boundary=FlowTiles(chunk=16, num_warps=4),
).check()
