"""flash_rt_ros.input_health: received rate and DDS-reported loss per input over a sliding window (pure)."""
from __future__ import annotations

import numpy as np
import pytest

from flash_rt_ros.input_health import HealthWindow, InputHealth

S = 1_000_000_000


def test_rates_and_loss_over_the_window():
    w = HealthWindow(window_s=5.0)
    rx, lost = np.zeros(2, np.int64), np.zeros(2, np.int64)
    assert w.update(0, rx, lost) == [None, None]          # nothing to compare with yet
    rx[:] = (30, 6)
    lost[:] = (0, 24)
    a, b = w.update(1 * S, rx, lost)
    assert a.received_hz == pytest.approx(30) and a.lost == 0 and not a.significant_loss
    assert b.received_hz == pytest.approx(6) and b.lost == 24 and b.lost_fraction == pytest.approx(0.8)
    assert b.significant_loss
    assert b.describe() == ("received 6.0 Hz, lost 80% (24 messages) in the last 1.0 s — see docs/ros.md "
                            "'Large camera frames'")
    assert a.describe() == "received 30.0 Hz"


def test_old_loss_leaves_the_window():
    w = HealthWindow(window_s=5.0)
    rx, lost = np.zeros(1, np.int64), np.zeros(1, np.int64)
    w.update(0, rx, lost)
    rx[0], lost[0] = 6, 24                                # 1 s of heavy loss ...
    w.update(1 * S, rx, lost)
    for t in range(2, 9):                                 # ... then 7 s of clean frames at 30 Hz
        rx[0] += 30
        (h,) = w.update(t * S, rx, lost)
    assert h.lost == 0 and h.received_hz == pytest.approx(30) and h.window_s == pytest.approx(5.0)


def test_short_windows_wait_and_small_losses_are_not_significant():
    w = HealthWindow()
    rx, lost = np.zeros(1, np.int64), np.zeros(1, np.int64)
    w.update(0, rx, lost)
    assert w.update(S // 10, rx, lost) == [None]          # < 0.5 s: no rate yet
    assert not InputHealth(30.0, 2, 0.02, 5.0).significant_loss   # 2 messages
    assert not InputHealth(30.0, 5, 0.03, 5.0).significant_loss   # 3 %
    assert InputHealth(30.0, 8, 0.05, 5.0).significant_loss
