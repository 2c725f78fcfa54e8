"""Pi0.5 compute path on RTX 4090-class GPUs (sm89, Ada): the shared CUDA forward, bound as it is.

The differences are data, not code: hardware/rtx_sm89/tuning.py (no TMA tiles, no programmatic dependent launch,
128 SMs, 99 KB of shared memory per block) and the cell's defaults (frontends/torch/pi05_rtx_sm89.py).
"""
from flash_rt.models.pi05.cuda_forward import forward, quant_sites

__all__ = ["forward", "quant_sites"]
