"""Launch flash_rt_ros with Pi0 on a Jetson AGX Thor (sm110; config/pi0_thor.yaml).

    ros2 launch flash_rt_ros pi0_thor.launch.py checkpoint:=/models/pi0_droid prompt:="fold the towel"
    ros2 launch flash_rt_ros pi0_thor.launch.py params_file:=/my/robot.yaml namespace:=robot1

Arguments: checkpoint, params_file, namespace, prompt, fastdds_profile (flash_rt_ros/launch_common.py). Without a
ROS install, the same node: flash-rt-node --ros-args --params-file config/pi0_thor.yaml -p checkpoint:=/models/x
"""
from flash_rt_ros.launch_common import pi05_launch_description

PARAMS_FILE = "pi0_thor.yaml"


def generate_launch_description():
    return pi05_launch_description(PARAMS_FILE)
