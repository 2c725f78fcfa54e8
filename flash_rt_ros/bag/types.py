"""Message types for bags: the rosbags typestore (ROS 2 Kilted + flash_rt_ros/msg/ActionChunk), header-stamp
access on raw CDR bytes, and the one error type of the bag tools.

Nothing here imports rclpy: bags are written and read with `rosbags` (rosbag2_py needs rclcpp, which has no pip
wheel; see reference/ros2_from_pip.md 4a/4b). The ActionChunk definition is registered from its .msg text, found
where the interface build installed it (<prefix>/share/flash_rt_ros/msg/ActionChunk.msg) or, in a source
checkout, in msg/ next to this package; rosbags computes the same RIHS01 hash as rosidl for it.

Stamps on raw bytes: Image, CompressedImage and JointState all start with std_msgs/Header, so after the 4-byte
CDR encapsulation header the payload begins with `int32 sec, uint32 nanosec`. `header_stamp_ns` reads it and
`with_header_stamp` returns a copy with a new stamp, without deserializing a 1 MB image (replay re-stamps every
message it publishes; see replay.py for why).
"""
from __future__ import annotations

import functools
import struct
from pathlib import Path

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"
ACTION_CHUNK = "flash_rt_ros/msg/ActionChunk"
JOINT_TRAJECTORY = "trajectory_msgs/msg/JointTrajectory"
DIAGNOSTIC_ARRAY = "diagnostic_msgs/msg/DiagnosticArray"
HEADER_TYPES = (IMAGE, COMPRESSED_IMAGE, JOINT_STATE)

_ENCAPSULATION = {b"\x00\x00": ">", b"\x00\x01": "<"}  # plain CDR (XCDR1), big / little endian


class BagError(Exception):
    """A bag (or a bag tool's input) that can't be used; the message says what is wrong and what to do.

    The CLI prints it as `flash-rt-bag <command>: error: <message>` and exits with status 2.
    """


def _candidate_msg_files() -> list[Path]:
    out = []
    try:
        from ament_index_python.packages import get_package_share_directory
        out.append(Path(get_package_share_directory("flash_rt_ros")) / "msg" / "ActionChunk.msg")
    except Exception:  # noqa: BLE001 - not installed through ament (plain checkout): try the others
        pass
    import sys
    out.append(Path(sys.prefix) / "share" / "flash_rt_ros" / "msg" / "ActionChunk.msg")
    out.append(Path(__file__).resolve().parents[2] / "msg" / "ActionChunk.msg")
    return out


@functools.lru_cache(maxsize=1)
def action_chunk_msgdef() -> str:
    """The .msg text of flash_rt_ros/msg/ActionChunk the running code was built with."""
    for p in _candidate_msg_files():
        if p.is_file():
            return p.read_text()
    raise BagError("cannot find ActionChunk.msg (looked in " + ", ".join(str(p) for p in _candidate_msg_files())
                   + "); build the interfaces (bash scripts/build_interfaces.sh) or run from the source checkout")


def typestore(chunk_msgdef: str | None = None):
    """A rosbags Typestore with every ROS 2 Kilted type plus flash_rt_ros/msg/ActionChunk."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    store = get_typestore(Stores.ROS2_KILTED)
    store.register(get_types_from_msg(chunk_msgdef or action_chunk_msgdef(), ACTION_CHUNK))
    return store


def python_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class (for publishers / raw subscriptions)."""
    import importlib

    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] not in ("msg", "srv"):
        raise BagError(f"message type {msgtype!r} is not of the form package/msg/Name")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError) as e:
        raise BagError(f"message type {msgtype!r} is not available in this Python environment ({e}); install "
                       f"its interface package") from None


def _order(raw) -> str:
    head = bytes(raw[:2])
    order = _ENCAPSULATION.get(head)
    if order is None or len(raw) < 12:
        raise BagError(f"message is not plain CDR with a std_msgs/Header first (encapsulation {head.hex()}, "
                       f"{len(raw)} bytes)")
    return order


def header_stamp_ns(raw) -> int:
    """header.stamp (ns) of a serialized Image / CompressedImage / JointState."""
    sec, nsec = struct.unpack_from(_order(raw) + "iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def with_header_stamp(raw, stamp_ns: int) -> bytearray:
    """A copy of a serialized Image / CompressedImage / JointState with header.stamp set to `stamp_ns`."""
    out = bytearray(raw)
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    struct.pack_into(_order(raw) + "iI", out, 4, sec, nsec)
    return out
