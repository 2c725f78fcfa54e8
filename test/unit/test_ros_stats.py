"""flash_rt_ros.stats.Ring.last: the last n samples in order, also after the ring wrapped (benchmarks read it)."""
from __future__ import annotations

from flash_rt_ros.stats import Ring


def test_last_in_order_before_and_after_wrap():
    r = Ring(4)
    for x in range(3):
        r.add(x)
    assert r.last(2).tolist() == [1.0, 2.0] and r.last(10).tolist() == [0.0, 1.0, 2.0]
    for x in range(3, 10):
        r.add(x)
    assert r.last(3).tolist() == [7.0, 8.0, 9.0] and r.last(10).tolist() == [6.0, 7.0, 8.0, 9.0]
