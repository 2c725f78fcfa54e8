"""While ticks are skipped for stale inputs, the node WARNs and updates /diagnostics when the condition changes and
then every SKIP_REPEAT_S -- not on every tick. Before the fix the skip message carried the inputs' ages, so every
tick counted as a new reason: CI logs showed a WARN every 50 ms. In-process harness, real node callbacks."""
from __future__ import annotations

import time

import pytest

from ros_testing import CPU_PARAMS, domain_for_module


@pytest.fixture(scope="module")
def harness(tiny_openpi):
    from flash_rt_ros.inprocess import Harness
    h = Harness(tiny_openpi, 64, 48, params_file=CPU_PARAMS, domain_id=domain_for_module(),
                overrides={"noise_seed": 3, "num_steps": 2, "max_observation_age_s": 0.05})
    yield h
    h.close()


def _count_diagnostics(node):
    calls = []
    real = node._publish_diagnostics

    def counting():
        calls.append(node._skip_reason)
        real()
    node._publish_diagnostics = counting
    return calls


def test_stale_inputs_warn_once_per_condition_not_per_tick(harness):
    node = harness.node
    calls = _count_diagnostics(node)
    try:
        harness.feed()
        harness.tick()
        assert node.sequence >= 1 and node._skip_reason == ""
        time.sleep(0.1)                       # every input is now older than max_observation_age_s
        for _ in range(30):
            harness.tick()
            time.sleep(0.005)
        assert node.stats.skipped >= 30
        stale = [c for c in calls if c.startswith("stale input")]
        assert len(stale) == 1, calls         # one WARN for the condition, although the ages changed every tick
        n = len(calls)
        harness.feed()                        # fresh again: publishes and reports the recovery
        harness.tick()
        assert node._skip_reason == "" and len(calls) == n + 1
        time.sleep(0.1)                       # stale again after a recovery: a new condition, reported again
        harness.tick()
        harness.tick()
        assert len([c for c in calls if c.startswith("stale input")]) == 2, calls
        node.SKIP_REPEAT_S = 0.05             # and while a condition lasts, the WARN repeats at that period
        time.sleep(0.06)
        harness.tick()
        assert len([c for c in calls if c.startswith("stale input")]) == 3, calls
    finally:
        del node._publish_diagnostics
        del node.SKIP_REPEAT_S
