"""Pi05TorchFrontendThor: Pi0.5 on Jetson AGX Thor (sm110), FP8 weights + activations, one CUDA graph per forward.

A thin cell on the shared Pi0.5 GPU frontend (_pi05_cuda.py). Not measured on a Thor (none is available to this
project): compile-checked for sm_110a in CI and run on an H200 by override (hardware="thor"), which exercises
these tiles and options with Hopper's lowering; docs/hardware.md says what is verified and what is assumed.
What is Thor's own:
- its tuning table (hardware/thor/tuning.py: 20 SMs, unified memory, Triton >= 3.7) and compute file;
- zero_copy_io on (from the table's unified_memory): CPU and GPU share one LPDDR5X, so the graph reads the pinned
  input buffers in place and writes the chunk straight into the host's output buffer: no staging copies;
- overlap_first_step off: on 20 SMs the prefix's GEMMs already occupy every SM and both streams would share the
  same 273 GB/s, so running flow step 0 beside the prefix has nothing idle to fill (on Hopper it fills SMs the
  prefix leaves idle); it would add 20 cross-stream events to a graph whose nodes cost ~3 us each on Thor;
- fast_accum off (tcgen05 accumulates in full fp32; there is nothing to trade) and no transposed prefix GEMMs
  (cuBLASLt's tiling at M = 576 was measured on an H100 only).
"""
from flash_rt.frontends.torch._pi05_cuda import Pi05CudaFrontend
from flash_rt.hardware.thor.tuning import TUNING


class Pi05TorchFrontendThor(Pi05CudaFrontend):
    hardware = "thor"
    tuning = TUNING
    pipeline = "flash_rt.models.pi05.pipeline_thor"
    option_defaults = {"fast_accum": False, "transposed_gemms": (), "overlap_first_step": False}
