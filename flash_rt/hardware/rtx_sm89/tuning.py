"""RTX 4090 class (sm89, Ada: RTX 4090, L4, L40S -- common on robot carts) tuning table. NOT measured on an Ada
card (none is available to this project): derived from the RTX 5090 table, which already fits 99 KB of shared
memory per block and mma.sync FP8; compile-checked for sm_89 in CI. docs/hardware.md says what is assumed.

What differs from the 5090's, and the choice made for it:
- No tensor memory accelerator: the gate+up GEMM streams its tiles with pointer loads (tma off), as the qkv and
  split-K GEMMs already do.
- No programmatic dependent launch (griddepcontrol is sm90+): every kernel launches plainly (pdl off).
- 128 SMs (4090): the attention splits and SigLIP's row tiles fill 128 programs.
- FP8 mma.sync (m16n8k32 e4m3) arrived with Ada: Triton lowers the same dots to it.
"""
from flash_rt.hardware.rtx.tuning import TUNING as RTX_SM120

TUNING = RTX_SM120.derive(hardware="rtx_sm89", arch=89, sm_count=128, pdl=False,
                          gemm={**RTX_SM120.gemm, "geglu": RTX_SM120.gemm["geglu"].with_overrides(tma=False)})
