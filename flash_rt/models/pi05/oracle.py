"""Run the FP32 reference on exactly what an engine step consumed, for matched comparisons.

After `policy.step()` the host IO holds the preprocessed images, masks, prompt tokens (with this state's
discrete tokens) and the noise of that step; `ReferenceOracle.chunk(host)` feeds the same bytes to
Pi05Reference and applies the same unnormalization, so any difference is the engine's, not the input
pipeline's. With real-time chunking the reference runs under the same constraint (the host's model-space
target and weights), and the delta mask adds the same state back. Used by the precision tests, the GPU
benchmarks and the rosbag report.
"""
from __future__ import annotations

import numpy as np
import torch

from flash_rt.metrics import cosine64
from flash_rt.models.pi05.reference import Pi05Reference

__all__ = ["ReferenceOracle", "cosine64"]   # cosine64: the metric, imported from here by tests and benchmarks


class ReferenceOracle:
    def __init__(self, source, cfg, device="cpu", dtype=torch.float32):
        self.model = Pi05Reference({k: source.get(k) for k in source.keys()}, cfg, device=device, dtype=dtype)
        self.cfg = cfg

    @classmethod
    def for_policy(cls, policy, device="cpu", dtype=torch.float32) -> "ReferenceOracle":
        fe = policy.frontend
        return cls(fe.source, fe.cfg, device=device, dtype=dtype)

    def model_space(self, host) -> np.ndarray:
        img = torch.from_numpy(np.ascontiguousarray(host.images)).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
        x = self.model.sample_actions(img[None], torch.from_numpy(host.image_mask.copy())[None],
                                      torch.from_numpy(host.token_ids.copy())[None],
                                      torch.from_numpy(host.token_mask.copy())[None],
                                      torch.from_numpy(host.noise.copy())[None], inpaint=self.inpaint_of(host))
        return x[0].cpu().numpy()

    @staticmethod
    def inpaint_of(host):
        """The real-time chunking constraint of the host's last step (its model-space target and weights)."""
        if host.rtc is None or host.rtc.n == 0:
            return None
        return torch.from_numpy(host.rtc.w.copy())[None], torch.from_numpy(host.rtc.target.copy())[None]

    def chunk(self, host) -> np.ndarray:
        """Unnormalized, sliced reference chunk for the inputs of the host's last step."""
        m = self.model_space(host)
        return host.to_output(m, np.zeros((m.shape[0], host.action_dim), np.float32))   # step()'s output stage

