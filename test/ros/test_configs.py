"""Every shipped config/*.yaml configures -- the node's real configure transition: parameter validation, the model
load, and the joint-name lists against the model's state / action dims -- against the checkpoint the project
generates for that target: the tiny CPU checkpoint (8 state / 7 action dims) for config/pi05_cpu.yaml, the
full-size one (flash_rt.testing.full_size, DROID-shaped: 8 / 8) for the GPU configs.

The full-size weights are 7 GB, too big for CI, so the GPU configs are checked against tiny weights that carry
exactly the full-size generator's norm stats (`full_size_norm_stats`, the function build_full_checkpoint writes
them with; the dims come from the norm stats, not the weights), with hardware overridden to cpu. Before the fix,
config/pi05_hopper.yaml (8 action joints) failed here: the generator wrote 7 action dims.

In-process rclpy (no DDS traffic needed for a configure)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ros_testing import REPO, domain_for_module

CONFIGS = sorted((REPO / "config").glob("pi0*_*.yaml"))   # pi05_<target> and pi0_<target>


def configure(params_file: Path, checkpoint: Path):
    import rclpy
    from rclpy.context import Context
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from flash_rt_ros.node import FlashRTNode

    ctx = Context()
    rclpy.init(args=["test_configs", "--ros-args", "--params-file", str(params_file)], context=ctx,
               domain_id=domain_for_module())
    node = FlashRTNode(context=ctx, parameter_overrides=[Parameter("checkpoint", value=str(checkpoint)),
                                                         Parameter("hardware", value="cpu"),
                                                         Parameter("cpu_threads", value=1)])
    try:
        ok = node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        return ok, node.config_error, (node.policy.state_dim, node.policy.action_dim) if ok else None
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda p: p.name)
def test_config_configures_against_its_targets_checkpoint(cfg, tiny_openpi, tiny_droid, tiny_pi0, tiny_pi0_droid):
    params = yaml.safe_load(cfg.read_text())["/**"]["ros__parameters"]
    cpu, gpu = (tiny_pi0, tiny_pi0_droid) if params["model"] == "pi0" else (tiny_openpi, tiny_droid)
    checkpoint = cpu if params["hardware"] == "cpu" else gpu
    ok, error, dims = configure(cfg, checkpoint)
    assert ok, f"{cfg.name} does not configure against {checkpoint.name}: {error}"
    assert dims == (len(params["state_joint_names"]), len(params["action_joint_names"]))


def test_gpu_checkpoint_is_droid_shaped():
    from flash_rt.testing.full_size import full_size_norm_stats
    ns = full_size_norm_stats()["norm_stats"]
    assert (len(ns["state"]["mean"]), len(ns["actions"]["mean"])) == (8, 8)
