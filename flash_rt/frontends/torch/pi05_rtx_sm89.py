"""Pi05TorchFrontendRtxSm89: Pi0.5 on RTX 4090-class GPUs (sm89, Ada), FP8 weights + activations, one CUDA graph.

A thin cell on the shared Pi0.5 GPU frontend (_pi05_cuda.py), the stretch target of the robot-targets work: the
original system served sm89 and sm87 from its RTX class (one class, three keys); here sm89 is a cell of its own.
Not measured on an Ada card: compile-checked for sm_89 in CI; docs/hardware.md says what is assumed. Its own:
- its tuning table (hardware/rtx_sm89/tuning.py: no TMA, no programmatic dependent launch, 128 SMs);
- overlap_first_step on (128 SMs: the prefix leaves SMs idle, as on Hopper); no fast accumulation (mma.sync
  accumulates in fp32); no transposed prefix GEMMs (measured on an H100 only).
"""
from flash_rt.frontends.torch._pi05_cuda import Pi05CudaFrontend
from flash_rt.hardware.rtx_sm89.tuning import TUNING


class Pi05TorchFrontendRtxSm89(Pi05CudaFrontend):
    hardware = "rtx_sm89"
    tuning = TUNING
    pipeline = "flash_rt.models.pi05.pipeline_rtx_sm89"
    option_defaults = {"fast_accum": False, "transposed_gemms": (), "overlap_first_step": True}
