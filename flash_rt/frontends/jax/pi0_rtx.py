"""Pi0JaxFrontendRtx: the (rtx) GPU cell of Pi0 for openpi's Orbax checkpoints (pi0_base, pi0_droid, ...).

The torch cell Pi0TorchFrontendRtx (frontends/torch/pi0_rtx.py: tuning table, compute file, option defaults) with
the Pi0 Orbax source (_orbax_cell.py): the GPU weight spec runs on the canonical tensors OrbaxSource cuts from the
stacked leaves, and the weight and calibration caches key on the params files.
"""
from flash_rt.frontends.jax._orbax_cell import Pi0OrbaxCheckpoint
from flash_rt.frontends.torch.pi0_rtx import Pi0TorchFrontendRtx


class Pi0JaxFrontendRtx(Pi0OrbaxCheckpoint, Pi0TorchFrontendRtx):
    hardware = "rtx_sm120"
