"""Pi0.5 compute path on Jetson AGX Thor (sm110): the shared CUDA forward, bound as it is.

Thor's differences are data, not code: hardware/thor/tuning.py (20 SMs: no decoder key split and so no merge
pass, split-K 2; tcgen05 MMA from the same Triton source) and the cell's defaults (frontends/torch/pi05_thor.py:
inputs read in place from unified memory, step 0 after the prefix instead of beside it).
"""
from flash_rt.models.pi05.cuda_forward import forward, quant_sites

__all__ = ["forward", "quant_sites"]
