"""The node serves Pi0 (`model: pi0`, config/pi0_cpu.yaml): one real node process on the tiny Pi0 checkpoint, real
rclpy over loopback DDS. It activates, publishes action chunks of Pi0's shape at the configured rate from the
synthetic sensors, and a lockstep rosbag replay through it gives a report whose every chunk matches Pi0's FP32
reference (cos >= 0.99999, max |d| <= 1e-4) -- the report recomputes with the node's own parameters, so it runs
the pi0 cell and Pi0's oracle.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from flash_rt_ros.bag.report import ReportOptions, report
from flash_rt_ros.bag.synthetic import node_camera_topics, write_test_bag
from ros_testing import REPO, Monitor, Proc, domain_for_module, node_cmd, sensors_cmd
from test_bag_replay import bag_cli, run

PI0_CPU = REPO / "config" / "pi0_cpu.yaml"
SEED = 7


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_pi0):
    tmp = tmp_path_factory.mktemp("ros_pi0")
    domain = domain_for_module()
    node = Proc(node_cmd(tiny_pi0, f"noise_seed:={SEED}", "control_rate_hz:=10.0",
                         "camera_topics:=" + json.dumps(node_camera_topics()), params_file=PI0_CPU),
                tmp / "node.log", domain)
    try:
        assert node.wait_for_log("active:", 90), f"node did not activate:\n{node.text()[-3000:]}"
        yield {"tmp": tmp, "domain": domain, "node": node}
    finally:
        node.stop()


def test_node_runs_pi0_and_publishes_chunks(env):
    assert "pi0" in env["node"].text()
    raw = Proc(sensors_cmd("--static", "--width", "320", "--height", "240", "--camera-rate", "30",
                           "--cameras", "camera/base/image_raw,camera/left_wrist/image_raw"),
               env["tmp"] / "sensors_raw.log", env["domain"])
    jpeg = Proc(sensors_cmd("--static", "--width", "320", "--height", "240", "--camera-rate", "30", "--encoding",
                            "jpeg", "--cameras", "camera/right_wrist/image_raw", "--joint-topic", "unused_joints"),
                env["tmp"] / "sensors_jpeg.log", env["domain"])
    mon = Monitor(env["domain"])
    try:
        assert mon.wait_chunks(5, 30), f"no chunks:\n{env['node'].text()[-3000:]}"
        m = mon.chunks[-1][1]
        assert (m.horizon, m.action_dim) == (10, 7)
        data = np.asarray(m.data)
        assert data.size == 70 and np.isfinite(data).all() and np.abs(data).max() > 0
        assert m.prompt == "pick up the object and place it in the bin"
    finally:
        mon.close()
        raw.stop()
        jpeg.stop()
    assert env["node"].alive(), env["node"].text()[-3000:]


def test_rosbag_replay_report_passes_for_pi0(env):
    in_bag = write_test_bag(env["tmp"] / "in", duration_s=1.5)
    out = env["tmp"] / "replay"
    rc, log = run(bag_cli("replay", in_bag, out, "--step", 0.1), env["tmp"] / "replay.log", env["domain"])
    assert rc == 0, log + env["node"].text()[-2000:]
    ok, s = report(out, ReportOptions(out_dir=str(env["tmp"] / "report"), min_cos=0.99999, max_abs=1e-4, quiet=True))
    assert ok, (s["failures"], env["node"].text()[-2000:])
    assert len(s["per_chunk"]) >= 10 and all(r["cos_ref"] >= 0.99999 for r in s["per_chunk"])
    assert s["max_abs_engine_cpu"] <= 1e-6, s["max_abs_engine_cpu"]
    assert env["node"].alive(), env["node"].text()[-3000:]


def test_demo_serves_pi0(tmp_path):
    """`flash-rt-demo --model pi0`: its own tiny Pi0 checkpoint, config/pi0_cpu.yaml, the rate and the prompt switch
    (another domain than the module's node: both are /flash_rt_node)."""
    demo = Proc([sys.executable, "-m", "flash_rt_ros.demo", "--model", "pi0", "--duration", "4", "--width", "320",
                 "--height", "240", "--log-dir", str(tmp_path)], tmp_path / "demo.log", domain_for_module())
    try:
        demo.p.wait(120)
    finally:
        rc = demo.stop()
    out = demo.text()
    assert rc == 0, out[-3000:] + (tmp_path / "node.log").read_text()[-2000:]
    assert "tiny pi0 checkpoint" in out and "pi0_cpu.yaml" in out and "result               : OK" in out
    assert "loading pi0 checkpoint" in (tmp_path / "node.log").read_text()
