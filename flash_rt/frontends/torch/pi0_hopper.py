"""Pi0TorchFrontendHopper: Pi0 on H100 / H200 (sm90), FP8 weights + activations, one CUDA graph per forward.

A thin cell on the shared Pi0 GPU frontend (_pi0_cuda.py), with Pi0.5's measured Hopper defaults where the
computation is the same (the prefix: fast accumulation for the gate+up GEMMs, the transposed down GEMM); flow step 0
beside the prefix is Pi0.5's schedule and is not used here (Pi0's flow steps wait for the state pass).
"""
from flash_rt.frontends.torch._pi0_cuda import Pi0CudaFrontend
from flash_rt.hardware.hopper.tuning import TUNING


class Pi0TorchFrontendHopper(Pi0CudaFrontend):
    hardware = "hopper"
    tuning = TUNING
    pipeline = "flash_rt.models.pi0.pipeline_hopper"
    option_defaults = {"fast_accum": ("gu_w",), "transposed_gemms": ("down_w",), "overlap_first_step": False}
