"""A synthetic robot bag (no robot needed): for the tests, the docs walkthrough and `flash-rt-bag make-test-bag`.

Default content (what the replay test needs to be a real test, not a happy path):

* three cameras with different sizes, encodings and rates, one of them compressed:
  /camera/base/image_raw                   sensor_msgs/Image 640x480 rgb8, 15 Hz
  /camera/left_wrist/image_raw             sensor_msgs/Image 320x240 bgr8, 15 Hz (phase-shifted by 23 ms)
  /camera/right_wrist/image_raw/compressed sensor_msgs/CompressedImage JPEG 424x240, 10 Hz
* /joint_states at 50 Hz, joints in another order than the node's state_joint_names, plus one extra joint;
* /flash_rt_bag/prompt (std_msgs/String): a prompt at the start and a different one half-way through;
* header stamps 4-12 ms older than the log (receive) time, as with real drivers.

Frames come from flash_rt_ros.synthetic_sensors.synthetic_frame (moving squares on gradients), joints from
synthetic_joints, so every message differs from the previous one.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from flash_rt_ros.bag import bagio
from flash_rt_ros.bag.types import COMPRESSED_IMAGE, IMAGE, JOINT_STATE, STRING, typestore

T0_NS = 1_700_000_000_000_000_000


@dataclasses.dataclass(frozen=True)
class Camera:
    topic: str
    width: int
    height: int
    encoding: str       # rgb8 | bgr8 | mono8 | bgra8 | jpeg
    rate_hz: float
    phase_s: float = 0.0


DEFAULT_CAMERAS = (
    Camera("/camera/base/image_raw", 640, 480, "rgb8", 15.0),
    Camera("/camera/left_wrist/image_raw", 320, 240, "bgr8", 15.0, 0.023),
    Camera("/camera/right_wrist/image_raw/compressed", 424, 240, "jpeg", 10.0, 0.041),
)
DEFAULT_JOINTS = ("gripper", "joint_3", "joint_1", "joint_2", "extra_wrist_cam_tilt", "joint_4", "joint_5",
                  "joint_6", "joint_7")
PROMPTS = ("pick up the red block", "put the red block in the bin")
PROMPT_TOPIC = "/flash_rt_bag/prompt"
JOINT_TOPIC = "/joint_states"


def node_camera_topics(cameras=DEFAULT_CAMERAS) -> list[str]:
    """camera_topics for the node (relative names, resolved in the root namespace)."""
    return [c.topic.lstrip("/") for c in cameras]


def write_test_bag(path, duration_s: float = 2.0, cameras=DEFAULT_CAMERAS, joint_names=DEFAULT_JOINTS,
                   joint_rate_hz: float = 50.0, prompts=PROMPTS, prompt_topic: str | None = PROMPT_TOPIC,
                   joint_topic: str = JOINT_TOPIC, t0_ns: int = T0_NS, jpeg_quality: int = 90) -> Path:
    from flash_rt_ros.synthetic_sensors import synthetic_frame, synthetic_joints

    ts = typestore()
    T = ts.types
    Time, Header = T["builtin_interfaces/msg/Time"], T["std_msgs/msg/Header"]

    def header(stamp_ns: int, frame: str):
        sec, nsec = divmod(stamp_ns, 1_000_000_000)
        return Header(stamp=Time(sec=sec, nanosec=nsec), frame_id=frame)

    events = []  # (log ns, topic, msgtype, msg)
    for ci, cam in enumerate(cameras):
        n = int(duration_s * cam.rate_hz)
        for k in range(n):
            log = t0_ns + int((cam.phase_s + k / cam.rate_hz) * 1e9)
            stamp = log - int((4 + 8 * ((k * 7 + ci) % 5) / 4) * 1e6)
            rgb = synthetic_frame(ci, k, cam.width, cam.height)
            frame = cam.topic.split("/")[2] if cam.topic.count("/") >= 2 else "camera"
            if cam.encoding == "jpeg":
                ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                assert ok
                msg = T[COMPRESSED_IMAGE](header=header(stamp, frame), format="jpeg",
                                          data=np.frombuffer(buf.tobytes(), np.uint8))
                events.append((log, cam.topic, COMPRESSED_IMAGE, msg))
            else:
                img = {"rgb8": rgb, "bgr8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                       "mono8": cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
                       "bgra8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)}[cam.encoding]
                img = np.ascontiguousarray(img)
                msg = T[IMAGE](header=header(stamp, frame), height=cam.height, width=cam.width,
                               encoding=cam.encoding, is_bigendian=0, step=img.strides[0],
                               data=img.reshape(-1))
                events.append((log, cam.topic, IMAGE, msg))
    nj = int(duration_s * joint_rate_hz)
    for k in range(nj):
        log = t0_ns + int((0.005 + k / joint_rate_hz) * 1e9)
        q = synthetic_joints(len(joint_names), k / joint_rate_hz)
        msg = T[JOINT_STATE](header=header(log - 2_000_000, "base"), name=list(joint_names),
                             position=q.astype(np.float64), velocity=np.zeros(0), effort=np.zeros(0))
        events.append((log, joint_topic, JOINT_STATE, msg))
    if prompt_topic and prompts:
        for i, text in enumerate(prompts):
            log = t0_ns + int(i * duration_s / len(prompts) * 1e9)
            events.append((log, prompt_topic, STRING, T[STRING](data=text)))
    events.sort(key=lambda e: e[0])

    with bagio.open_writer(path) as w:
        conns = {}
        for _, topic, mt, _ in events:
            if topic not in conns:
                conns[topic] = bagio.add_connection(w, topic, mt, ts)
        for log, topic, mt, msg in events:
            w.write(conns[topic], log, ts.serialize_cdr(msg, mt))
    return Path(path)


def test_params(checkpoint, cameras=DEFAULT_CAMERAS, **extra) -> dict:
    """Node parameter overrides that fit the synthetic bag (on top of config/pi05_cpu.yaml)."""
    out = {"checkpoint": str(checkpoint), "camera_topics": node_camera_topics(cameras),
           "camera_slots": list(range(len(cameras))), "noise_seed": 7}
    out.update(extra)
    return out


def rewrite_bag(src, dst, drop=(), rename=None, transform=None, rename_joint: tuple[str, str] | None = None) -> Path:
    """Copy a bag with changes, to make the bad bags the tests and docs show: leave out `drop` topics, rename
    topics ({old: new}), change messages (`transform(topic, msg) -> msg`), or rename one joint everywhere."""
    rename = rename or {}
    store = typestore()
    with bagio.Bag(src) as b, bagio.open_writer(dst) as w:
        conns = {}
        for topic, t, raw in b.messages():
            if topic in drop:
                continue
            mt = b.msgtype(topic)
            msg = b.deserialize(raw, mt)
            if rename_joint and mt == JOINT_STATE:
                msg.name = [rename_joint[1] if n == rename_joint[0] else n for n in msg.name]
            if transform:
                msg = transform(topic, msg)
            out = rename.get(topic, topic)
            if out not in conns:
                conns[out] = bagio.add_connection(w, out, mt, store)
            w.write(conns[out], t, store.serialize_cdr(msg, mt))
    return Path(dst)
