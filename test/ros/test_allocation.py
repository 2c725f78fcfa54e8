"""No per-tick allocation after warm-up: tracemalloc over 500 ticks (3 cameras 640x480 rgb8 through the node's
callbacks + the tick: freshness, state, seeded noise, policy.step, message fill, publish) shows no growth, and the
median host overhead (conversion + tick minus the engine) stays within a loose regression bound (the p99 target is
measured by benchmarks/ros_node_cpu.py, docs/benchmarks.md). In-process (flash_rt_ros.inprocess): the allocation
question is about the node's own code path, not DDS."""
from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from ros_testing import CPU_PARAMS, domain_for_module

WARMUP, TICKS = 50, 500


@pytest.fixture(scope="module")
def harness(tiny_openpi):
    from flash_rt_ros.inprocess import Harness
    h = Harness(tiny_openpi, 640, 480, params_file=CPU_PARAMS, domain_id=domain_for_module(),
                overrides={"noise_seed": 3, "num_steps": 2})  # 2 flow steps: same node path, faster ticks
    yield h
    h.close()


@pytest.fixture(scope="module")
def harness_rtc_clamp(tiny_openpi):
    """The other tick path: velocity semantics (integration), a clamp every tick (tight limits) and real-time
    chunking (a prefix written before every step)."""
    from flash_rt_ros.inprocess import Harness
    h = Harness(tiny_openpi, 320, 240, params_file=CPU_PARAMS, domain_id=domain_for_module(),
                overrides={"noise_seed": 3, "num_steps": 2, "realtime_chunking": True,
                           "action_semantics": ["velocity"] * 6 + ["command"],
                           "joint_limits_names": ["joint_1"], "joint_limits_lower": [-1e-3],
                           "joint_limits_upper": [1e-3], "joint_limits_velocity": [1e-3]})
    yield h
    h.close()


def test_no_growth_with_velocity_semantics_clamps_and_rtc(harness_rtc_clamp):
    _no_growth(harness_rtc_clamp)
    node = harness_rtc_clamp.node
    assert node._safety_counts[0] >= WARMUP + 200 + TICKS, "every tick must have been clamped"
    assert node.rtc_frozen >= 0 and node._prev_obs_ns > 0


def test_no_growth_over_500_ticks(harness):
    _no_growth(harness)


def _no_growth(harness):
    """The node's own per-tick path (flash_rt_ros/*) must not grow the Python heap at all; the whole process must
    not grow by more than a few pymalloc blocks. tracemalloc also attributes ~0.3 kB/tick to rclpy's C publish
    path (rclpy/publisher.py:72) that sys.getallocatedblocks does not see and that plateaus in a pure publish
    loop; it is reported (docs/benchmarks.md), not asserted, as it is outside this package."""
    import os
    import sys

    for _ in range(WARMUP):
        harness.feed()
        harness.tick()
    harness.warm_publish(3000)
    gc.collect()
    blocks0 = sys.getallocatedblocks()
    for _ in range(200):
        harness.feed()
        harness.tick()
    gc.collect()
    blocks = sys.getallocatedblocks() - blocks0  # whole process (rclpy + engine + us): reported, not asserted
    print(f"pymalloc blocks +{blocks} over 200 ticks (whole process)")
    tracemalloc.start(1)
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(TICKS):
            harness.feed()
            harness.tick()
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert harness.node.stats.published >= WARMUP + 200 + TICKS
    pkg = os.path.dirname(os.path.abspath(__import__("flash_rt_ros.node").node.__file__))
    ours = [tracemalloc.Filter(True, os.path.join(pkg, "*"))]
    diff = after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno")
    growth = sum(d.size_diff for d in diff)
    top = "\n".join(str(d) for d in diff[:5])
    assert growth < 1024, f"flash_rt_ros grew the heap by {growth} B over {TICKS} ticks:\n{top}"


def test_host_overhead_three_640x480_cameras(harness):
    r = harness.timed_ticks(200)
    p50, p99 = (float(np.percentile(r["host_overhead_ms"], q)) for q in (50, 99))
    # The acceptance numbers (p99) are measured by benchmarks/ros_node_cpu.py on a quiet machine / with SCHED_FIFO
    # and recorded in docs/benchmarks.md. Here the tail depends on whatever else runs on the 2 cores, so the test
    # guards the median (a regression in the node's own work moves it) and only prints the tail.
    msg = f"host overhead p50 {p50:.3f} / p99 {p99:.3f} ms (conversion p99 {np.percentile(r['conversion_ms'], 99):.3f})"
    print(msg)
    assert p50 <= 2.5, msg


def test_heap_frozen_while_active(harness):
    """Activation freezes the heap (node._freeze_heap): a full collection then skips the model and rclpy objects
    instead of stalling a tick for ~100 ms."""
    import time

    assert gc.get_freeze_count() > 10_000
    t0 = time.perf_counter()
    gc.collect()
    assert time.perf_counter() - t0 < 0.05
