"""Latency recording without per-call allocation: a fixed ring of the last N samples (ms)."""
from __future__ import annotations

import numpy as np


class LatencyRecorder:
    def __init__(self, capacity: int = 4096):
        self._ms = np.zeros(capacity, np.float64)
        self._n = 0

    def add(self, ms: float) -> None:
        self._ms[self._n % self._ms.size] = ms
        self._n += 1

    def reset(self) -> None:
        self._n = 0

    def stats(self) -> dict:
        """count, mean, p50, p95, p99, max (ms) over the last `capacity` samples, and hz = 1000/mean."""
        k = min(self._n, self._ms.size)
        if k == 0:
            return {"count": 0, "mean": float("nan"), "p50": float("nan"), "p95": float("nan"),
                    "p99": float("nan"), "max": float("nan"), "hz": float("nan")}
        x = self._ms[:k]
        mean = float(x.mean())
        p50, p95, p99 = (float(v) for v in np.percentile(x, [50, 95, 99]))
        return {"count": self._n, "mean": mean, "p50": p50, "p95": p95, "p99": p99, "max": float(x.max()),
                "hz": 1000.0 / mean if mean > 0 else float("inf")}
