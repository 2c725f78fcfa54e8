"""Jetson AGX Thor (sm110) tuning table. NOT measured on a Thor (none is available to this project): derived from
Hopper's measured table for what differs, compile-checked for sm_110a in CI, and run on an H200 by override
(hardware="thor") with these tiles. docs/hardware.md says what is verified and what is assumed.

What differs, and the choice made for it:
- 20 SMs (Hopper: 132). Every "programs to fill the GPU" rule uses 20: at horizon 50 the decoder attention then runs
  without a key split (25 row tiles of 16 already fill 20 SMs), so its merge pass disappears: 180 fewer graph nodes
  at ~3 us each on Thor (the original system's figure). split-K 2 for o/down: 32 column tiles x 2 = 64 programs,
  3.2 waves of 20, and half the partials the next norm sums.
- Memory, not arithmetic, sets the time (273 GB/s LPDDR5X shared with the CPU; ~517 TFLOP/s FP8): the GEMM tiles
  stay Hopper's, which stream whole 256-wide K slabs (227 KB of shared memory per block, as on Hopper), except
  that qkv keeps 16-column pairs: Hopper's 8-column pairs (eighteenth session) double the programs to fill 132
  SMs, and 80 programs already make four waves of 20 here, where the doubled x re-reads would buy nothing.
- unified_memory: the graph reads the host's pinned input buffers in place (frontend option zero_copy_io), no
  staging copy within the one DRAM.
- tcgen05 MMA (Triton >= 3.7 builds sm_110a; 3.6 stops at "ptxas fatal: Value 'sm_110a' is not defined").
"""
from flash_rt.hardware.hopper.tuning import TUNING as HOPPER

TUNING = HOPPER.derive(hardware="thor", arch=110, mma="tcgen05", min_triton=(3, 7), sm_count=20,
                       unified_memory=True, split_k=2,
                       gemm={**HOPPER.gemm, "rope_qkv": HOPPER.gemm["rope_qkv"].with_overrides(block_n=16)})
