"""The part of the launch files that is ours, run in CI without `launch`: the command, parameters, overrides,
namespace and environment that launch/pi05_cpu.launch.py runs come from flash_rt_ros.launch_common.node_spec
(the description itself hands its result to launch_ros), and NodeSpec.argv renders them as launch_ros does. Here
that exact command runs scripts/flash_rt_node -- the file CMakeLists.txt installs as lib/flash_rt_ros/
flash_rt_node -- with a namespace and a prompt override given as launch arguments, over real DDS on loopback.
test/launch/ starts the launch files themselves where `launch` is installed."""
from __future__ import annotations

import os
import sys

from ros_testing import CPU_PARAMS, REPO, Monitor, Proc, domain_for_module, sensors_cmd

PROMPT = "put the cup in the sink"
NS = "robot1"


def test_cpu_launch_command_publishes_and_takes_a_prompt(tmp_path, tiny_openpi):
    from flash_rt_ros.launch_common import node_spec
    from flash_rt_ros.srv import SetPrompt

    spec = node_spec(str(CPU_PARAMS), checkpoint=str(tiny_openpi), prompt=PROMPT, namespace=NS)
    argv = spec.argv([sys.executable, str(REPO / "scripts" / "flash_rt_node")], tmp_path)
    domain = domain_for_module()
    # PYTHONPATH: the script imports flash_rt_ros like an installed program; make it this checkout's
    env = dict(spec.env, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    node = Proc(argv, tmp_path / "node.log", domain, env=env)
    sensors = Proc(sensors_cmd("--width", "160", "--height", "120", "--namespace", NS), tmp_path / "sensors.log",
                   domain)
    mon = Monitor(domain, ns=f"/{NS}/flash_rt_node")
    try:
        assert node.wait_for_log("active:", 90), node.text()[-3000:]
        assert mon.wait_chunks(3, 30), "no chunks on the namespaced topic:\n" + node.text()[-3000:]
        assert mon.chunks[-1][1].prompt == PROMPT, "the launch argument prompt:= did not override the params file"
        res = mon.call(SetPrompt, f"/{NS}/flash_rt_node/set_prompt", SetPrompt.Request(prompt="open the drawer"))
        assert res.success, res.message
        n0 = len(mon.chunks)
        assert mon.wait_chunks(5, 10)
        assert mon.chunks[-1][1].prompt == "open the drawer" and len(mon.chunks) > n0
        assert node.alive()
    finally:
        mon.close()
        sensors.stop()
        assert node.stop() == 0, node.text()[-3000:]
