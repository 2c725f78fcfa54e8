"""RTX 5090 (sm120) tuning table. NOT measured on a 5090 (none is available to this project): derived from Hopper's
measured table for what differs, compile-checked for sm_120a in CI, and run on an H200 under
TRITON_OVERRIDE_ARCH=sm120 (the sm120 lowering executed on Hopper; it checks neither sm120's shared-memory limit nor
its timing, the CI compile check does the first). docs/hardware.md says what is verified and what is assumed.

What differs, and the choice made for it:
- 99 KB of shared memory per block (101,376 B; Hopper 227 KB). Every tile must fit at compile time: the table is
  checked here and each kernel's compiled footprint in CI. Hopper's gate+up tiles (TMA, 4 stages of a 64 x 256
  activation tile and two 32 x 256 weight tiles) compile to 98,360 B for sm120, 3 KB under the limit, and the
  table's own upper estimate refuses them; the split-K and gate+up GEMMs run 3 stages here (65,568 B compiled).
- mma.sync FP8 (m16n8k32 e4m3), no wgmma: operands are staged through shared memory by the warps themselves.
- 170 SMs: attention splits and SigLIP row tiles fill 170 programs, and qkv keeps Hopper's 8-column pairs (160
  programs rather than 80; FP8 gate on an H100 under TRITON_OVERRIDE_ARCH=sm120: worst 0.99820); split-K stays 4
  (K = 2048 / 4096 do not divide into 5 or 6 slabs of 256; 8 would double the partials for 1.5 waves).
- GDDR7 at 1.79 TB/s, 96 MB of L2: the prefix is compute-bound here (docs/hardware.md, latency model).
"""
from flash_rt.hardware.hopper.tuning import TUNING as HOPPER

TUNING = HOPPER.derive(hardware="rtx_sm120", arch=120, mma="mma.sync", sm_count=170, smem_per_block=101376,
                       gemm={**HOPPER.gemm, "geglu": HOPPER.gemm["geglu"].with_overrides(stages=3),
                             "splitk": HOPPER.gemm["splitk"].with_overrides(stages=3)})
