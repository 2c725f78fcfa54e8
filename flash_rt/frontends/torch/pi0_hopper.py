"""Pi0TorchFrontendHopper: Pi0 on H100 / H200 (sm90), FP8 weights + activations, one CUDA graph per forward.

A thin cell on the shared Pi0 GPU frontend (_pi0_cuda.py), with Pi0.5's measured Hopper defaults where the
computation is the same (the prefix: fast accumulation for the gate+up GEMMs, the transposed down GEMM), and the state
pass and flow step 0 beside the prefix on a second stream (overlap_first_step, Pi0.5's Hopper schedule plus the state
pass): measured on an H200, 2 views, horizon 50, same run (`benchmarks/pi0_latency.py --ab overlap`, eleventh
session): 10.07 against 10.55 ms a replay (0.955), the chunk bit-identical.
"""
from flash_rt.frontends.torch._pi0_cuda import Pi0CudaFrontend
from flash_rt.hardware.hopper.tuning import TUNING


class Pi0TorchFrontendHopper(Pi0CudaFrontend):
    hardware = "hopper"
    tuning = TUNING
    pipeline = "flash_rt.models.pi0.pipeline_hopper"
    option_defaults = {"fast_accum": ("gu_w",), "transposed_gemms": ("down_w",), "overlap_first_step": True}
