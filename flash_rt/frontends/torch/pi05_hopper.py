"""Pi05TorchFrontendHopper: Pi0.5 on H100 / H200 (sm90), FP8 weights + activations, one CUDA graph per forward.

A thin cell on the shared Pi0.5 GPU frontend (_pi05_cuda.py): what is Hopper's own is its tuning table
(hardware/hopper/tuning.py), its compute file (models/pi05/pipeline_hopper.py) and these option defaults, each
measured on an H100 (docs/benchmarks.md has the A/B runs):
- fast_accum ("gu_w",): cuBLASLt FP8 fast accumulation for the prefix gate+up GEMMs only (K = 2048, the shortest
  sums): 75 -> 64 us a call, ~0.15 ms a replay, same worst cosine (0.99749 vs 0.99743); the K = 16384 down GEMM
  stays exact. Only Hopper has reduced-precision FP8 accumulation to trade.
- transposed_gemms ("down_w",): the prefix down GEMM runs as W @ act.T, which cuBLASLt tiles better at M = 576:
  48.0 -> 37.0 us a call; o and gate+up measured no gain in the model (10.14 vs 10.11 ms, 10.06 vs 10.05 ms).
- overlap_first_step: flow step 0 beside the prefix on a second stream, ~0.6 ms less a replay (bit-identical).
"""
from flash_rt.frontends.torch._pi05_cuda import Pi05CudaFrontend
from flash_rt.hardware.hopper.tuning import TUNING


class Pi05TorchFrontendHopper(Pi05CudaFrontend):
    hardware = "hopper"
    tuning = TUNING
    pipeline = "flash_rt.models.pi05.pipeline_hopper"
    option_defaults = {"fast_accum": ("gu_w",), "transposed_gemms": ("down_w",), "overlap_first_step": True}
