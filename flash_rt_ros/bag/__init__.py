"""flash_rt_ros.bag: prove a deployment right with recorded robot data (`flash-rt-bag`, docs/rosbag.md).

    record  the node's inputs and chunks -> rosbag2 MCAP bag (metadata v9, plays with `ros2 bag play`)
    replay  a bag's cameras + joints -> the running node, as observation sets (see replay.py for why), chunks ->
            a new bag
    report  every clean chunk recomputed with the FP32 reference on the same observation and noise: cos /
            max |diff| per chunk, latency histogram, trajectories PNG, summary JSON, exit 1 on a failed threshold

Modules: types (typestore, CDR header stamps, BagError), topics (node parameters and topic names), bagio
(reading/writing/validation, observation sets), rosutil (rclpy helpers), record, replay, report, plot, cli.
Bags are read and written with `rosbags` (rosbag2_py needs rclcpp, which pip can't install). Only record and
replay import rclpy; check/info/report and everything the unit tests touch run without a ROS graph.
"""
from flash_rt_ros.bag.types import BagError  # noqa: F401
