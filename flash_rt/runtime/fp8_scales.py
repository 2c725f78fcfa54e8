"""The FP8 activation scales of a captured forward, and their calibration state (model-agnostic).

One device fp32 scalar per quantization site, each on its own 256-byte boundary (cuBLASLt rejects unaligned FP8
scale pointers), read by the graph at every replay: recalibrating rewrites them in place and never recaptures.
`amax` holds one slot per site that the calibration twin fills (CalibContext); `set_from_amax` turns the slots
into scales (amax / 448). The JSON cache (flash_rt/calibration.py) keys them by checkpoint hash and shapes.
"""
from __future__ import annotations

import math
import warnings

import torch

from flash_rt.calibration import load_calibration, save_calibration, scales_from_amax
from flash_rt.errors import CacheError
from flash_rt.runtime.quant import aligned_scalars


class ActivationScales:
    def __init__(self, sites: list[str], device):
        self.sites = list(sites)
        self._store, views = aligned_scalars(len(self.sites), device)
        self.scales = self._store[:, 0]   # strided view: writing it updates every site's scale
        self.site_scale = dict(zip(self.sites, views))
        self.amax = torch.zeros(len(self.sites), dtype=torch.float32, device=device)
        self.site_amax = {s: self.amax[i:i + 1] for i, s in enumerate(self.sites)}

    def set_from_amax(self, amax=None) -> None:
        """Scales from `amax` (a list, one per site) or from the device slots the twin just filled."""
        vals = self.amax.cpu().tolist() if amax is None else list(amax)
        self.scales.copy_(torch.tensor(scales_from_amax(vals), dtype=torch.float32))

    def load_cached(self, path, ckpt_hash: str, shape_key: str) -> bool:
        """Scales from the JSON cache; False (and a warning for a corrupt entry) when there is none to use."""
        try:
            amax = load_calibration(path, self.sites, ckpt_hash=ckpt_hash, shape_key=shape_key)
        except FileNotFoundError:
            return False
        except CacheError as e:
            warnings.warn(f"{e}; recalibrating")
            return False
        self.set_from_amax(amax)
        return True

    def save(self, path, ckpt_hash: str, shape_key: str, num_observations: int, percentile) -> None:
        save_calibration(path, self.sites, self.amax.cpu().tolist(), ckpt_hash=ckpt_hash, shape_key=shape_key,
                         percentile=percentile, num_observations=num_observations)


def percentile_update(p: float):
    """amax slot <- max(slot, percentile_p(|x|)) (eager; calibration only)."""
    def upd(x, slot):
        a = x.detach().abs().float().flatten()
        k = max(1, min(a.numel(), int(math.ceil(a.numel() * p / 100.0))))
        slot.copy_(torch.maximum(slot, torch.kthvalue(a, k).values.reshape(1)))
    return upd
