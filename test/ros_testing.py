"""Helpers for the tests that run real rclpy over real DDS on loopback (test/ros, test/launch): child processes with
their logs, the node and synthetic-sensor commands, and the test's own rclpy participant. Imports no ROS module at
import time, so a suite without rclpy can still import it (and skip).

Isolation: every child gets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (ROS_LOCALHOST_ONLY is ignored by Kilted) and the
ROS_DOMAIN_ID of its test module (derived from the pid), is started in its own session, and is stopped (SIGINT,
then SIGKILL) by the fixture that started it.
"""
from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROS_MODULES = ("rclpy", "sensor_msgs.msg", "lifecycle_msgs.msg", "diagnostic_msgs.msg", "trajectory_msgs.msg",
               "flash_rt_ros.msg", "flash_rt_ros.srv")
CPU_PARAMS = REPO / "config" / "pi05_cpu.yaml"
_domains = itertools.count()


def ros_missing() -> str:
    """Why the ROS tests cannot run here ("" when they can): rclpy, a message package or the flash_rt_ros interfaces
    does not import."""
    import importlib

    for name in ROS_MODULES:
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 - ImportError, or a wheel whose C library does not load
            if name == "rclpy":
                return f"rclpy does not import ({e}): ROS 2 is not installed here (make setup, or source a ROS install)"
            hint = " (build them: bash scripts/build_interfaces.sh)" if name.startswith("flash_rt_ros") else ""
            return f"cannot import {name}: {type(e).__name__}: {e}{hint}"
    return ""


def domain_for_module() -> int:
    # 0..101 are the portable domain ids; spread runs by pid, modules by a counter
    return 1 + (os.getpid() * 7 + next(_domains) * 13) % 100


class Proc:
    """A child process with its output in a log file; stop() is idempotent."""

    def __init__(self, cmd: list[str], log: Path, domain: int, env: dict | None = None):
        """env: extra variables for the child; a value of None removes that variable."""
        self.cmd, self.log = cmd, log
        extra = env or {}
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                   PYTHONUNBUFFERED="1")
        env.update({k: v for k, v in extra.items() if v is not None})
        for k in [k for k, v in extra.items() if v is None]:
            env.pop(k, None)
        env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)  # let the child run the wheels' bootstrapper itself
        self._f = open(log, "wb")
        self.p = subprocess.Popen(cmd, stdout=self._f, stderr=subprocess.STDOUT, env=env, cwd=str(REPO),
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.text():
                return True
            if not self.alive():
                return needle in self.text()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> int:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGINT)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
            except ProcessLookupError:
                pass
        self._f.close()
        return self.p.returncode


def node_cmd(checkpoint, *overrides: str, params_file=CPU_PARAMS) -> list[str]:
    cmd = [sys.executable, "-m", "flash_rt_ros.main", "--ros-args", "--params-file", str(params_file),
           "-p", f"checkpoint:={checkpoint}"]
    for o in overrides:
        cmd += ["-p", o]
    return cmd


def sensors_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "flash_rt_ros.synthetic_sensors", *args]


class Monitor:
    """The test's own rclpy participant: subscribes to the node's outputs, calls its services, publishes bad input."""

    def __init__(self, domain: int, ns: str = "/flash_rt_node"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from trajectory_msgs.msg import JointTrajectory

        from flash_rt_ros.msg import ActionChunk

        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node("flash_rt_test_monitor", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ns = ns
        self.chunks: list = []      # (receive time.monotonic(), ActionChunk)
        self.trajs: list = []
        self.diags: list = []
        self.node.create_subscription(ActionChunk, f"{ns}/action_chunk",
                                      lambda m: self.chunks.append((time.monotonic(), m)), 100)
        self.node.create_subscription(JointTrajectory, f"{ns}/joint_trajectory", self.trajs.append, 100)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, 100)
        self._pubs: dict = {}

    def spin(self, sec: float) -> None:
        end = time.monotonic() + sec
        while time.monotonic() < end:
            self.ex.spin_once(timeout_sec=0.01)

    def wait_chunks(self, n: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        start = len(self.chunks)
        while time.monotonic() < end and len(self.chunks) - start < n:
            self.ex.spin_once(timeout_sec=0.02)
        return len(self.chunks) - start >= n

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        cli = self.node.create_client(srv_type, name)
        try:
            if not cli.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available")
            fut = cli.call_async(request)
            end = time.monotonic() + timeout
            while not fut.done() and time.monotonic() < end:
                self.ex.spin_once(timeout_sec=0.01)
            if not fut.done():
                raise TimeoutError(f"no answer from {name}")
            return fut.result()
        finally:
            self.node.destroy_client(cli)

    def publisher(self, msg_type, topic: str):
        from rclpy.qos import qos_profile_sensor_data
        key = (msg_type, topic)
        if key not in self._pubs:
            self._pubs[key] = self.node.create_publisher(msg_type, topic, qos_profile_sensor_data)
            self.spin(0.5)  # discovery
        return self._pubs[key]

    def statuses(self, since: int = 0, name_contains: str = ""):
        for d in self.diags[since:]:
            for s in d.status:
                if name_contains in s.name:
                    yield s

    def close(self) -> None:
        import rclpy
        self.ex.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def cpu_variant(params_file: Path, out: Path) -> Path:
    """A copy of a config YAML with hardware: cpu and one torch thread, to run a GPU target's config here."""
    import yaml

    doc = yaml.safe_load(Path(params_file).read_text())
    doc["/**"]["ros__parameters"].update(hardware="cpu", cpu_threads=1)
    out.write_text(yaml.safe_dump(doc))
    return out
