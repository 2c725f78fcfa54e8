"""sensor_msgs Image / CompressedImage -> a preallocated 224x224x3 uint8 RGB model slot, without cv_bridge.

Pure functions plus one small class that owns per-camera scratch buffers; nothing here needs a running ROS graph
(messages are duck-typed: anything with the sensor_msgs field names works), so it is unit-tested on its own.

Cost on a 2-core x86 VM, 640x480 in, linear interpolation (docs/benchmarks.md, "ROS node (CPU)"):
rgb8 ~0.12 ms (np view -> cv2.resize straight into the slot), bgr8 same + an in-place 224x224 BGR->RGB swap
(resize is per channel, so swapping after the resize is exact), mono8/bgra8/rgba8 one cvtColor into a scratch
buffer first. Every message is validated before the slot is touched; a bad one raises flash_rt.errors.InputError
with a message that names the field, what it was and what was expected, and leaves the slot as it was.
"""
from __future__ import annotations

import struct

import cv2
import numpy as np

from flash_rt.errors import InputError
from flash_rt.io.images import padded_geometry, resize_with_pad

# encoding -> (channels, cv2 code to RGB applied BEFORE the resize, swap BGR->RGB AFTER the resize)
_ENCODINGS = {
    "rgb8": (3, None, False),
    "bgr8": (3, None, True),
    "mono8": (1, cv2.COLOR_GRAY2RGB, False),
    "8uc1": (1, cv2.COLOR_GRAY2RGB, False),
    "bgra8": (4, cv2.COLOR_BGRA2RGB, False),
    "rgba8": (4, cv2.COLOR_RGBA2RGB, False),
}
SUPPORTED_ENCODINGS = ("rgb8", "bgr8", "mono8", "bgra8", "rgba8")
INTERPOLATIONS = ("linear", "area")
MAX_SIDE = 8192


def image_view(msg) -> tuple[np.ndarray, str]:
    """Validate a sensor_msgs/Image and return a zero-copy (H, W[, C]) uint8 view of its data + the encoding.

    Padded rows (step > width * channels) give a strided view; nothing is copied.
    """
    return _checked_view(str(msg.encoding), int(msg.height), int(msg.width), int(msg.step), msg.data, 0,
                         len(msg.data))


def _checked_view(encoding: str, h: int, w: int, step: int, buf, offset: int, n: int) -> tuple[np.ndarray, str]:
    """The checks every Image goes through (message object or raw CDR), then the strided view of n bytes of
    `buf` at `offset`."""
    enc = encoding.lower()
    if enc not in _ENCODINGS:
        raise InputError(f"unsupported image encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    ch = _ENCODINGS[enc][0]
    if h <= 0 or w <= 0 or h > MAX_SIDE or w > MAX_SIDE:
        raise InputError(f"image size {w}x{h} (width x height) is invalid; expected 1..{MAX_SIDE} pixels a side")
    row = w * ch
    if step < row:
        raise InputError(f"image step {step} is smaller than width*channels = {w}*{ch} = {row} for {enc}")
    need = step * h
    if n < need:
        raise InputError(f"image data is truncated: {n} bytes, expected step*height = {step}*{h} = {need} "
                         f"for a {w}x{h} {enc} image")
    if ch == 1:
        return np.ndarray((h, w), np.uint8, buffer=buf, offset=offset, strides=(step, 1)), enc
    return np.ndarray((h, w, ch), np.uint8, buffer=buf, offset=offset, strides=(step, ch, 1)), enc


# CDR encapsulation (first 2 bytes) -> byte order. Plain CDR and plain CDR2 lay sensor_msgs/Image out the same way
# (it has no 8-byte fields, so the different max alignment never applies).
_CDR_ORDER = {b"\x00\x00": ">", b"\x00\x01": "<", b"\x00\x06": ">", b"\x00\x07": "<"}
_CDR_U32 = {o: struct.Struct(o + "I") for o in "<>"}
_CDR_STAMP = {o: struct.Struct(o + "iI") for o in "<>"}


def _cdr_malformed(n: int, why: str) -> InputError:
    return InputError(f"malformed serialized sensor_msgs/Image ({n} bytes): {why}")


class _CdrReader:
    """Bounds-checked reads over one serialized message (offsets relative to the CDR payload, as aligned)."""

    __slots__ = ("buf", "n", "pos", "u32")

    def __init__(self, buf, order: str, pos: int):
        self.buf, self.n, self.pos, self.u32 = buf, len(buf), pos, _CDR_U32[order]

    def uint32(self, what: str) -> int:
        self.pos += -(self.pos - 4) % 4
        if self.pos + 4 > self.n:
            raise _cdr_malformed(self.n, f"ends before {what}")
        v = self.u32.unpack_from(self.buf, self.pos)[0]
        self.pos += 4
        return v

    def skip(self, k: int, what: str) -> int:
        """Advance over k bytes; returns where they start."""
        start = self.pos
        if k > self.n - start:
            raise _cdr_malformed(self.n, f"{what} needs {k} bytes, {self.n - start} left")
        self.pos = start + k
        return start


def image_view_cdr(buf) -> tuple[np.ndarray, str, int]:
    """Validate a serialized (CDR) sensor_msgs/Image, as a raw subscription delivers it, and return a zero-copy
    view of its pixels, the encoding and the header stamp in ns.

    Why: rclpy's per-message deserialization copies the 921 KB of a 640x480 rgb8 frame three times (C struct, a
    bytes object, array.frombytes); a raw take copies it twice. Measured in a subscriber process on the 2-core VM,
    3 x 640x480 at 30 Hz: 0.71 ms CPU a frame with messages vs 0.53 ms raw (docs/benchmarks.md). The image checks
    and their error messages are the same as image_view's; a message that is not valid CDR (too short, a length
    past the end) raises InputError "malformed serialized sensor_msgs/Image".
    """
    n = len(buf)
    order = _CDR_ORDER.get(bytes(buf[:2])) if n >= 4 else None
    if order is None:
        raise _cdr_malformed(n, f"unsupported CDR encapsulation {bytes(buf[:4]).hex()!r}")
    r = _CdrReader(buf, order, 4)
    r.skip(8, "header.stamp")
    sec, nsec = _CDR_STAMP[order].unpack_from(buf, 4)
    r.skip(r.uint32("header.frame_id"), "header.frame_id")
    h = r.uint32("height")
    w = r.uint32("width")
    elen = r.uint32("encoding")
    e0 = r.skip(elen, "encoding")
    encoding = bytes(buf[e0:e0 + max(elen - 1, 0)]).decode("utf-8", "replace")
    r.skip(1, "is_bigendian")
    step = r.uint32("step")
    size = r.uint32("data")
    d0 = r.skip(size, "data")
    view, enc = _checked_view(encoding, h, w, step, buf, d0, size)
    return view, enc, sec * 1_000_000_000 + nsec


def check_size(width: int, height: int, expected: tuple[int, int] | None) -> None:
    """Raise InputError if an expected (width, height) is configured and the image differs."""
    if expected is not None and (width, height) != tuple(expected):
        raise InputError(f"image size {width}x{height} does not match the configured "
                         f"{expected[0]}x{expected[1]} (width x height) for this camera")


def check_min_side(width: int, height: int, min_side: int) -> None:
    """Raise InputError for a frame too small to carry a camera image. Why: with expected_image_width/height 0
    any size is accepted, and a 7x5 frame (a misconfigured driver, a thumbnail topic) would be upscaled into the
    model's 224x224 slot silently, at full rate; the policy then acts on a blur."""
    if width < min_side or height < min_side:
        raise InputError(f"image size {width}x{height} (width x height) is too small to be a camera frame: the node "
                         f"refuses frames with a side under min_image_side={min_side} px")


class SlotWriter:
    """Writes one camera's messages into its model slot (a 224x224x3 uint8 view owned by the policy).

    Holds the scratch buffers that mono8/bgra8/rgba8 need (allocated on the first frame of a given size, then
    reused), so a steady camera stream allocates nothing but small numpy view headers.

    The pad (the black bars of the aspect-preserving resize) depends only on the camera's size, so it is zeroed
    by the first frame of a size (through resize_with_pad) and later frames of that size only resize into the
    cached content window; a frame of another size goes through resize_with_pad again. This assumes the writer
    is the slot's only writer (the node's slots are); call reset() after writing the slot some other way.
    """

    def __init__(self, slot: np.ndarray, interpolation: str = "linear",
                 expected_size: tuple[int, int] | None = None, min_side: int = 1):
        if interpolation not in INTERPOLATIONS:
            raise InputError(f"image interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}")
        if slot.ndim != 3 or slot.shape[2] != 3 or slot.shape[0] != slot.shape[1] or slot.dtype != np.uint8:
            raise InputError(f"slot must be an SxSx3 uint8 array; got {slot.shape} {slot.dtype}")
        self.slot = slot
        self.size = slot.shape[0]
        self.interpolation = interpolation
        self._cv_interp = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_AREA
        self.expected_size = tuple(expected_size) if expected_size else None
        self.min_side = int(min_side)
        self._scratch: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the cached pad geometry: the next frame zeroes the pad again."""
        self._geom: tuple[int, int] | None = None   # (h, w) of the source whose pad is in the slot
        self._window: np.ndarray | None = None
        self._dsize = (0, 0)

    def _scratch_for(self, h: int, w: int) -> np.ndarray:
        s = self._scratch
        if s is None or s.shape[0] != h or s.shape[1] != w:
            s = self._scratch = np.empty((h, w, 3), np.uint8)
        return s

    def _resize_into_slot(self, src: np.ndarray) -> np.ndarray:
        """Resize an HxWx3 uint8 image into the slot exactly as resize_with_pad does; returns the written window."""
        h, w = src.shape[0], src.shape[1]
        if (h, w) == self._geom:
            win = self._window
            res = cv2.resize(src, self._dsize, dst=win, interpolation=self._cv_interp)
            if res is not win:  # cv2 could not write in place (never seen with a uint8 window; kept exact anyway)
                win[...] = res
            return win
        resize_with_pad(src, size=self.size, out=self.slot, interpolation=self.interpolation)  # zeroes the pad
        self.reset()
        if h != self.size or w != self.size:  # a size x size image is copied whole; nothing to cache
            rh, rw, top, left = padded_geometry(h, w, self.size)
            self._geom, self._dsize = (h, w), (rw, rh)
            self._window = self.slot[top:top + rh, left:left + rw]
            return self._window
        return self.slot

    def write_array(self, view: np.ndarray, enc: str) -> np.ndarray:
        """Write a validated (H, W[, C]) view with encoding `enc` into the slot."""
        check_size(view.shape[1], view.shape[0], self.expected_size)
        check_min_side(view.shape[1], view.shape[0], self.min_side)
        _, code, swap = _ENCODINGS[enc]
        src = view
        if code is not None:
            src = cv2.cvtColor(view, code, dst=self._scratch_for(view.shape[0], view.shape[1]))
        win = self._resize_into_slot(src)
        if swap:  # the pad is black either way: swapping the content window is enough
            res = cv2.cvtColor(win, cv2.COLOR_BGR2RGB, dst=win)
            if res is not win:
                win[...] = res
        return self.slot

    def write_cdr(self, buf) -> int:
        """Serialized sensor_msgs/Image (a raw subscription's bytes) -> slot; returns the header stamp in ns.
        Raises InputError (slot untouched) on a bad message."""
        view, enc, stamp_ns = image_view_cdr(buf)
        self.write_array(view, enc)
        return stamp_ns

    def write_image(self, msg) -> np.ndarray:
        """sensor_msgs/Image -> slot. Raises InputError (slot untouched) on a bad message."""
        view, enc = image_view(msg)
        return self.write_array(view, enc)

    def write_compressed(self, msg) -> np.ndarray:
        """sensor_msgs/CompressedImage (jpeg/png/...) -> slot. Raises InputError (slot untouched) on a bad one."""
        n = len(msg.data)
        if n == 0:
            raise InputError(f"compressed image is empty (format {msg.format!r})")
        raw = np.frombuffer(msg.data, np.uint8)
        bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
        if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
            raise InputError(f"could not decode compressed image ({n} bytes, format {msg.format!r}); "
                             "expected a complete JPEG or PNG")
        return self.write_array(bgr, "bgr8")
