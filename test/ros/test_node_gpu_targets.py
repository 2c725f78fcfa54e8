"""The node started with each robot target's shipped config (config/pi05_thor.yaml, pi05_rtx.yaml, pi05_hopper.yaml)
reaches active and publishes chunks on a GPU, as a user starts it: `flash-rt-node --params-file config/<target>.yaml`.

On an H200 the thor config runs the thor cell by override (its config says hardware: thor) and the rtx config the
rtx_sm120 cell with the sm120 lowering, only under TRITON_OVERRIDE_ARCH=sm120 (docs/hardware.md). The tiny test
checkpoint stands in for a DROID checkpoint: its 8-dim state takes the config's 8 joint names (the synthetic sensors
publish them), its 7 action dims the first 7 action names (DROID's joint velocities). Run on the device with the carried ROS bundle:
    source scripts/device_ros_env.sh && python3 -m pytest -m gpu test/ros/test_node_gpu_targets.py -q -s
    source scripts/device_ros_env.sh && TRITON_OVERRIDE_ARCH=sm120 python3 -m pytest -m gpu test/ros/test_node_gpu_targets.py -q -s
"""
from __future__ import annotations

import json
import os

import pytest
import yaml

from ros_testing import REPO, Monitor, Proc, domain_for_module, node_cmd, sensors_cmd

pytestmark = pytest.mark.gpu
TARGETS = {"thor": "pi05_thor.yaml", "rtx_sm120": "pi05_rtx.yaml", "hopper": "pi05_hopper.yaml"}


def _skip_reason(hw: str):
    try:
        import torch
        if not torch.cuda.is_available():
            return "needs a CUDA GPU (run with -m gpu on the device)"
        from flash_rt.hardware import detect_hardware
        native = detect_hardware()
    except Exception as e:  # noqa: BLE001
        return f"no usable torch: {e}"
    override = os.environ.get("TRITON_OVERRIDE_ARCH")
    if override == "sm120":
        return None if hw == "rtx_sm120" else "TRITON_OVERRIDE_ARCH=sm120: only the rtx config runs in this process"
    if hw == "rtx_sm120" and native != "rtx_sm120":
        return "the rtx config runs here only under TRITON_OVERRIDE_ARCH=sm120 (its own pytest run)"
    return None


@pytest.mark.parametrize("hw", sorted(TARGETS))
def test_target_config_reaches_active_and_publishes_chunks(tmp_path, tiny_openpi, hw):
    why = _skip_reason(hw)
    if why:
        pytest.skip(why)
    from flash_rt_ros.srv import SetPrompt
    params = REPO / "config" / TARGETS[hw]
    cfg = yaml.safe_load(params.read_text())["/**"]["ros__parameters"]
    assert cfg["hardware"] == hw
    state, actions = cfg["state_joint_names"], cfg["action_joint_names"][:7]
    domain = domain_for_module()
    semantics = cfg["action_semantics"][:7]          # the DROID config's 7 joint velocities
    node = Proc(node_cmd(tiny_openpi, "action_joint_names:=" + json.dumps(actions),
                         "action_semantics:=" + json.dumps(semantics), "control_rate_hz:=15.0",
                         f"weight_cache_dir:={tmp_path / 'w'}", f"calibration_dir:={tmp_path / 'c'}",
                         params_file=params), tmp_path / "node.log", domain)
    sensors = Proc(sensors_cmd("--width", "640", "--height", "480", "--camera-rate", "30",
                               "--joint-names", ",".join(state)), tmp_path / "sensors.log", domain)
    mon = Monitor(domain)
    try:
        assert node.wait_for_log("active:", 240), f"node did not activate:\n{node.text()[-4000:]}"
        assert mon.wait_chunks(20, 60), f"fewer than 20 chunks:\n{node.text()[-4000:]}"
        chunk = mon.chunks[-1][1]
        assert list(chunk.joint_names) == actions and chunk.action_dim == 7 and chunk.horizon > 0
        req = SetPrompt.Request()
        req.prompt = "open the drawer"
        res = mon.call(SetPrompt, "/flash_rt_node/set_prompt", req, timeout=30)
        assert res.success, res.message
        n = len(mon.chunks)
        assert mon.wait_chunks(10, 30), "no chunks after the prompt change"
        assert any(c.prompt == "open the drawer" for _, c in mon.chunks[n:]), "no chunk labelled with the new prompt"
        log = node.text()
        assert f"hardware {hw}," in log, log[-3000:]    # the configure line names the cell that runs
        ms = sorted(c.inference_time * 1e3 for _, c in mon.chunks[5:])
        print(f"\n{hw}: {len(mon.chunks)} chunks, inference P50 {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms")
    finally:
        mon.close()
        sensors.stop()
        rc = node.stop()
    assert rc == 0, node.text()[-3000:]
