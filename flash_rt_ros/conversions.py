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

import cv2
import numpy as np

from flash_rt.errors import InputError
from flash_rt.io.images import resize_with_pad

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
    enc = str(msg.encoding).lower()
    if enc not in _ENCODINGS:
        raise InputError(f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    ch = _ENCODINGS[enc][0]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0 or h > MAX_SIDE or w > MAX_SIDE:
        raise InputError(f"image size {w}x{h} (width x height) is invalid; expected 1..{MAX_SIDE} pixels a side")
    row = w * ch
    if step < row:
        raise InputError(f"image step {step} is smaller than width*channels = {w}*{ch} = {row} for {enc}")
    need = step * h
    n = len(msg.data)
    if n < need:
        raise InputError(f"image data is truncated: {n} bytes, expected step*height = {step}*{h} = {need} "
                         f"for a {w}x{h} {enc} image")
    buf = msg.data
    if ch == 1:
        return np.ndarray((h, w), np.uint8, buffer=buf, strides=(step, 1)), enc
    return np.ndarray((h, w, ch), np.uint8, buffer=buf, strides=(step, ch, 1)), enc


def check_size(width: int, height: int, expected: tuple[int, int] | None) -> None:
    """Raise InputError if an expected (width, height) is configured and the image differs."""
    if expected is not None and (width, height) != tuple(expected):
        raise InputError(f"image size {width}x{height} does not match the configured "
                         f"{expected[0]}x{expected[1]} (width x height) for this camera")


class SlotWriter:
    """Writes one camera's messages into its model slot (a 224x224x3 uint8 view owned by the policy).

    Holds the scratch buffers that mono8/bgra8/rgba8 need (allocated on the first frame of a given size, then
    reused), so a steady camera stream allocates nothing but small numpy view headers.
    """

    def __init__(self, slot: np.ndarray, interpolation: str = "linear",
                 expected_size: tuple[int, int] | None = None):
        if interpolation not in INTERPOLATIONS:
            raise InputError(f"image interpolation must be one of {INTERPOLATIONS}; got {interpolation!r}")
        if slot.ndim != 3 or slot.shape[2] != 3 or slot.shape[0] != slot.shape[1] or slot.dtype != np.uint8:
            raise InputError(f"slot must be an SxSx3 uint8 array; got {slot.shape} {slot.dtype}")
        self.slot = slot
        self.size = slot.shape[0]
        self.interpolation = interpolation
        self.expected_size = tuple(expected_size) if expected_size else None
        self._scratch: np.ndarray | None = None

    def _scratch_for(self, h: int, w: int) -> np.ndarray:
        s = self._scratch
        if s is None or s.shape[0] != h or s.shape[1] != w:
            s = self._scratch = np.empty((h, w, 3), np.uint8)
        return s

    def write_array(self, view: np.ndarray, enc: str) -> np.ndarray:
        """Write a validated (H, W[, C]) view with encoding `enc` into the slot."""
        check_size(view.shape[1], view.shape[0], self.expected_size)
        _, code, swap = _ENCODINGS[enc]
        src = view
        if code is not None:
            src = cv2.cvtColor(view, code, dst=self._scratch_for(view.shape[0], view.shape[1]))
        resize_with_pad(src, size=self.size, out=self.slot, interpolation=self.interpolation)
        if swap:
            cv2.cvtColor(self.slot, cv2.COLOR_BGR2RGB, dst=self.slot)
        return self.slot

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
