"""Launch flash_rt_ros on a Jetson AGX Thor (sm110; config/pi05_thor.yaml).

    ros2 launch flash_rt_ros pi05_thor.launch.py checkpoint:=/models/pi05_droid prompt:="fold the towel"
    ros2 launch flash_rt_ros pi05_thor.launch.py params_file:=/my/robot.yaml namespace:=robot1

Runs lib/flash_rt_ros/flash_rt_node (the same program as the `flash-rt-node` console entry point) with
`--ros-args --params-file <params_file>` plus the checkpoint/prompt overrides given here. Without a ROS install:
    flash-rt-node --ros-args --params-file config/pi05_thor.yaml -p checkpoint:=/models/pi05_droid
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "flash_rt_ros"
EXECUTABLE = "flash_rt_node"
PARAMS_FILE = "pi05_thor.yaml"
FASTDDS_PROFILE = "fastdds_loopback_shm.xml"


def _node(context):
    overrides = {}
    for arg in ("checkpoint", "prompt"):
        value = LaunchConfiguration(arg).perform(context)
        if value:  # empty = keep the params file's value
            overrides[arg] = value
    params = [LaunchConfiguration("params_file")] + ([overrides] if overrides else [])
    return [Node(package=PACKAGE, executable=EXECUTABLE, name="flash_rt_node",
                 namespace=LaunchConfiguration("namespace"), parameters=params,
                 output="screen", emulate_tty=True)]


def generate_launch_description():
    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint", default_value="",
                              description="Pi0.5 checkpoint dir or .safetensors (empty = the params file's)"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", PARAMS_FILE]),
                              description="ROS parameter YAML for the node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("prompt", default_value="", description="initial task prompt (empty = params file's)"),
        DeclareLaunchArgument("fastdds_profile", default_value="true",
                              description="use config/" + FASTDDS_PROFILE + " (loopback UDP + 32 MB shared memory)"),
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                               PathJoinSubstitution([share, "config", FASTDDS_PROFILE]),
                               condition=IfCondition(LaunchConfiguration("fastdds_profile"))),
        SetEnvironmentVariable("ROS_AUTOMATIC_DISCOVERY_RANGE", "SYSTEM_DEFAULT",
                               condition=IfCondition(LaunchConfiguration("fastdds_profile"))),
        OpaqueFunction(function=_node),
    ])
