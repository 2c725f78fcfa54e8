"""Pi0 compute path on rtx: the shared Pi0 CUDA forward (models/pi0/cuda_forward.py), bound as it is; what is the
target's own is data (hardware/rtx/tuning.py and the cell's option defaults in frontends/torch/pi0_rtx.py)."""
from flash_rt.models.pi0.cuda_forward import forward, quant_sites

__all__ = ["forward", "quant_sites"]
