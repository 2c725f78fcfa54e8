"""Pi0's fp8 build: which blocks of the GPU forward stay BF16 (bf16 weights, bf16 activations), as data (the blocks
and their predicate: runtime/bf16_blocks.py, shared with Pi0.5's outlier remedy).

The fp8 cells keep the blocks of `bf16_blocks` (default DEFAULT_BF16_BLOCKS: the vision tower) in BF16 -- bf16
weights, bf16 activations -- and the rest (the prefix LLM and the expert) in FP8 (frontends/torch/_pi0_cuda.py,
`bf16_blocks`).
Measured on an H200 (2026-12-04, full-size random Pi0, 2 views, horizon 50, 20 observations a run, worst cosine vs the
FP32 reference, benchmarks/pi0_full_precision.py): all FP8 0.99338; vision in BF16 0.99722 / 0.99716 / 0.99722
(three runs); vision + expert 0.99754 / 0.99718 / 0.99730; BF16 0.999996. The expert in BF16 buys nothing measurable
at full size and its weights stream once per flow step, so the default keeps only the vision tower in BF16.
Why, measured on the CPU (the micro Pi0 under the interpreter, test_pi0_fp8_precision_interpret.py, and a mid-size
Pi0 -- 6+6 layers, 2 views, horizon 50, 10 steps -- through the kernels' torch twins): no site is broken -- every
site's E4M3 rounding is 2.5-3 % relative, the same as Pi0.5's, every scale calibrated, none default -- but Pi0's
velocity carries it in full: its expert adds each layer's output to the residual ungated (Pi0.5's adaRMS gates scale
them) and attends to the prefix the vision tower feeds. The same fake FP8 rounding of activations alone costs the
micro Pi0 1 - cos = 7.5e-4 and the micro Pi0.5 3e-6. Per-block ablation, worst cosine (BF16 in that block only):
  micro, interpreter, 2 obs: all FP8 0.99722; expert 0.99855; vision 0.99808; prefix 0.99658; state row 0.99710
  mid, twins, 6 obs:         all FP8 0.99022; expert 0.99177; vision 0.99825; prefix 0.99137; state row 0.99042;
                             vision + expert 0.99916
  big, twins, 4 obs (14 SigLIP / 10 LLM + expert layers, width 256 / 512 / 256, 2 x 256 patches, horizon 50,
  10 steps): all FP8 0.99668; vision 0.99842; expert 0.99725; prefix 0.99654; vision + expert 0.99888
No one site carries it (within the vision tower: ln1 0.99469, attn 0.99391, ln2 0.99133, gelu 0.99101, post_ln
0.99230); the vision tower grows with depth (27 layers at full size), the expert with the flow steps.
"""
from __future__ import annotations

from flash_rt.runtime.bf16_blocks import BLOCKS, Bf16Blocks, gemm_block, site_block

__all__ = ["BLOCKS", "DEFAULT_BF16_BLOCKS", "Bf16Blocks", "gemm_block", "site_block"]

DEFAULT_BF16_BLOCKS = ("vision",)
