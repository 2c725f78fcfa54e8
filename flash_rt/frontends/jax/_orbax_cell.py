"""What makes a Pi0.5 (or Pi0) cell a `jax` cell: its weights come from openpi's Orbax `params/` through `OrbaxSource`.

The jax cells are the torch cells with another WeightSource: the source presents the canonical tensors, so the
weight spec, the FP32 oracle, the runtime and the compute files are the same objects (no second loader path).
This mixin swaps only what depends on the checkpoint format: how the source opens (also for the GPU spec run),
where the checkpoint directory is (`<ckpt>` holding params/ and assets/, when given `<ckpt>/params`), the head
geometry (read off the tree: Orbax checkpoints carry no config.json) and the cache key (the params files).
"""
from __future__ import annotations

from pathlib import Path

from flash_rt.executors.orbax_source import (open_orbax_checkpoint, open_pi0_orbax_checkpoint,
                                             orbax_checkpoint_hash, params_dir)
from flash_rt.executors.weight_cache import cache_root
from flash_rt.frontends.torch._pi05_base import read_config_json


class OrbaxCheckpoint:
    """Mixin, first in the bases of a (pi05, jax, <hw>) cell: `class Cell(OrbaxCheckpoint, TorchCell)`."""

    open_source = staticmethod(open_orbax_checkpoint)

    def _checkpoint_dir(self, checkpoint) -> Path:
        return params_dir(checkpoint).parent   # validates params/ before anything else reads

    def _config_json(self) -> dict:
        # an optional config.json beside params/ may set run-time defaults (horizon, token length); the head
        # geometry comes from the tree, which cannot be wrong about itself
        return {**read_config_json(self.ckpt_dir), **self.source.config_hints()}

    def _checkpoint_hash(self) -> str:
        return orbax_checkpoint_hash(self.source.params, index_root=cache_root(self._weights_root))


class Pi0OrbaxCheckpoint(OrbaxCheckpoint):
    """The mixin of a (pi0, jax, <hw>) cell: the same, with a source that reads (and asks for) a Pi0 tree, so a
    Pi0.5 tree given to a Pi0 cell is refused naming config='pi05'."""

    open_source = staticmethod(open_pi0_orbax_checkpoint)
