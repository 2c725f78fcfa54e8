"""The launch description shared by launch/pi05_*.launch.py: they differ only in their params file.

Runs lib/flash_rt_ros/flash_rt_node (the same program as the `flash-rt-node` console entry point) with
`--ros-args --params-file <params_file>` plus the checkpoint/prompt overrides given on the command line. The node
picks its Fast DDS setup itself (flash_rt_ros/fastdds.py: a 32 MB shared-memory segment, loopback-only under
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, stock transports otherwise); fastdds_profile:=off leaves Fast DDS alone.
Imported by the launch files only, so `launch`/`launch_ros` (absent from pip) are imported inside the function.
"""
from __future__ import annotations

PACKAGE = "flash_rt_ros"
EXECUTABLE = "flash_rt_node"
NODE_NAME = "flash_rt_node"
LAUNCH_ARGUMENTS = ("checkpoint", "params_file", "namespace", "prompt", "fastdds_profile")


def pi05_launch_description(params_file: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
    from launch_ros.actions import Node
    from launch_ros.substitutions import FindPackageShare

    def node(context):
        overrides = {}
        for arg in ("checkpoint", "prompt"):
            value = LaunchConfiguration(arg).perform(context)
            if value:  # empty = keep the params file's value
                overrides[arg] = value
        params = [LaunchConfiguration("params_file")] + ([overrides] if overrides else [])
        profile = LaunchConfiguration("fastdds_profile").perform(context).strip().lower()
        env = {"FLASH_RT_FASTDDS": "off"} if profile in ("off", "false", "0") else None
        return [Node(package=PACKAGE, executable=EXECUTABLE, name=NODE_NAME,
                     namespace=LaunchConfiguration("namespace"), parameters=params, additional_env=env,
                     output="screen", emulate_tty=True)]

    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Pi0.5 checkpoint dir or .safetensors (empty = the params file's)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", params_file]),
                              description="ROS parameter YAML for the node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("prompt", default_value="", description="initial task prompt (empty = params file's)"),
        DeclareLaunchArgument("fastdds_profile", default_value="auto",
                              description="auto: the node picks a 32 MB shared-memory Fast DDS setup unless you "
                                          "configured Fast DDS (flash_rt_ros/fastdds.py); off: leave Fast DDS as is"),
        OpaqueFunction(function=node),
    ])
