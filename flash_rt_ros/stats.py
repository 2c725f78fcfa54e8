"""Fixed-size ring buffers for tick timing: no allocation when recording, summaries only when asked (1 Hz).

TickStats tracks, per published tick:
  * period jitter: |tick-start interval - nominal period| (ms) — the number in the acceptance list (p99 <= 2 ms),
  * inference: time inside policy.step() (ms),
  * overhead: the rest of the tick (freshness check, state/noise writes, message fill, publish) (ms),
  * latency: publish time - observation stamp (ms), i.e. how old the oldest input is when the chunk leaves.
"""
from __future__ import annotations

import math

import numpy as np


class Ring:
    """Last `capacity` float samples; add() is O(1) and allocation-free."""

    def __init__(self, capacity: int = 1024):
        self.buf = np.zeros(int(capacity), np.float64)
        self.n = 0  # total samples ever added
        self._scratch = np.empty_like(self.buf)

    def add(self, x: float) -> None:
        self.buf[self.n % self.buf.shape[0]] = x
        self.n += 1

    def clear(self) -> None:
        self.n = 0

    def __len__(self) -> int:
        return min(self.n, self.buf.shape[0])

    def values(self) -> np.ndarray:
        k = len(self)
        return self.buf[:k]

    def last(self, n: int) -> np.ndarray:
        """A copy of the last n samples, oldest first (for benchmarks; allocates)."""
        k = min(n, len(self))
        idx = (self.n - k + np.arange(k)) % self.buf.shape[0]
        return self.buf[idx]

    def summary(self) -> dict:
        """count, mean, p50, p99, max over the window (NaN when empty)."""
        k = len(self)
        if k == 0:
            return {"count": 0, "mean": math.nan, "p50": math.nan, "p99": math.nan, "max": math.nan}
        v = self._scratch[:k]
        v[...] = self.buf[:k]
        v.sort()
        return {"count": k, "mean": float(v.mean()), "p50": float(v[int(0.50 * (k - 1))]),
                "p99": float(v[int(math.ceil(0.99 * (k - 1)))]), "max": float(v[k - 1])}


class TickStats:
    """settle_intervals: the first tick-start intervals after activation go to `startup_jitter_max_ms` instead of
    the jitter ring. Why: the timer starts at activation while the executor still drains the first queued camera
    frames and runs the first real step, so tick 0 fires late and tick 1 early (measured in the demo on the 2-core
    VM: 21-69 ms on intervals 1-2, then < 2 ms); they are startup, not the control loop's steady jitter. They
    stay visible in the summary."""

    def __init__(self, period_s: float, capacity: int = 1024, settle_intervals: int = 2):
        self.settle_intervals = int(settle_intervals)
        self.startup_jitter_max_ms = 0.0
        self.period_ns = int(round(period_s * 1e9))
        self.jitter_ms = Ring(capacity)
        self.inference_ms = Ring(capacity)
        self.overhead_ms = Ring(capacity)
        self.latency_ms = Ring(capacity)
        self._last_start_ns = 0
        self._first_ns = 0
        self.ticks = 0        # timer callbacks
        self.published = 0    # chunks published
        self.skipped = 0      # ticks skipped (stale / bad input / engine error)

    def reset(self) -> None:
        for r in (self.jitter_ms, self.inference_ms, self.overhead_ms, self.latency_ms):
            r.clear()
        self._last_start_ns = self._first_ns = 0
        self.ticks = self.published = self.skipped = 0
        self.startup_jitter_max_ms = 0.0

    def tick_start(self, t_ns: int) -> None:
        if self._last_start_ns:
            j = abs((t_ns - self._last_start_ns) - self.period_ns) * 1e-6
            if self.ticks <= self.settle_intervals:
                self.startup_jitter_max_ms = max(self.startup_jitter_max_ms, j)
            else:
                self.jitter_ms.add(j)
        else:
            self._first_ns = t_ns
        self._last_start_ns = t_ns
        self.ticks += 1

    def published_chunk(self, inference_ns: int, overhead_ns: int, latency_ns: int) -> None:
        self.published += 1
        self.inference_ms.add(inference_ns * 1e-6)
        self.overhead_ms.add(overhead_ns * 1e-6)
        self.latency_ms.add(latency_ns * 1e-6)

    def rate_hz(self, now_ns: int) -> float:
        """Published chunks per second since the first tick."""
        if not self._first_ns or now_ns <= self._first_ns:
            return 0.0
        return self.published / ((now_ns - self._first_ns) * 1e-9)

    def summary(self, now_ns: int) -> dict:
        return {"rate_hz": self.rate_hz(now_ns), "ticks": self.ticks, "published": self.published,
                "skipped": self.skipped, "jitter_ms": self.jitter_ms.summary(),
                "startup_jitter_max_ms": self.startup_jitter_max_ms,
                "inference_ms": self.inference_ms.summary(), "overhead_ms": self.overhead_ms.summary(),
                "latency_ms": self.latency_ms.summary()}
