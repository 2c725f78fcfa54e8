"""Pi0JaxFrontendCpu: exact FP32 Pi0 on the CPU from openpi's Orbax checkpoint (pi0_base, pi0_droid, ...; the
(pi0, jax, cpu) cell).

The CPU torch cell Pi0TorchFrontendCpu with the Orbax source (_orbax_cell.py); the decoded stacked leaves are
dropped once the spec has taken its tensors, so only the FP32 weights the pipeline uses stay resident.
"""
from flash_rt.frontends.jax._orbax_cell import Pi0OrbaxCheckpoint
from flash_rt.frontends.torch.pi0_cpu import Pi0TorchFrontendCpu


class Pi0JaxFrontendCpu(Pi0OrbaxCheckpoint, Pi0TorchFrontendCpu):
    hardware = "cpu"

    def _load_weights(self):
        status = super()._load_weights()
        self.source.release()
        return status
