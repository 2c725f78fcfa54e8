"""Drive a FlashRTNode in one process without DDS traffic: feed camera frames and joint states into its callbacks
and call its tick directly. Used by the allocation test (tracemalloc over 500 ticks) and benchmarks/ros_node_cpu.py
(host overhead per tick with three 640x480 cameras), where a timer and another process would only add noise.

Cameras go in the way the node receives them: serialized sensor_msgs/Image bytes through its raw-subscription
callback. Each frame is first copied twice, as rclpy's raw take does (rmw copies the DDS sample into a serialized
message buffer, then rclpy copies that into a new `bytes`), so the conversion time counts every per-frame copy and
first touch of the node's own process, not only the resize. The process gets the node's malloc tuning (main.py).
"""
from __future__ import annotations

import struct
import time

import numpy as np
from sensor_msgs.msg import Image, JointState

from flash_rt_ros.synthetic_sensors import DEFAULT_JOINTS, encode_frame, synthetic_frame, synthetic_joints


_STAMP = struct.Struct("<iI")  # header.stamp right after the 4-byte CDR encapsulation


class Harness:
    def __init__(self, checkpoint: str, width: int = 640, height: int = 480, encoding: str = "rgb8",
                 domain_id: int = 0, params_file: str | None = None, overrides: dict | None = None):
        import rclpy
        from rclpy.context import Context
        from rclpy.parameter import Parameter

        from flash_rt_ros.main import tune_malloc
        from flash_rt_ros.node import FlashRTNode

        tune_malloc()

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
        from rclpy.serialization import serialize_message
        self.images = []
        for c in range(len(self.node.p.camera_topics)):
            data, step = encode_frame(synthetic_frame(c, 0, width, height), encoding)
            m = Image(height=height, width=width, encoding=encoding, step=step)
            m.data = data
            self.images.append(bytearray(serialize_message(m)))  # CDR; the stamp is patched per feed
        self.joints = JointState()
        self.joints.name = list(DEFAULT_JOINTS)
        self.joints.position = synthetic_joints(len(DEFAULT_JOINTS), 0.0, static=True).tolist()

    def stamp(self) -> None:
        """Stamp every camera's next frame with now (the publisher's work, not timed)."""
        now = self.node.get_clock().now().to_msg()
        for m in self.images:
            _STAMP.pack_into(m, 4, now.sec, now.nanosec)

    def take(self, i: int) -> bytes:
        """Camera i's frame as a raw subscription's callback gets it: the two copies of rclpy's raw take (module
        docstring)."""
        return bytes(bytearray(self.images[i]))

    def feed_joints(self) -> None:
        self.joints.header.stamp = self.node.get_clock().now().to_msg()
        self.node._on_joint_state(self.joints)

    def feed(self) -> None:
        """One frame per camera (take, then its callback, as the executor does) + one joint state, through the
        node's own callbacks."""
        self.stamp()
        for i in range(len(self.images)):
            self.node._on_image_cdr(i, self.take(i))
        self.feed_joints()

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
        """n x (feed + tick); returns per-tick ms arrays: take_copies (the raw take's two copies of 3 frames),
        callbacks (3 image callbacks: parse + resize into the slots, and the joint-state callback), conversion
        (their sum), tick overhead (tick minus policy.step), host overhead (conversion + tick overhead: the number
        the acceptance list bounds) and inference."""
        st = self.node.stats
        copies, cbs = np.zeros(n), np.zeros(n)
        clock = time.perf_counter_ns
        for k in range(n):
            c = b = 0
            self.stamp()
            for i in range(len(self.images)):
                t0 = clock()
                data = self.take(i)
                t1 = clock()
                self.node._on_image_cdr(i, data)
                t2 = clock()
                c, b = c + t1 - t0, b + t2 - t1
            del data
            t0 = clock()
            self.feed_joints()
            b += clock() - t0
            copies[k], cbs[k] = c * 1e-6, b * 1e-6
            self.tick()
        over, inf = st.overhead_ms.last(n), st.inference_ms.last(n)
        conv = copies + cbs
        return {"take_copies_ms": copies, "callbacks_ms": cbs, "conversion_ms": conv, "tick_overhead_ms": over,
                "host_overhead_ms": conv + over, "inference_ms": inf}

    def close(self) -> None:
        import rclpy
        try:
            self.node.trigger_deactivate()
            self.node.trigger_cleanup()
        finally:
            self.node.destroy_node()
            rclpy.shutdown(context=self.ctx)
