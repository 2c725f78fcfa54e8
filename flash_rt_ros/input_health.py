"""Per input: the rate it arrives at and the messages DDS lost on the way, over the last few seconds, for
/diagnostics. Pure (numpy only), fed by the node: counts from its subscription callbacks and from rclpy's
`message_lost` subscription event.

The loss signal is DDS's own: Fast DDS reports a best-effort sample as lost when the writer's sequence numbers
skip it (SampleLostStatus, rclpy `QoSMessageLostInfo.total_count_change`). With rmw_fastrtps_cpp and the Kilted
wheels it fires, and received + lost matched the publisher's count exactly (benchmarks/fastdds_camera_loss.py,
docs/ros.md "Large camera frames"). Not counted: a message the executor was too slow to take before the KEEP_LAST
history overwrote it; that shows as a lower received rate only.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

LOSS_DOC = "see docs/ros.md 'Large camera frames'"


@dataclass(frozen=True)
class InputHealth:
    received_hz: float
    lost: int            # messages DDS reported lost in the window
    lost_fraction: float  # lost / (received + lost) in the window
    window_s: float

    @property
    def significant_loss(self) -> bool:
        """At least 3 messages and 5 % of what was sent: a single dropped frame is not worth a WARN."""
        return self.lost >= 3 and self.lost_fraction >= 0.05

    def describe(self) -> str:
        text = f"received {self.received_hz:.1f} Hz"
        if self.lost:
            text += (f", lost {100 * self.lost_fraction:.0f}% ({self.lost} messages) in the last "
                     f"{self.window_s:.1f} s")
        return text + (f" — {LOSS_DOC}" if self.significant_loss else "")


class HealthWindow:
    """Snapshots of the cumulative (received, lost) counts of every input; rates over the last `window_s`."""

    def __init__(self, window_s: float = 5.0):
        self.window_ns = int(window_s * 1e9)
        self._snaps: collections.deque = collections.deque(maxlen=256)

    def reset(self) -> None:
        self._snaps.clear()

    def update(self, now_ns: int, received: np.ndarray, lost: np.ndarray) -> list[InputHealth | None]:
        """Record the counts at now_ns and return each input's health over the window (None until a second snapshot
        at least 0.5 s later exists)."""
        self._snaps.append((now_ns, received.copy(), lost.copy()))
        while len(self._snaps) > 2 and now_ns - self._snaps[1][0] >= self.window_ns:
            self._snaps.popleft()
        t0, r0, l0 = self._snaps[0]
        span = (now_ns - t0) * 1e-9
        if span < 0.5:
            return [None] * len(received)
        out = []
        for dr, dl in zip((received - r0).tolist(), (lost - l0).tolist()):
            total = dr + dl
            out.append(InputHealth(dr / span, dl, dl / total if total else 0.0, span))
        return out
