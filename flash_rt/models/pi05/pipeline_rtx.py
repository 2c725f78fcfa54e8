"""Pi0.5 compute path on RTX 5090 (sm120): the shared CUDA forward, bound as it is.

The RTX differences are data, not code: hardware/rtx/tuning.py (99 KB of shared memory per block, so 3-stage GEMM
pipelines; 170 SMs; mma.sync FP8 from the same Triton source) and the cell's defaults (frontends/torch/pi05_rtx.py).
"""
from flash_rt.models.pi05.cuda_forward import forward, quant_sites

__all__ = ["forward", "quant_sites"]
