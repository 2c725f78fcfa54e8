"""The precision ladder's metric, in one place for the oracle, the rosbag report and the FP8 self-check."""
from __future__ import annotations

import numpy as np


def cosine64(a, b) -> float:
    """Cosine similarity over the whole chunk, in float64."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))
