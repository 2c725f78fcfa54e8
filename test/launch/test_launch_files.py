"""launch_pytest: the launch files themselves, started as `ros2 launch` starts them, with a tiny checkpoint and the
synthetic sensors; each test waits for chunks on ~/action_chunk and changes the prompt through ~/set_prompt.
The GPU targets' launch files (thor, rtx, hopper) run with params_file:= a copy of their config with hardware: cpu
and tiny weights carrying the full-size checkpoint's DROID norm stats (8 state / 8 action dims, as their configs
expect); pi05_thor.launch.py also runs with its own config, where it must fail configure cleanly without CUDA.

This is what `colcon test` runs on a ROS install (CMakeLists.txt: ament_add_pytest_test; package.xml test_depend
launch_pytest). `launch`, `launch_ros` and `launch_pytest` have no pip wheel, so where they are missing the module
is skipped at collection with that reason; the command and parameters the launch files run are still exercised
there by test/ros/test_launch_command.py (flash_rt_ros.launch_common.node_spec).

The launch file comes from the installed package (share/flash_rt_ros/launch) when the ament index has it, else
from this checkout; the node is always lib/flash_rt_ros/flash_rt_node, so the package must be installed.
"""
from __future__ import annotations

import os
import time

import pytest

REASON = "needs {} (ROS 2 launch; no pip wheel): run with colcon test on a ROS install"
pytest.importorskip("launch_pytest", reason=REASON.format("launch_pytest"))
pytest.importorskip("launch_ros", reason=REASON.format("launch_ros"))
from ros_testing import ros_missing  # noqa: E402

if ros_missing():
    pytest.skip(ros_missing(), allow_module_level=True)

import launch  # noqa: E402
import launch_pytest  # noqa: E402
from launch.actions import ExecuteProcess, IncludeLaunchDescription, SetEnvironmentVariable  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from ros_testing import REPO, Monitor, cpu_variant, domain_for_module, sensors_cmd  # noqa: E402

pytestmark = pytest.mark.ros
DOMAIN = domain_for_module()
PROMPT = "put the cup in the sink"


def launch_file(name: str) -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        path = os.path.join(get_package_share_directory("flash_rt_ros"), "launch", name)
    except (LookupError, OSError, ValueError):
        path = str(REPO / "launch" / name)
    return path


def description(name: str, **arguments) -> launch.LaunchDescription:
    """The launch file with these launch arguments, plus the synthetic sensors, on this module's loopback domain."""
    return launch.LaunchDescription([
        SetEnvironmentVariable("ROS_DOMAIN_ID", str(DOMAIN)),
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(launch_file(name)),
                                 launch_arguments=[(k, str(v)) for k, v in arguments.items()]),
        ExecuteProcess(cmd=sensors_cmd("--width", "160", "--height", "120"), cwd=str(REPO), output="screen"),
        launch_pytest.actions.ReadyToTest(),
    ])


def chunks_and_prompt(expect_prompt: str = PROMPT) -> None:
    """Chunks arrive with the prompt given as a launch argument, and ~/set_prompt switches them."""
    from flash_rt_ros.srv import SetPrompt

    mon = Monitor(DOMAIN)
    try:
        assert mon.wait_chunks(3, 120), "no chunks on /flash_rt_node/action_chunk"
        assert mon.chunks[-1][1].prompt == expect_prompt
        res = mon.call(SetPrompt, "/flash_rt_node/set_prompt", SetPrompt.Request(prompt="open the drawer"), 30)
        assert res.success, res.message
        assert mon.wait_chunks(5, 30)
        assert mon.chunks[-1][1].prompt == "open the drawer"
    finally:
        mon.close()


@launch_pytest.fixture
def cpu_launch(tiny_openpi):
    return description("pi05_cpu.launch.py", checkpoint=tiny_openpi, prompt=PROMPT)


@pytest.mark.launch(fixture=cpu_launch)
def test_cpu_launch_file():
    chunks_and_prompt()



def gpu_target_launch(name: str, tmp_path, tiny_droid):
    cfg = cpu_variant(REPO / "config" / name.replace(".launch.py", ".yaml"), tmp_path / "cpu_variant.yaml")
    return description(name, checkpoint=tiny_droid, prompt=PROMPT, params_file=cfg)


@launch_pytest.fixture
def thor_launch(tmp_path, tiny_droid):
    return gpu_target_launch("pi05_thor.launch.py", tmp_path, tiny_droid)


@launch_pytest.fixture
def rtx_launch(tmp_path, tiny_droid):
    return gpu_target_launch("pi05_rtx.launch.py", tmp_path, tiny_droid)


@launch_pytest.fixture
def hopper_launch(tmp_path, tiny_droid):
    return gpu_target_launch("pi05_hopper.launch.py", tmp_path, tiny_droid)


@pytest.mark.launch(fixture=thor_launch)
def test_thor_launch_file_on_cpu():
    chunks_and_prompt()


@pytest.mark.launch(fixture=rtx_launch)
def test_rtx_launch_file_on_cpu():
    chunks_and_prompt()


@pytest.mark.launch(fixture=hopper_launch)
def test_hopper_launch_file_on_cpu():
    chunks_and_prompt()


@launch_pytest.fixture
def thor_as_shipped(tiny_droid):
    return description("pi05_thor.launch.py", checkpoint=tiny_droid)


@pytest.mark.launch(fixture=thor_as_shipped)
def test_thor_launch_file_as_shipped():
    """With its own config (hardware: thor): without CUDA, configure fails with a message that names the hardware,
    says CUDA is missing and points at the CPU config, and the node stays up, unconfigured; with CUDA, chunks."""
    import torch
    from lifecycle_msgs.msg import State
    from lifecycle_msgs.srv import GetState

    if torch.cuda.is_available():
        return chunks_and_prompt(expect_prompt="pick up the object and place it in the bin")
    mon = Monitor(DOMAIN)
    try:
        end = time.monotonic() + 120
        errors = []
        while time.monotonic() < end and not errors:
            mon.spin(0.5)
            errors = [s for s in mon.statuses(0, ": engine") if s.level == b"\x02"]
        assert errors, "no ERROR status on /diagnostics"
        msg = errors[-1].message
        assert "thor" in msg and "CUDA" in msg and "cpu" in msg, msg
        state = mon.call(GetState, "/flash_rt_node/get_state", GetState.Request(), 30).current_state.id
        assert state == State.PRIMARY_STATE_UNCONFIGURED
    finally:
        mon.close()
