"""Pi0.5 compute path on Hopper (sm90: H100 / H200): the shared CUDA forward, bound as it is.

Nothing in the computation is Hopper's own: every GPU target runs models/pi05/cuda_forward.py, and what is tuned
for Hopper is data -- hardware/hopper/tuning.py (tiles, split-K, SM count) and the cell's option defaults
(frontends/torch/pi05_hopper.py: fast accumulation, transposed prefix GEMMs, step 0 beside the prefix).
"""
from flash_rt.models.pi05.cuda_forward import forward, quant_sites

__all__ = ["forward", "quant_sites"]
