"""The launch description shared by launch/pi05_*.launch.py: they differ only in their params file.

`node_spec(...)` is pure: from the launch arguments it builds everything the description runs -- the node's
package/executable/name/namespace, its parameter files and overrides, its extra environment -- and
`pi05_launch_description` hands exactly that to launch_ros (`NodeSpec.launch_ros_kwargs`). `NodeSpec.argv` renders
the command line launch_ros runs for it, so a test without `launch` (no pip wheel) runs the same command over real
DDS (test/ros/test_launch_command.py); the launch_pytest tests in test/launch/ start the launch files themselves
where `launch` is installed.

The node is lib/flash_rt_ros/flash_rt_node (scripts/flash_rt_node: the same program as the `flash-rt-node`
console entry point). It picks its Fast DDS setup itself (flash_rt_ros/fastdds.py: a 32 MB shared-memory segment,
loopback-only under ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, stock transports otherwise); fastdds_profile:=off
leaves Fast DDS as it is. `launch`/`launch_ros` are imported inside pi05_launch_description only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

PACKAGE = "flash_rt_ros"
EXECUTABLE = "flash_rt_node"
NODE_NAME = "flash_rt_node"
LAUNCH_ARGUMENTS = ("checkpoint", "params_file", "actions_file", "namespace", "prompt", "fastdds_profile")
FASTDDS_PROFILE_VALUES = {"auto": "auto", "true": "auto", "off": "off", "false": "off"}


@dataclass(frozen=True)
class NodeSpec:
    params_file: str
    overrides: dict = field(default_factory=dict)   # parameters given on the launch command line (win over the file)
    namespace: str = ""
    env: dict = field(default_factory=dict)         # added to the node's environment
    package: str = PACKAGE
    executable: str = EXECUTABLE
    name: str = NODE_NAME
    extra_files: tuple = ()                         # layered after params_file (an action space: config/actions/)

    @property
    def parameters(self) -> list:
        """launch_ros's `parameters`: the file, the extra files, then the overrides as a dict (a later entry wins)."""
        return [self.params_file, *self.extra_files] + ([dict(self.overrides)] if self.overrides else [])

    def launch_ros_kwargs(self) -> dict:
        return dict(package=self.package, executable=self.executable, name=self.name, namespace=self.namespace,
                    parameters=self.parameters, additional_env=dict(self.env) or None, output="screen",
                    emulate_tty=True)

    def argv(self, program: list[str], params_dir: Path) -> list[str]:
        """The command launch_ros runs: program (lib/<package>/<executable> there) + `--ros-args`, the name and
        namespace remaps, and one `--params-file` per entry of `parameters`; a dict becomes a YAML file under
        `/**: ros__parameters:` in params_dir, as launch_ros writes it."""
        args = [*program, "--ros-args", "-r", f"__node:={self.name}", "-r", f"__ns:={_absolute(self.namespace)}"]
        for i, p in enumerate(self.parameters):
            if isinstance(p, dict):
                path = Path(params_dir) / f"launch_params_{i}.yaml"
                path.write_text(yaml.safe_dump({"/**": {"ros__parameters": p}}, default_flow_style=False))
                p = str(path)
            args += ["--params-file", str(p)]
        return args


def _absolute(namespace: str) -> str:
    return namespace if namespace.startswith("/") else "/" + namespace


def node_spec(params_file: str, checkpoint: str = "", prompt: str = "", namespace: str = "",
              fastdds_profile: str = "auto", actions_file: str = "") -> NodeSpec:
    """What the launch description runs for these launch arguments. Empty checkpoint / prompt keep the params file's
    values; actions_file (e.g. the installed config/actions/aloha_bimanual.yaml) is layered over the params file.
    ValueError for a fastdds_profile other than auto/off (true/false are accepted, as before)."""
    mode = FASTDDS_PROFILE_VALUES.get(str(fastdds_profile).strip().lower())
    if mode is None:
        raise ValueError(f"launch argument fastdds_profile must be 'auto' or 'off' (got {fastdds_profile!r})")
    overrides = {k: v for k, v in (("checkpoint", checkpoint), ("prompt", prompt)) if v}
    env = {"FLASH_RT_FASTDDS": "off"} if mode == "off" else {}
    extra = (str(actions_file),) if str(actions_file).strip() else ()
    return NodeSpec(str(params_file), overrides, namespace, env, extra_files=extra)


def pi05_launch_description(params_file: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    def node(context):
        args = {a: LaunchConfiguration(a).perform(context) for a in LAUNCH_ARGUMENTS}
        return [Node(**node_spec(**args).launch_ros_kwargs())]

    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Pi0.5 checkpoint dir or .safetensors (empty = the params file's)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", params_file]),
                              description="ROS parameter YAML for the node"),
        DeclareLaunchArgument("actions_file", default_value="",
                              description="a YAML layered over params_file, e.g. an action space from "
                                          "config/actions/ (empty = the params file's action space)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("prompt", default_value="", description="initial task prompt (empty = params file's)"),
        DeclareLaunchArgument("fastdds_profile", default_value="auto",
                              description="auto: the node picks a 32 MB shared-memory Fast DDS setup unless you "
                                          "configured Fast DDS (flash_rt_ros/fastdds.py); off: leave Fast DDS as is"),
        OpaqueFunction(function=node),
    ])
