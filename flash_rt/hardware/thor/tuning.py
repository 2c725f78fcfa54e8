"""Jetson AGX Thor (sm110) tuning table. NOT measured on a Thor (none is available to this project): chosen for
what differs from Hopper, compile-checked for sm_110a in CI, and run on an H200 by override (hardware="thor")
with these tiles. docs/hardware.md says what is verified and what is assumed.

What differs, and the choice made for it:
- 20 SMs (Hopper: 132). Every "programs to fill the GPU" rule uses 20: at horizon 50 the decoder attention then runs
  without a key split (25 row tiles of 16 already fill 20 SMs), so its merge pass disappears: 180 fewer graph nodes
  at ~3 us each on Thor (the original system's figure). split-K 2 for o/down: 32 column tiles x 2 = 64 programs, 3.2
  waves of 20, and half the partials the next norm sums.
- Memory, not arithmetic, sets the time (273 GB/s LPDDR5X shared with the CPU; ~517 TFLOP/s FP8): the GEMM tiles
  stay the Hopper ones that stream whole 256-wide K slabs (227 KB of shared memory per block, as on Hopper).
- unified_memory: the graph reads the host's pinned input buffers in place (frontend option zero_copy_io), no
  staging copy within the one DRAM.
- tcgen05 MMA (Triton >= 3.7 builds sm_110a; 3.6 stops at "ptxas fatal: Value 'sm_110a' is not defined").
"""
from flash_rt.kernels.tiles import FlowTiles, FusedGemmConfig, MhaTiles, MqaTiles
from flash_rt.runtime.tuning import GpuTuning

SMS = 20

TUNING = GpuTuning(
    hardware="thor", arch=110, mma="tcgen05", min_triton=(3, 7),
    sm_count=SMS, smem_per_block=232448, unified_memory=True,
    gemm={"rope_qkv": FusedGemmConfig(block_m=64, block_n=16, block_k=256, stages=3, warps=8, tma=False),
          "geglu": FusedGemmConfig(block_m=64, block_n=32, block_k=256, stages=4, warps=4, tma=True),
          "splitk": FusedGemmConfig(block_m=64, block_n=32, block_k=256, stages=4, warps=4, tma=False)},
    split_k=2, fused_max_m=64,
    attention={"decode": MqaTiles(block_m=16, block_n=64, target_programs=SMS, num_warps=4, num_stages=2,
                                  merge_rows=4, merge_warps=8),
               "prefill": MqaTiles(block_m=64, block_n=64, target_programs=SMS, num_warps=4, num_stages=2,
                                   merge_rows=4, merge_warps=8)},
    decode_max_rows=1024,
    full_attention=MhaTiles(block_m=None, block_n=128, num_warps=8, num_stages=2),
    flow_boundary=FlowTiles(chunk=16, num_warps=4),
).check()
