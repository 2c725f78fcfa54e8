"""The node and the rosbag replay run from an openpi Orbax checkpoint (real node process, loopback DDS, CPU).

The checkpoint is openpi's layout only -- params/ (written with orbax) + assets/<id>/norm_stats.json, no config.json,
no tokenizer -- and the node is given nothing but its path: framework auto picks the (pi05, jax, cpu) cell, the norm
stats come from assets/ beside params/, the tokenizer from openpi's cache ($OPENPI_DATA_HOME, a temp dir here). A
lockstep replay's chunks must match the FP32 reference, and the report's recomputation (which loads the same
checkpoint through the same parameters) must reproduce the node's chunks.
"""
from __future__ import annotations

import json
import sys

from ros_testing import Proc, domain_for_module, node_cmd
from flash_rt_ros.bag.report import ReportOptions, report
from flash_rt_ros.bag.synthetic import node_camera_topics, write_test_bag

BAG_S, STEP = 1.0, 0.1


def test_node_and_replay_from_an_orbax_checkpoint(tmp_path, tiny_orbax, monkeypatch):
    home = str(tiny_orbax["openpi_home"])
    monkeypatch.setenv("OPENPI_DATA_HOME", home)       # the in-process report loads the checkpoint too
    domain = domain_for_module()
    ckpt = tiny_orbax["released"]
    in_bag = write_test_bag(tmp_path / "in", duration_s=BAG_S)
    node = Proc(node_cmd(ckpt, "noise_seed:=7", "control_rate_hz:=20.0", "action_horizon:=10",
                         "camera_topics:=" + json.dumps(node_camera_topics())),
                tmp_path / "node.log", domain, env={"OPENPI_DATA_HOME": home})
    try:
        assert node.wait_for_log("active:", 90), f"node did not activate:\n{node.text()[-3000:]}"
        log = node.text()
        assert "fp32 from the Orbax params" in log, log[-3000:]
        out = tmp_path / "replay"
        rp = Proc([sys.executable, "-m", "flash_rt_ros.bag.cli", "replay", str(in_bag), str(out), "--step", str(STEP)],
                  tmp_path / "replay.log", domain)
        rp.p.wait(120)
        assert rp.stop() == 0, rp.text() + node.text()[-2000:]
        ok, s = report(out, ReportOptions(out_dir=str(tmp_path / "report"), min_cos=0.99999, max_abs=1e-4, quiet=True))
        assert ok, (s["failures"], node.text()[-2000:])
        assert len(s["per_chunk"]) >= int(BAG_S / STEP) - 1, s["chunks"]
        assert all(r["cos_ref"] >= 0.99999 for r in s["per_chunk"])
        assert s["max_abs_engine_cpu"] <= 1e-6, s["max_abs_engine_cpu"]
        assert node.alive()
    finally:
        node.stop()
