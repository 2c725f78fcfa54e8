"""A stand-in robot: publishes synthetic camera images and joint states (its own process; demo + tests).

    flash-rt-synthetic-sensors --width 640 --height 480 --camera-rate 30 --duration 15
    python -m flash_rt_ros.synthetic_sensors --static --encoding bgr8

Frames are a deterministic function of (camera, frame index) — `synthetic_frame` — so a test can rebuild
exactly what the node saw. --static publishes frame 0 and a constant joint state forever (inputs known at every
tick: the seeded-noise equivalence test uses it).
Fast DDS: like the node, a 32 MB shared-memory segment unless configured by the user (flash_rt_ros/fastdds.py);
as the publisher, this process is the side whose segment decides whether 640x480 frames drop.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import cv2
import numpy as np

DEFAULT_CAMERAS = ("camera/base/image_raw", "camera/left_wrist/image_raw", "camera/right_wrist/image_raw")
DEFAULT_JOINTS = ("joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7", "gripper")
CYCLE = 30  # distinct frames per camera before the pattern repeats


def synthetic_frame(cam: int, k: int, width: int, height: int) -> np.ndarray:
    """HxWx3 uint8 RGB: a colour gradient per camera with a square that moves with the frame index."""
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (x * 0.8 + 40 * cam) % 256
    img[..., 1] = (y * 0.8 + 60 * cam) % 256
    img[..., 2] = ((x + y) * 0.4 + 80 * cam) % 256
    s = max(4, min(width, height) // 5)
    phase = 2 * math.pi * (k % CYCLE) / CYCLE
    cx = int((width - s) * (0.5 + 0.4 * math.cos(phase + cam)))
    cy = int((height - s) * (0.5 + 0.4 * math.sin(phase + cam)))
    img[cy:cy + s, cx:cx + s] = (255 - 50 * cam, 30 * cam, 200)
    return img


def synthetic_joints(n: int, t: float, static: bool = False) -> np.ndarray:
    """Joint positions in the tiny model's comfortable range; constant when static."""
    i = np.arange(n, dtype=np.float64)
    if static:
        return 0.1 * np.sin(i + 1.0)
    return 0.1 * np.sin(i + 1.0) + 0.05 * np.sin(2 * math.pi * 0.5 * t + i)


def encode_frame(rgb: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """RGB frame -> (data bytes, step) in the given sensor_msgs encoding."""
    if encoding == "rgb8":
        out = rgb
    elif encoding == "bgr8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "bgra8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
    elif encoding == "mono8":
        out = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    else:
        raise ValueError(f"unsupported encoding {encoding!r}")
    out = np.ascontiguousarray(out)
    return out.tobytes(), out.strides[0]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default=",".join(DEFAULT_CAMERAS), help="comma-separated image topics")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--encoding", default="rgb8", choices=("rgb8", "bgr8", "bgra8", "mono8", "jpeg"))
    ap.add_argument("--camera-rate", type=float, default=30.0)
    ap.add_argument("--joint-topic", default="joint_states")
    ap.add_argument("--joint-names", default=",".join(DEFAULT_JOINTS))
    ap.add_argument("--joint-rate", type=float, default=100.0)
    ap.add_argument("--namespace", default="")
    ap.add_argument("--static", action="store_true", help="constant frame 0 and constant joints")
    ap.add_argument("--duration", type=float, default=0.0, help="seconds to run (0 = until killed)")
    ap.add_argument("--stop-cameras-after", type=float, default=0.0,
                    help="stop publishing images after this many seconds (stale-camera tests)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from flash_rt_ros import fastdds
    from flash_rt_ros.stop import Interrupted, StopOnSignal

    stop = StopOnSignal().install()   # a publish timer must not run on a context a signal already shut down
    dds = fastdds.apply()             # the publisher's segment decides whether big frames drop (fastdds.py)
    node = None
    try:
        rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
        node = rclpy.create_node("flash_rt_synthetic_sensors", namespace=a.namespace or None)
        node.get_logger().info(dds.message)
        start_publishing(node, a)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        end = time.monotonic() + a.duration if a.duration > 0 else math.inf
        stop.spinning = True
        while rclpy.ok() and not stop.requested and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
    except (Interrupted, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def start_publishing(node, a) -> None:
    """Prebuild the frames, then create the camera and joint publishers and their timers on `node`."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image, JointState

    topics = [t for t in a.cameras.split(",") if t]
    names = [n for n in a.joint_names.split(",") if n]
    n_frames = 1 if a.static else CYCLE
    compressed = a.encoding == "jpeg"
    frames = []  # [cam][k] -> prebuilt payloads (publishing is then a field assignment)
    for c in range(len(topics)):
        per = []
        for k in range(n_frames):
            rgb = synthetic_frame(c, k, a.width, a.height)
            if compressed:
                ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
                per.append((jpg.tobytes(), 0))
            else:
                per.append(encode_frame(rgb, a.encoding))
        frames.append(per)
    if compressed:
        pubs = [node.create_publisher(CompressedImage, t.rstrip("/") + "/compressed", qos_profile_sensor_data)
                for t in topics]
    else:
        pubs = [node.create_publisher(Image, t, qos_profile_sensor_data) for t in topics]
    jpub = node.create_publisher(JointState, a.joint_topic, qos_profile_sensor_data)
    t_start = time.monotonic()
    state = {"k": 0}

    def publish_cameras():
        if a.stop_cameras_after and time.monotonic() - t_start > a.stop_cameras_after:
            return
        k = state["k"] % n_frames
        stamp = node.get_clock().now().to_msg()
        for c, pub in enumerate(pubs):
            data, step = frames[c][k]
            if compressed:
                m = CompressedImage(format="jpeg")
            else:
                m = Image(height=a.height, width=a.width, encoding=a.encoding, step=step)
            m.header.stamp = stamp
            m.header.frame_id = f"camera_{c}"
            m.data = data
            pub.publish(m)
        state["k"] += 1

    def publish_joints():
        m = JointState()
        m.header.stamp = node.get_clock().now().to_msg()
        m.name = names
        m.position = synthetic_joints(len(names), time.monotonic() - t_start, a.static).tolist()
        jpub.publish(m)

    node.create_timer(1.0 / a.camera_rate, publish_cameras)
    node.create_timer(1.0 / a.joint_rate, publish_joints)
    node.get_logger().info(f"publishing {len(topics)} x {a.width}x{a.height} {a.encoding} at {a.camera_rate:g} Hz "
                           f"and {len(names)} joints at {a.joint_rate:g} Hz{' (static)' if a.static else ''}")


if __name__ == "__main__":
    sys.exit(main())
