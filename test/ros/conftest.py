"""Real rclpy over real DDS on loopback: the node and the sensor publishers run as separate processes (the venv's
python), the test talks to them through its own rclpy context (helpers: test/ros_testing.py).

Isolation: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (ROS_LOCALHOST_ONLY is ignored by Kilted) and a ROS_DOMAIN_ID per
test module derived from the pid, both set before any rclpy.init and passed to every child process.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.ros)
