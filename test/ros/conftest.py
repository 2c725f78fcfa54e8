"""Real rclpy over real DDS on loopback: the node and the sensor publishers run as separate processes (the venv's
python), the test talks to them through its own rclpy context (helpers: test/ros_testing.py).

Where rclpy, a message package or the flash_rt_ros interfaces do not import (e.g. the GPU suite, `pytest -m gpu`,
on a machine with torch + CUDA but no ROS), every module here is skipped at collection with the reason instead of
failing to import.

Isolation: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (ROS_LOCALHOST_ONLY is ignored by Kilted) and a ROS_DOMAIN_ID per
test module derived from the pid, both set before any rclpy.init and passed to every child process.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ros_testing import Monitor, domain_for_module, ros_missing

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
HERE = Path(__file__).parent
ROS_MISSING = ros_missing()


class _SkippedModule(pytest.Module):
    """A test module that is reported as skipped without being imported."""

    def collect(self):
        pytest.skip(ROS_MISSING)


def pytest_pycollect_makemodule(module_path, parent):
    if ROS_MISSING and Path(module_path).parent == HERE and Path(module_path).name.startswith("test_"):
        return _SkippedModule.from_parent(parent, path=Path(module_path))
    return None


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == HERE:
            item.add_marker(pytest.mark.ros)


@pytest.fixture(scope="module")
def domain():
    """This module's ROS_DOMAIN_ID (children and the monitor share it)."""
    return domain_for_module()


@pytest.fixture(scope="module")
def mon(domain):
    """The test's own rclpy participant on the module's domain."""
    m = Monitor(domain)
    yield m
    m.close()
