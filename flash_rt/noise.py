"""Reproducible flow-matching noise.

`seeded_noise(seed, index, ...)` is a pure function of (seed, index): chunk `index` of a run gets the same
noise whether it is computed by the ROS node at tick `index`, by a test recomputing that chunk with
Policy.predict, or by the rosbag report. Philox is counter-based, so jumping to any index costs nothing.
"""
from __future__ import annotations

import numpy as np


def seeded_noise(seed: int, index: int, horizon: int, dim: int = 32, out: np.ndarray | None = None) -> np.ndarray:
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    gen = np.random.Generator(np.random.Philox(key=int(seed), counter=[0, 0, 0, int(index)]))
    if out is None:
        out = np.empty((horizon, dim), np.float32)
    gen.standard_normal(out=out, dtype=np.float32)
    return out
