"""Pi05JaxFrontendCpu: exact FP32 Pi0.5 on the CPU from openpi's Orbax checkpoint (the (pi05, jax, cpu) cell).

The CPU torch cell with the Orbax source (_orbax_cell.py); the decoded stacked leaves are dropped once the spec has
taken its tensors, so only the FP32 weights the pipeline uses stay resident.
"""
from flash_rt.frontends.jax._orbax_cell import OrbaxCheckpoint
from flash_rt.frontends.torch.pi05_cpu import Pi05TorchFrontendCpu


class Pi05JaxFrontendCpu(OrbaxCheckpoint, Pi05TorchFrontendCpu):
    hardware = "cpu"

    def _load_weights(self) -> str:
        status = super()._load_weights()
        self.source.release()
        return status.replace("the checkpoint", "the Orbax params")
