"""Pi0JaxFrontendThor: the (thor) GPU cell of Pi0 for openpi's Orbax checkpoints (pi0_base, pi0_droid, ...).

The torch cell Pi0TorchFrontendThor (frontends/torch/pi0_thor.py: tuning table, compute file, option defaults) with
the Pi0 Orbax source (_orbax_cell.py): the GPU weight spec runs on the canonical tensors OrbaxSource cuts from the
stacked leaves, and the weight and calibration caches key on the params files.
"""
from flash_rt.frontends.jax._orbax_cell import Pi0OrbaxCheckpoint
from flash_rt.frontends.torch.pi0_thor import Pi0TorchFrontendThor


class Pi0JaxFrontendThor(Pi0OrbaxCheckpoint, Pi0TorchFrontendThor):
    hardware = "thor"
