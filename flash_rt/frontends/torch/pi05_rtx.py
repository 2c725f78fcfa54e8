"""Pi05TorchFrontendRtx: Pi0.5 on RTX 5090 (sm120), FP8 weights + activations, one CUDA graph per forward.

A thin cell on the shared Pi0.5 GPU frontend (_pi05_cuda.py). Not measured on a 5090 (none is available to this
project): compile-checked for sm_120a in CI (shared memory within its 99 KB per block, mma.sync e4m3, no wgmma)
and run end to end on an H200 under TRITON_OVERRIDE_ARCH=sm120 (the sm120 lowering executed on Hopper);
docs/hardware.md says what is verified and what is assumed. What is the RTX's own:
- its tuning table (hardware/rtx/tuning.py: 99 KB shared memory, 170 SMs) and compute file;
- overlap_first_step on: with 170 SMs the prefix leaves SMs idle, as on Hopper where it saved ~0.6 ms;
- fast_accum off (mma.sync accumulates in full fp32) and no transposed prefix GEMMs (measured on an H100 only).
"""
from flash_rt.frontends.torch._pi05_cuda import Pi05CudaFrontend
from flash_rt.hardware.rtx.tuning import TUNING


class Pi05TorchFrontendRtx(Pi05CudaFrontend):
    hardware = "rtx_sm120"
    tuning = TUNING
    pipeline = "flash_rt.models.pi05.pipeline_rtx"
    option_defaults = {"fast_accum": False, "transposed_gemms": (), "overlap_first_step": True}
