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


def test_startup_intervals_are_reported_apart_from_the_jitter():
    """The first two tick-start intervals after activation (a late tick 0 while the executor drains queued frames,
    then an early tick 1) go to startup_jitter_max_ms; steady-state jitter is counted from the third on."""
    from flash_rt_ros.stats import TickStats

    st = TickStats(0.1)
    ms = 1_000_000
    starts = [0, 169 * ms, 200 * ms, 300 * ms + 2 * ms, 400 * ms, 500 * ms - ms]   # +69, -69, +2, -2, -1 ms
    for t in starts:
        st.tick_start(t + 10**9)
    s = st.summary(10**9 + 600 * ms)
    assert abs(s["startup_jitter_max_ms"] - 69.0) < 1e-9
    assert abs(s["jitter_ms"]["max"] - 2.0) < 1e-9 and s["jitter_ms"]["count"] == 3
    st.reset()
    assert st.startup_jitter_max_ms == 0.0 and len(st.jitter_ms) == 0
