"""Ctrl-C (SIGINT) and SIGTERM end the node cleanly while it publishes: exit code 0, a log line that says which
signal stopped it, and no traceback or FATAL line.

The bug this catches: rclpy's own signal handler shut the rcl context down while the executor was about to run
the control tick, so the tick published on a dead context; the EventsExecutor logged "[FATAL] Exception in
'timers' callback: Failed to publish: publisher's context is invalid" and the RCLError escaped spin_once with a
traceback (2 of 4 Ctrl-C's on the CPU node with three 640x480 cameras). The node runs at 50 Hz here so that a
signal usually lands next to a tick: before the fix this test failed 3 runs out of 3.
"""
from __future__ import annotations

import os
import signal

import pytest

from ros_testing import Proc, node_cmd, sensors_cmd

W, H = 320, 240


@pytest.fixture(scope="module")
def sensors(tmp_path_factory, domain):
    p = Proc(sensors_cmd("--width", str(W), "--height", str(H), "--camera-rate", "30"),
             tmp_path_factory.mktemp("shutdown") / "sensors.log", domain)
    yield p
    p.stop()


def assert_clean_exit(node: Proc, signame: str, timeout: float = 10.0) -> str:
    rc = node.p.wait(timeout)
    node.stop()
    log = node.text()
    assert rc == 0, f"exit code {rc} after {signame}:\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
    assert "FATAL" not in log, log[-3000:]
    assert "Failed to publish" not in log, log[-3000:]
    assert f"{signame} received: shutting down" in log, log[-3000:]
    assert "shut down cleanly" in log, log[-3000:]
    return log


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_while_publishing_exits_cleanly(tmp_path, domain, mon, sensors, tiny_openpi, sig):
    node = Proc(node_cmd(tiny_openpi, "control_rate_hz:=50.0", "num_steps:=2"), tmp_path / "node.log", domain)
    try:
        assert node.wait_for_log("active:", 90), node.text()[-3000:]
        assert mon.wait_chunks(20, 30), "no chunks:\n" + node.text()[-3000:]
        os.kill(node.p.pid, sig)
        assert_clean_exit(node, sig.name)
    finally:
        node.stop()


def test_sigint_during_startup_exits_cleanly(tmp_path, domain, tiny_openpi):
    """Ctrl-C before the node is up (here: while it loads the checkpoint) stops it at once, without waiting for the
    load to finish and without a traceback."""
    node = Proc(node_cmd(tiny_openpi), tmp_path / "node.log", domain)
    try:
        assert node.wait_for_log("loading pi05 checkpoint", 60), node.text()[-3000:]
        os.kill(node.p.pid, signal.SIGINT)
        rc = node.p.wait(10)
        log = node.text()
        assert rc == 0, f"exit code {rc}:\n{log[-3000:]}"
        assert "Traceback" not in log and "FATAL" not in log, log[-3000:]
        assert "SIGINT received" in log, log[-3000:]
        assert "active:" not in log, "the node went on to activate after Ctrl-C:\n" + log[-3000:]
    finally:
        node.stop()
