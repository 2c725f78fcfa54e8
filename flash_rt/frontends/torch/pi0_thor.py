"""Pi0TorchFrontendThor: Pi0 on Jetson AGX Thor (sm110), FP8, one CUDA graph per forward.

A thin cell on the shared Pi0 GPU frontend (_pi0_cuda.py) with Pi0.5's Thor defaults (zero-copy IO from the
table's unified memory, no fast accumulation, no transposed GEMMs). Not measured on a Thor (none is available to
this project): run on an H200 by override (hardware="thor"); docs/hardware.md says what that verifies.
"""
from flash_rt.frontends.torch._pi0_cuda import Pi0CudaFrontend
from flash_rt.hardware.thor.tuning import TUNING


class Pi0TorchFrontendThor(Pi0CudaFrontend):
    hardware = "thor"
    tuning = TUNING
    pipeline = "flash_rt.models.pi0.pipeline_thor"
    option_defaults = {"fast_accum": False, "transposed_gemms": (), "overlap_first_step": False}
