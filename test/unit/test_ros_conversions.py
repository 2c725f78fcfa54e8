"""flash_rt_ros.conversions and joint_state: pure functions, no ROS graph (messages are duck-typed)."""
from __future__ import annotations

import math
import tracemalloc
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from flash_rt.errors import InputError
from flash_rt.io.images import resize_with_pad
from flash_rt_ros.conversions import SlotWriter, image_view
from flash_rt_ros.joint_state import JointStateMapper


def rgb_image(h=480, w=640, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def msg(img, encoding, pad=0):
    h, w = img.shape[:2]
    arr = img.reshape(h, -1)
    row = arr.shape[1]
    buf = np.zeros((h, row + pad), np.uint8)
    buf[:, :row] = arr
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=row + pad, data=buf.tobytes())


def expected(img, interp="linear"):
    return resize_with_pad(img, out=np.zeros((224, 224, 3), np.uint8), interpolation=interp)


@pytest.fixture
def slot():
    return np.zeros((224, 224, 3), np.uint8)


@pytest.mark.parametrize("interp", ["linear", "area"])
def test_rgb8(slot, interp):
    img = rgb_image()
    SlotWriter(slot, interp).write_image(msg(img, "rgb8"))
    assert np.array_equal(slot, expected(img, interp))


def test_bgr8_equals_rgb(slot):
    img = rgb_image()
    SlotWriter(slot).write_image(msg(np.ascontiguousarray(img[..., ::-1]), "bgr8"))
    assert np.array_equal(slot, expected(img))


def test_mono8(slot):
    gray = rgb_image()[..., 0].copy()
    SlotWriter(slot).write_image(msg(gray[..., None], "mono8"))
    assert np.array_equal(slot, expected(cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)))


def test_bgra8(slot):
    img = rgb_image()
    bgra = cv2.cvtColor(img, cv2.COLOR_RGB2BGRA)
    SlotWriter(slot).write_image(msg(bgra, "bgra8"))
    assert np.array_equal(slot, expected(img))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "bgra8"])
def test_padded_step_equals_unpadded(encoding):
    img = rgb_image(240, 320)
    src = {"rgb8": img, "bgr8": img[..., ::-1], "mono8": img[..., :1],
           "bgra8": cv2.cvtColor(img, cv2.COLOR_RGB2BGRA)}[encoding]
    src = np.ascontiguousarray(src)
    a, b = np.zeros((224, 224, 3), np.uint8), np.zeros((224, 224, 3), np.uint8)
    SlotWriter(a).write_image(msg(src, encoding))
    SlotWriter(b).write_image(msg(src, encoding, pad=64))
    assert np.array_equal(a, b)


def test_view_is_zero_copy():
    m = msg(rgb_image(10, 12), "rgb8", pad=4)
    v, enc = image_view(m)
    assert enc == "rgb8" and v.shape == (10, 12, 3) and v.strides == (40, 3, 1)
    assert np.shares_memory(v, np.frombuffer(m.data, np.uint8))


@pytest.mark.parametrize("mutate, needle", [
    (dict(encoding="yuv422"), "unsupported image encoding 'yuv422'"),
    (dict(encoding="16UC1"), "unsupported image encoding"),
    (dict(width=0), "invalid"),
    (dict(height=100000), "invalid"),
    (dict(step=100), "smaller than width*channels"),
    (dict(data=bytes(1000)), "truncated"),
])
def test_bad_image_rejected_slot_untouched(slot, mutate, needle):
    m = msg(rgb_image(48, 64), "rgb8")
    for k, v in mutate.items():
        setattr(m, k, v)
    slot[...] = 7
    with pytest.raises(InputError, match=needle.replace("*", r"\*")):
        SlotWriter(slot).write_image(m)
    assert (slot == 7).all()


def test_expected_size(slot):
    w = SlotWriter(slot, expected_size=(640, 480))
    w.write_image(msg(rgb_image(), "rgb8"))
    with pytest.raises(InputError, match="does not match the configured 640x480"):
        w.write_image(msg(rgb_image(240, 320), "rgb8"))


def test_compressed(slot):
    img = rgb_image(120, 160)
    img = cv2.GaussianBlur(img, (9, 9), 3)
    ok, jpg = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    SlotWriter(slot).write_compressed(SimpleNamespace(format="png", data=jpg.tobytes()))
    assert np.array_equal(slot, expected(img))
    with pytest.raises(InputError, match="could not decode"):
        SlotWriter(slot).write_compressed(SimpleNamespace(format="jpeg", data=b"\xff\xd8garbage"))
    with pytest.raises(InputError, match="empty"):
        SlotWriter(slot).write_compressed(SimpleNamespace(format="jpeg", data=b""))


def test_real_sensor_msgs_image(slot):
    from sensor_msgs.msg import Image
    img = rgb_image(48, 64)
    m = Image(height=48, width=64, encoding="rgb8", step=64 * 3)
    m.data = img.tobytes()
    SlotWriter(slot).write_image(m)
    assert np.array_equal(slot, expected(img))


def test_no_allocation_growth_per_frame(slot):
    w = SlotWriter(slot)
    ms = [msg(rgb_image(seed=s), e) for s, e in ((0, "rgb8"), (1, "bgr8"), (2, "mono8"))]
    ms[2] = msg(rgb_image(seed=2)[..., :1].copy(), "mono8")
    for m in ms * 3:
        w.write_image(m)
    tracemalloc.start()
    s1 = tracemalloc.take_snapshot()
    for _ in range(100):
        for m in ms:
            w.write_image(m)
    s2 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(d.size_diff for d in s2.compare_to(s1, "lineno") if "tracemalloc" not in str(d))
    assert growth < 2048, growth


# -- joint states ------------------------------------------------------------------------------------------
NAMES = ["a", "b", "c"]


def test_joint_mapping_by_name():
    m = JointStateMapper(NAMES)
    out = m.write(["x", "c", "a", "b"], [9.0, 3.0, 1.0, 2.0])
    assert out.dtype == np.float32 and out.tolist() == [1.0, 2.0, 3.0]
    import array
    m.write(["b", "a", "c"], array.array("d", [20.0, 10.0, 30.0]))
    assert m.out.tolist() == [10.0, 20.0, 30.0]


def test_joint_missing_names_keeps_last_state():
    m = JointStateMapper(NAMES)
    m.write(NAMES, [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"missing joints \['c'\]"):
        m.write(["a", "b"], [5.0, 6.0])
    assert m.out.tolist() == [1.0, 2.0, 3.0]


def test_joint_nan_rejected():
    m = JointStateMapper(NAMES)
    m.write(NAMES, [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match=r"NaN/inf positions for \['b'\]"):
        m.write(NAMES, [1.0, math.nan, 3.0])
    with pytest.raises(InputError, match="NaN/inf"):
        m.write(NAMES, [math.inf, 0.0, 0.0])
    assert m.out.tolist() == [1.0, 2.0, 3.0]


def test_joint_short_positions_and_config_errors():
    m = JointStateMapper(NAMES)
    with pytest.raises(InputError, match="3 names but 2 positions"):
        m.write(NAMES, [1.0, 2.0])
    with pytest.raises(InputError, match="empty"):
        JointStateMapper([])
    with pytest.raises(InputError, match="duplicates"):
        JointStateMapper(["a", "a"])


# -- pad zeroed once per camera size, raw CDR ------------------------------------------------------------------
def _sizes_stream():
    """(h, w, encoding) frames: steady, then the size changes mid-stream (both aspect directions, a square frame,
    the slot size itself, an upscale), then back."""
    return [(480, 640, "rgb8"), (480, 640, "rgb8"), (480, 640, "bgr8"), (640, 480, "rgb8"), (640, 480, "mono8"),
            (300, 300, "rgb8"), (224, 224, "rgb8"), (100, 60, "bgra8"), (480, 641, "rgb8"), (480, 640, "rgb8"),
            (480, 640, "bgr8"), (224, 224, "bgr8"), (480, 640, "rgb8")]


def _encode(img, enc):
    return np.ascontiguousarray({"rgb8": img, "bgr8": img[..., ::-1], "mono8": img[..., :1],
                                 "bgra8": cv2.cvtColor(img, cv2.COLOR_RGB2BGRA)}[enc])


def _rgb_of(img, enc):
    return cv2.cvtColor(img[..., 0].copy(), cv2.COLOR_GRAY2RGB) if enc == "mono8" else img


@pytest.mark.parametrize("interp", ["linear", "area"])
def test_size_changes_mid_stream_equal_resize_with_pad(interp):
    """Every frame, whatever came before, leaves exactly resize_with_pad's output in the slot (pad included)."""
    slot = np.full((224, 224, 3), 99, np.uint8)
    w = SlotWriter(slot, interp)
    for k, (h, wd, enc) in enumerate(_sizes_stream()):
        img = rgb_image(h, wd, seed=k)
        w.write_image(msg(_encode(img, enc), enc, pad=8 * (k % 2)))
        assert np.array_equal(slot, expected(_rgb_of(img, enc), interp)), (k, h, wd, enc)


def test_bad_frame_between_good_ones_keeps_slot_and_pad():
    slot = np.zeros((224, 224, 3), np.uint8)
    w = SlotWriter(slot)
    img = rgb_image(seed=1)
    w.write_image(msg(img, "rgb8"))
    before = slot.copy()
    with pytest.raises(InputError, match="truncated"):
        w.write_image(SimpleNamespace(encoding="rgb8", height=240, width=320, step=960, data=bytes(10)))
    assert np.array_equal(slot, before)
    img2 = rgb_image(seed=2)
    w.write_image(msg(img2, "rgb8"))
    assert np.array_equal(slot, expected(img2))


def test_reset_rezeroes_the_pad():
    slot = np.zeros((224, 224, 3), np.uint8)
    w = SlotWriter(slot)
    w.write_image(msg(rgb_image(seed=1), "rgb8"))
    slot[...] = 5  # someone else wrote the slot
    w.reset()
    img = rgb_image(seed=2)
    w.write_image(msg(img, "rgb8"))
    assert np.array_equal(slot, expected(img))


def _ros_image(img, enc, pad=0, stamp=(0, 0), frame_id="camera"):
    from sensor_msgs.msg import Image
    src = _encode(img, enc)
    h, wd = src.shape[:2]
    row = src.reshape(h, -1)
    buf = np.zeros((h, row.shape[1] + pad), np.uint8)
    buf[:, :row.shape[1]] = row
    m = Image(height=h, width=wd, encoding=enc, step=row.shape[1] + pad)
    m.header.stamp.sec, m.header.stamp.nanosec = stamp
    m.header.frame_id = frame_id
    m.data = buf.tobytes()
    return m


@pytest.mark.parametrize("enc,pad,frame_id", [("rgb8", 0, "camera"), ("bgr8", 5, ""), ("mono8", 3, "a_b"),
                                              ("bgra8", 0, "wrist_camera_link")])
def test_cdr_equals_message_path(enc, pad, frame_id):
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    img = rgb_image(240, 320, seed=3)
    m = _ros_image(img, enc, pad, stamp=(12, 345), frame_id=frame_id)
    a, b = np.zeros((224, 224, 3), np.uint8), np.zeros((224, 224, 3), np.uint8)
    SlotWriter(a).write_image(m)
    data = serialize_message(m)
    assert SlotWriter(b).write_cdr(data) == 12 * 10**9 + 345
    assert np.array_equal(a, b)
    v, e, _ = __import__("flash_rt_ros.conversions").conversions.image_view_cdr(data)
    assert e == enc and np.shares_memory(v, np.frombuffer(data, np.uint8))  # zero copy


@pytest.mark.parametrize("mutate, needle", [
    (dict(encoding="yuv422"), "unsupported image encoding 'yuv422'"),
    (dict(width=0), "invalid"),
    (dict(height=100000), "invalid"),
    (dict(step=100), "smaller than width*channels"),
    (dict(data=bytes(1000)), "truncated"),
])
def test_cdr_bad_image_same_errors(mutate, needle):
    """A raw subscription must reject bad images with the same messages as the message path."""
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    m = _ros_image(rgb_image(48, 64), "rgb8")
    for k, v in mutate.items():
        setattr(m, k, v)
    slot = np.full((224, 224, 3), 7, np.uint8)
    with pytest.raises(InputError, match=needle.replace("*", r"\*")):
        SlotWriter(slot).write_cdr(serialize_message(m))
    assert (slot == 7).all()


def test_cdr_malformed_bytes():
    pytest.importorskip("rclpy")
    from rclpy.serialization import serialize_message
    data = serialize_message(_ros_image(rgb_image(48, 64), "rgb8"))
    slot = np.full((224, 224, 3), 7, np.uint8)
    for bad in (b"", b"\x00\x01", data[:30], data[:-1], b"\x01\x02\x00\x00" + data[4:], data[:20] + b"\xff" * 8):
        with pytest.raises(InputError, match="malformed serialized sensor_msgs/Image"):
            SlotWriter(slot).write_cdr(bad)
    assert (slot == 7).all()
    SlotWriter(slot).write_cdr(data[:2] + b"\x00\x00" + data[4:])  # options bytes are ignored


def test_cdr_big_endian():
    """A big-endian CDR Image (encapsulation 00 00) reads the same as little-endian."""
    pytest.importorskip("rclpy")
    import struct
    from rclpy.serialization import serialize_message
    img = rgb_image(24, 32)
    le = serialize_message(_ros_image(img, "rgb8", stamp=(1, 2), frame_id="ab"))
    # re-encode field by field: stamp, frame_id, height, width, encoding, is_bigendian, step, data
    be = bytearray(b"\x00\x00\x00\x00") + struct.pack(">iII", 1, 2, 3) + b"ab\x00" + b"\x00"
    be += struct.pack(">III", 24, 32, 5) + b"rgb8\x00" + b"\x00" + b"\x00\x00"
    be += struct.pack(">II", 96, 24 * 96) + img.tobytes()
    a, b = np.zeros((224, 224, 3), np.uint8), np.zeros((224, 224, 3), np.uint8)
    assert SlotWriter(a).write_cdr(le) == SlotWriter(b).write_cdr(bytes(be)) == 10**9 + 2
    assert np.array_equal(a, b) and np.array_equal(a, expected(img))


def test_tiny_frames_are_refused_below_min_side():
    """A 7x5 frame was upscaled into the slot silently when no expected size was configured (issue 15)."""
    from flash_rt.errors import InputError
    from flash_rt_ros.conversions import SlotWriter

    slot = np.full((224, 224, 3), 17, np.uint8)
    w = SlotWriter(slot, "linear", None, min_side=32)
    tiny = np.zeros((5, 7, 3), np.uint8)
    with pytest.raises(InputError, match=r"image size 7x5 .* min_image_side=32 px"):
        w.write_array(tiny, "rgb8")
    assert (slot == 17).all(), "a refused frame must leave the slot untouched"
    w.write_array(np.zeros((32, 40, 3), np.uint8), "rgb8")            # at the minimum: accepted
    assert SlotWriter(slot, "linear", None).write_array(tiny, "rgb8") is slot   # min_side 1: the old behaviour
