"""Pi0's model-space state vector: what `state_proj` reads, derived from the host IO in one place.

The host IO holds the normalized (z-score) state of the robot's joints; Pi0 pads it with zeros to `state_proj`'s
input width (openpi's PadStatesAndActions runs after Normalize). Every Pi0 cell and the oracle call this same
function, so `reference_chunk()` after `prepare_inputs()` (no engine step, as the rosbag report does) sees the
state of THIS observation, not the one the engine last ran on.
"""
from __future__ import annotations

import numpy as np


def write_model_state(host, out: np.ndarray) -> np.ndarray:
    """host.state_norm[:n] -> out[:n], zeros after; in place, no allocation."""
    n = min(host._state_len, out.size)
    out[:n] = host.state_norm[:n]
    out[n:] = 0.0
    return out
