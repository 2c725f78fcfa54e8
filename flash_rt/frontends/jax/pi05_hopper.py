"""Pi05JaxFrontendHopper: the (hopper) GPU cell of Pi0.5 for openpi's Orbax checkpoints.

The torch cell Pi05TorchFrontendHopper (frontends/torch/pi05_hopper.py: tuning table, compute file, option
defaults) with the Orbax source (_orbax_cell.py): the GPU weight spec runs on the canonical tensors OrbaxSource
cuts from the stacked leaves, and the weight and calibration caches key on the params files, so a second start
loads the transformed weights from the cache, reading only the tree metadata and 128 KiB of each data file.
"""
from flash_rt.frontends.jax._orbax_cell import OrbaxCheckpoint
from flash_rt.frontends.torch.pi05_hopper import Pi05TorchFrontendHopper


class Pi05JaxFrontendHopper(OrbaxCheckpoint, Pi05TorchFrontendHopper):
    hardware = "hopper"
