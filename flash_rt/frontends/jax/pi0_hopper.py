"""Pi0JaxFrontendHopper: the (hopper) GPU cell of Pi0 for openpi's Orbax checkpoints (pi0_base, pi0_droid, ...).

The torch cell Pi0TorchFrontendHopper (frontends/torch/pi0_hopper.py: tuning table, compute file, option defaults) with
the Pi0 Orbax source (_orbax_cell.py): the GPU weight spec runs on the canonical tensors OrbaxSource cuts from the
stacked leaves, and the weight and calibration caches key on the params files.
"""
from flash_rt.frontends.jax._orbax_cell import Pi0OrbaxCheckpoint
from flash_rt.frontends.torch.pi0_hopper import Pi0TorchFrontendHopper


class Pi0JaxFrontendHopper(Pi0OrbaxCheckpoint, Pi0TorchFrontendHopper):
    hardware = "hopper"
