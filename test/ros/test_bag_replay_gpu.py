"""The replay precision test on the GPU: the node runs hardware=hopper (FP8 path, CUDA graph), the report
recomputes every clean chunk with the FP32 reference on the CPU. Threshold: cos >= 0.995 per chunk (the FP8 rung
of the precision ladder). Same synthetic bag and replay as test_bag_replay.py.

Run on the device:  python -m pytest -m gpu test/ros/test_bag_replay_gpu.py -q -s
(needs the ROS 2 wheels and the built interfaces in that Python; the printed line is what docs/benchmarks.md
quotes).
"""
from __future__ import annotations

import json
import sys

import pytest

from ros_testing import Proc, domain_for_module, node_cmd
from flash_rt_ros.bag.report import ReportOptions, format_summary, report
from flash_rt_ros.bag.synthetic import node_camera_topics, write_test_bag

pytestmark = pytest.mark.gpu
SEED = 7


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (run with -m gpu on the device)")
def test_hopper_node_replay_matches_fp32_reference(tmp_path, tiny_openpi):
    domain = domain_for_module()
    in_bag = write_test_bag(tmp_path / "in", duration_s=3.0)
    node = Proc(node_cmd(tiny_openpi, "hardware:=hopper", "cpu_threads:=0", f"noise_seed:={SEED}",
                         "control_rate_hz:=20.0", f"weight_cache_dir:={tmp_path / 'w'}",
                         f"calibration_dir:={tmp_path / 'c'}", "camera_topics:=" + json.dumps(node_camera_topics())),
                tmp_path / "node.log", domain)
    try:
        assert node.wait_for_log("active:", 300), f"node did not activate:\n{node.text()[-4000:]}"
        out = tmp_path / "replay"
        rep = Proc([sys.executable, "-m", "flash_rt_ros.bag.cli", "replay", str(in_bag), str(out), "--step", "0.1"],
                   tmp_path / "replay.log", domain)
        try:
            rep.p.wait(180)
        finally:
            rc = rep.stop()
        assert rc == 0, rep.text() + node.text()[-3000:]
    finally:
        node.stop()
    ok, s = report(out, ReportOptions(out_dir=str(tmp_path / "report"), min_cos=0.995, quiet=True))
    print("\n" + format_summary(s))
    assert ok, s["failures"]
    assert s["chunks"]["compared"] >= 25
    assert all(r["cos_ref"] >= 0.995 for r in s["per_chunk"])
