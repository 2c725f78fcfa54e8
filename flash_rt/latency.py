"""Latency recording without per-call allocation (a fixed ring of the last N samples, ms), and the start-up
phases of a policy."""
from __future__ import annotations

import time

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


class StartupPhases:
    """Where a policy's start-up time went: (phase, seconds, detail) in the order the phases ran.

    Why: a cold start to the first chunk took 42.7 s on an H200 and a warm one 14.8 s, and a user could not tell
    loading from the weight cache, kernel compilation, graph capture or the first tick's FP8 calibration. Phases are
    appended as they happen (the GPU path calibrates on the first real tick, after configure), so a caller can read
    the list after loading and again after the first step."""

    def __init__(self):
        self.phases: list[tuple[str, float, str]] = []

    def add(self, phase: str, seconds: float, detail: str = "") -> None:
        self.phases.append((phase, float(seconds), detail))

    def timed(self, phase: str, detail: str = ""):
        """Context manager timing its block as `phase`; the block may set `.detail` on what it yields (e.g. whether
        the weight cache hit). Nothing is recorded when the block raises."""
        return _Timed(self, phase, detail)


class _Timed:
    def __init__(self, owner: StartupPhases, phase: str, detail: str):
        self.owner, self.phase, self.detail = owner, phase, detail

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.owner.add(self.phase, time.perf_counter() - self._t0, self.detail)
        return False
