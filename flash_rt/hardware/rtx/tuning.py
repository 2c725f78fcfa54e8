"""RTX 5090 (sm120) tuning table. NOT measured on a 5090 (none is available to this project): chosen for what
differs from Hopper, compile-checked for sm_120a in CI, and run on an H200 under TRITON_OVERRIDE_ARCH=sm120 (the
sm120 lowering executed on Hopper; it checks neither sm120's shared-memory limit nor its timing, the CI compile
check does the first). docs/hardware.md says what is verified and what is assumed.

What differs, and the choice made for it:
- 99 KB of shared memory per block (101,376 B; Hopper 227 KB). Every tile must fit at compile time: the table is
  checked here and each kernel's compiled footprint in CI. Hopper's gate+up tiles (TMA, 4 stages of a 64 x 256
  activation tile and two 32 x 256 weight tiles) need 98,360 B: they fit with 3 KB to spare, so the split-K and
  gate+up GEMMs drop to 3 stages here, which leaves room for the epilogue on the mma.sync path (below).
- mma.sync FP8 (m16n8k32 e4m3), no wgmma: operands are staged through shared memory by the warps themselves.
- 170 SMs: attention splits and SigLIP row tiles fill 170 programs; split-K stays 4 (K = 2048 / 4096 do not
  divide into 5 or 6 slabs of 256; 8 would double the partials for 1.5 waves).
- GDDR7 at 1.79 TB/s, 96 MB of L2: the prefix is compute-bound here (docs/hardware.md, latency model).
"""
from flash_rt.kernels.tiles import FlowTiles, FusedGemmConfig, MhaTiles, MqaTiles
from flash_rt.runtime.tuning import GpuTuning

SMS = 170

TUNING = GpuTuning(
    hardware="rtx_sm120", arch=120, mma="mma.sync", min_triton=(3, 6),
    sm_count=SMS, smem_per_block=101376, unified_memory=False,
    gemm={"rope_qkv": FusedGemmConfig(block_m=64, block_n=16, block_k=256, stages=3, warps=8, tma=False),
          "geglu": FusedGemmConfig(block_m=64, block_n=32, block_k=256, stages=3, warps=4, tma=True),
          "splitk": FusedGemmConfig(block_m=64, block_n=32, block_k=256, stages=3, warps=4, tma=False)},
    split_k=4, fused_max_m=64,
    attention={"decode": MqaTiles(block_m=16, block_n=64, target_programs=SMS, num_warps=4, num_stages=2,
                                  merge_rows=4, merge_warps=8),
               "prefill": MqaTiles(block_m=64, block_n=64, target_programs=SMS, num_warps=4, num_stages=2,
                                   merge_rows=4, merge_warps=8)},
    decode_max_rows=1024,
    full_attention=MhaTiles(block_m=None, block_n=128, num_warps=8, num_stages=2),
    flow_boundary=FlowTiles(chunk=16, num_warps=4),
).check()
