"""Launch flash_rt_ros with Pi0 on the CPU (exact FP32 path; config/pi0_cpu.yaml).

    ros2 launch flash_rt_ros pi0_cpu.launch.py checkpoint:=/models/pi0_droid prompt:="fold the towel"
    ros2 launch flash_rt_ros pi0_cpu.launch.py params_file:=/my/robot.yaml namespace:=robot1

Arguments: checkpoint, params_file, namespace, prompt, fastdds_profile (flash_rt_ros/launch_common.py). Without a
ROS install, the same node: flash-rt-node --ros-args --params-file config/pi0_cpu.yaml -p checkpoint:=/models/x
"""
from flash_rt_ros.launch_common import pi05_launch_description

PARAMS_FILE = "pi0_cpu.yaml"


def generate_launch_description():
    return pi05_launch_description(PARAMS_FILE)
