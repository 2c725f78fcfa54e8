"""Pi05JaxFrontendThor: the (thor) GPU cell of Pi0.5 for openpi's Orbax checkpoints.

The torch cell Pi05TorchFrontendThor (frontends/torch/pi05_thor.py: tuning table, compute file, option
defaults) with the Orbax source (_orbax_cell.py): the GPU weight spec runs on the canonical tensors OrbaxSource
cuts from the stacked leaves, and the weight and calibration caches key on the params files, so a second start
loads the transformed weights from the cache, reading only the tree metadata and 128 KiB of each data file.
"""
from flash_rt.frontends.jax._orbax_cell import OrbaxCheckpoint
from flash_rt.frontends.torch.pi05_thor import Pi05TorchFrontendThor


class Pi05JaxFrontendThor(OrbaxCheckpoint, Pi05TorchFrontendThor):
    hardware = "thor"
