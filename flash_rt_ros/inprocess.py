"""Drive a FlashRTNode in one process without DDS traffic: feed real sensor_msgs objects into its callbacks and
call its tick directly. Used by the allocation test (tracemalloc over 500 ticks) and benchmarks/ros_node_cpu.py
(host overhead per tick with three 640x480 cameras), where a timer and another process would only add noise.
"""
from __future__ import annotations

import time

import numpy as np
from sensor_msgs.msg import Image, JointState

from flash_rt_ros.synthetic_sensors import DEFAULT_JOINTS, encode_frame, synthetic_frame, synthetic_joints


class Harness:
    def __init__(self, checkpoint: str, width: int = 640, height: int = 480, encoding: str = "rgb8",
                 domain_id: int = 0, params_file: str | None = None, overrides: dict | None = None):
        import rclpy
        from rclpy.context import Context
        from rclpy.parameter import Parameter

        from flash_rt_ros.node import FlashRTNode

        self.ctx = Context()
        args = ["flash_rt_inprocess"]
        if params_file:
            args += ["--ros-args", "--params-file", str(params_file)]
        rclpy.init(args=args, context=self.ctx, domain_id=domain_id)
        ov = {"checkpoint": str(checkpoint), "diagnostics_period_s": 3600.0, **(overrides or {})}
        self.node = FlashRTNode(context=self.ctx,
                                parameter_overrides=[Parameter(k, value=v) for k, v in ov.items()])
        from rclpy.lifecycle import TransitionCallbackReturn
        if self.node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            raise RuntimeError(f"configure failed: {self.node.config_error}")
        self.node.trigger_activate()
        self.images = []
        for c in range(len(self.node.p.camera_topics)):
            data, step = encode_frame(synthetic_frame(c, 0, width, height), encoding)
            m = Image(height=height, width=width, encoding=encoding, step=step)
            m.data = data
            self.images.append(m)
        self.joints = JointState()
        self.joints.name = list(DEFAULT_JOINTS)
        self.joints.position = synthetic_joints(len(DEFAULT_JOINTS), 0.0, static=True).tolist()

    def feed(self) -> None:
        """One frame per camera + one joint state, through the node's own callbacks."""
        now = self.node.get_clock().now().to_msg()
        for i, m in enumerate(self.images):
            m.header.stamp = now
            self.node._on_image(i, m)
        self.joints.header.stamp = now
        self.node._on_joint_state(self.joints)

    def warm_publish(self, n: int = 3000) -> None:
        """Publish the node's preallocated messages n times: rclpy/Fast DDS grow internal caches over the first
        ~1000-3000 publishes (measured: +45 kB after 1000, +55 kB after 3000, +56 kB after 6000, then flat), which
        is warm-up, not a per-tick allocation."""
        node = self.node
        for _ in range(n):
            node._chunk_pub.publish(node._msgs.chunk_bytes())
            if node._traj_pub is not None:
                node._traj_pub.publish(node._msgs.trajectory_bytes())

    def tick(self) -> None:
        self.node._tick()

    def timed_ticks(self, n: int) -> dict:
        """n x (feed + tick); returns per-tick ms arrays: conversion (feed), tick overhead (tick minus
        policy.step) and their sum (the host overhead the acceptance list bounds), plus inference."""
        st = self.node.stats
        conv = np.zeros(n)
        for k in range(n):
            t0 = time.perf_counter_ns()
            self.feed()
            conv[k] = (time.perf_counter_ns() - t0) * 1e-6
            self.tick()
        over = st.overhead_ms.values()[-n:].copy()
        inf = st.inference_ms.values()[-n:].copy()
        return {"conversion_ms": conv, "tick_overhead_ms": over, "host_overhead_ms": conv + over,
                "inference_ms": inf}

    def close(self) -> None:
        import rclpy
        try:
            self.node.trigger_deactivate()
            self.node.trigger_cleanup()
        finally:
            self.node.destroy_node()
            rclpy.shutdown(context=self.ctx)
