"""Run the Pi0 FP32 reference on exactly what an engine step consumed (Policy.reference_chunk).

The host IO holds the preprocessed images, masks, prompt tokens, normalized state and noise of the last step;
`Pi0Oracle.chunk(host)` derives the model-space state with the cells' own `write_model_state`, gives the same bytes
(and, with real-time chunking, the last step's constraint) to `Pi0Reference` and unnormalizes like the host IO, so
any difference is the engine's.
"""
from __future__ import annotations

import numpy as np
import torch

from flash_rt.models.pi0.reference import Pi0Reference
from flash_rt.models.pi05.oracle import ReferenceOracle


class Pi0Oracle:
    def __init__(self, source, cfg, device="cpu", dtype=torch.float32):
        self.model = Pi0Reference({k: source.get(k) for k in source.keys()}, cfg, device=device, dtype=dtype)
        self.cfg = cfg
        self.state = np.zeros(cfg.state_dim, np.float32)

    def model_space(self, host) -> np.ndarray:
        img = torch.from_numpy(np.ascontiguousarray(host.images)).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
        x = self.model.sample_actions(img[None], torch.from_numpy(host.image_mask.copy())[None],
                                      torch.from_numpy(host.token_ids.copy())[None],
                                      torch.from_numpy(host.token_mask.copy())[None],
                                      torch.from_numpy(host.write_model_state(self.state).copy())[None],
                                      torch.from_numpy(host.noise.copy())[None],
                                      inpaint=ReferenceOracle.inpaint_of(host))
        return x[0].cpu().numpy()

    def chunk(self, host) -> np.ndarray:
        """Unnormalized, sliced reference chunk for the inputs of the host's last step."""
        m = self.model_space(host)
        return host.to_output(m, np.zeros((m.shape[0], host.action_dim), np.float32))   # step()'s output stage
