"""Pi0TorchFrontendRtx: Pi0 on RTX 5090 (sm120), FP8, one CUDA graph per forward.

A thin cell on the shared Pi0 GPU frontend (_pi0_cuda.py) with Pi0.5's RTX defaults (no fast accumulation, no
transposed GEMMs). Not measured on a 5090 (none is available to this project); docs/hardware.md says how the RTX
cells are checked on an H200.
"""
from flash_rt.frontends.torch._pi0_cuda import Pi0CudaFrontend
from flash_rt.hardware.rtx.tuning import TUNING


class Pi0TorchFrontendRtx(Pi0CudaFrontend):
    hardware = "rtx_sm120"
    tuning = TUNING
    pipeline = "flash_rt.models.pi0.pipeline_rtx"
    option_defaults = {"fast_accum": False, "transposed_gemms": (), "overlap_first_step": False}
