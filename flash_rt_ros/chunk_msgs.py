"""ActionChunk + trajectory_msgs/JointTrajectory, kept as preallocated serialized CDR and patched in place per tick.

Why serialized: `publisher.publish(msg)` converts the Python message into C structs and serializes it on every call.
For the trajectory that is one Python object per point; measured on the 2-core VM with horizon 50 x 7 joints:
publish(JointTrajectory) 72 us warm / 135 us p50 cold (after a torch step evicted the caches), publish(ActionChunk)
5 / 57 us. Publishing the bytes (`publish(bytes)` -> rcl_publish_serialized_message) takes 2 / 21-31 us. So both
messages are serialized once here (plain little-endian CDR, the XCDR1 encoding every ROS 2 rmw uses), the offsets of
the fields that change per tick are recorded, and a tick writes the stamp, sequence, inference time and the chunk
(float32 rows, and float64 positions through one strided view, one copy each) into those bytes. check_against_rclpy()
(run at configure) deserializes the bytes with rclpy and compares them with the message built field by field, so a
layout mistake fails at configure, not on the wire. Per tick the only allocation is the `bytes` copy publish_raw needs (1.5 kB + 4.9 kB for 50 x 7,
freed at once), instead of rclpy's per-publish C-struct mallocs for every point.
"""
from __future__ import annotations

import struct

import numpy as np

_STAMP = struct.Struct("<iI")
_U64 = struct.Struct("<Q")
_F32 = struct.Struct("<f")
_ENCAPSULATION = b"\x00\x01\x00\x00"  # plain CDR, little endian


class CdrWriter:
    """Minimal plain-CDR (XCDR1, little endian) writer that remembers where it put things.

    Alignment is relative to the end of the 4-byte encapsulation header, as in Fast CDR / Cyclone.
    """

    def __init__(self):
        self.buf = bytearray(_ENCAPSULATION)

    def align(self, n: int) -> None:
        self.buf += bytes(-(len(self.buf) - 4) % n)

    def prim(self, fmt: str, value) -> int:
        """Write one primitive (struct format char); returns its offset."""
        size = struct.calcsize(fmt)
        self.align(size)
        off = len(self.buf)
        self.buf += struct.pack("<" + fmt, value)
        return off

    def string(self, s: str) -> None:
        raw = s.encode() + b"\0"
        self.prim("I", len(raw))
        self.buf += raw

    def strings(self, items) -> None:
        self.prim("I", len(items))
        for s in items:
            self.string(s)

    def seq(self, fmt: str, values) -> int:
        """Write a sequence of primitives; returns the offset of its first element."""
        self.prim("I", len(values))
        if len(values):
            self.align(struct.calcsize(fmt))
        off = len(self.buf)
        self.buf += struct.pack(f"<{len(values)}{fmt}", *values)
        return off

    def header(self, frame_id: str) -> int:
        """std_msgs/Header with a zero stamp; returns the stamp's offset."""
        off = self.prim("i", 0)
        self.prim("I", 0)
        self.string(frame_id)
        return off


def _split_ns(t_ns: int) -> tuple[int, int]:
    return divmod(int(t_ns), 1_000_000_000)


def _duration(k: int, dt: float) -> tuple[int, int]:
    return _split_ns(int(round(k * dt * 1e9)))


class ChunkMessages:
    """Both outgoing messages as patchable CDR bytes. fill() once per tick, then publish chunk_bytes() /
    trajectory_bytes() with the ordinary publishers (rclpy publishes `bytes` as a serialized message)."""

    def __init__(self, joint_names, horizon: int, action_dim: int, dt: float, frame_id: str = "",
                 traj_joint_names=None, velocities: bool = False):
        """traj_joint_names: the trajectory's joints when they are not the action columns (action_semantics.py);
        velocities: every point also carries velocities (same joints)."""
        names = [str(n) for n in joint_names]
        if len(names) != action_dim:
            raise ValueError(f"{len(names)} action joint names for action_dim={action_dim}")
        self.names, self.frame_id = names, frame_id
        self.traj_names = names if traj_joint_names is None else [str(n) for n in traj_joint_names]
        self.with_velocities = bool(velocities)
        self.horizon, self.action_dim, self.dt = int(horizon), int(action_dim), float(dt)
        self.prompt: str | None = None
        self._build_chunk("")
        self._build_trajectory()

    # -- layout (configure time, and on a prompt change for the chunk) ------------------------------------------
    def _build_chunk(self, prompt: str) -> None:
        """ActionChunk: header, sequence, joint_names, horizon, action_dim, dt, data, inference_time, prompt.
        A prompt change rebuilds it (the prompt is a variable-length string); that is rare and not per tick."""
        w = CdrWriter()
        self._c_stamp = w.header(self.frame_id)
        self._c_seq = w.prim("Q", 0)
        w.strings(self.names)
        w.prim("I", self.horizon)
        w.prim("I", self.action_dim)
        w.prim("f", self.dt)
        data = w.seq("f", [0.0] * (self.horizon * self.action_dim))
        self._c_inf = w.prim("f", 0.0)
        w.string(prompt)
        self._chunk = w.buf
        self._chunk_view = np.ndarray((self.horizon, self.action_dim), np.float32, buffer=self._chunk, offset=data)
        self.prompt = prompt

    def _build_trajectory(self) -> None:
        """JointTrajectory: one point per row with positions (float64), velocities when asked for (else empty),
        empty accelerations and effort, and time_from_start = k * dt. Positions and velocities are each one
        strided (horizon, n_joints) view when the points are evenly spaced (always, after the first, for the CDR
        alignment rules), else one view per row."""
        w = CdrWriter()
        self._t_stamp = w.header(self.frame_id)
        w.strings(self.traj_names)
        w.prim("I", self.horizon)
        nj = len(self.traj_names)
        offs, voffs = [], []
        for k in range(self.horizon):
            offs.append(w.seq("d", [0.0] * nj))
            voffs.append(w.seq("d", [0.0] * nj if self.with_velocities else []))
            for _ in range(2):  # accelerations, effort
                w.seq("d", [])
            sec, nsec = _duration(k, self.dt)
            w.prim("i", sec)
            w.prim("I", nsec)
        self._traj = w.buf
        self._traj_view, self._traj_rows = self._views(offs, nj)
        self._vel_view, self._vel_rows = self._views(voffs, nj) if self.with_velocities else (None, None)

    def _views(self, offs: list, nj: int):
        steps = {b - a for a, b in zip(offs, offs[1:])}
        if len(steps) <= 1 and nj:
            stride = steps.pop() if steps else 8 * nj
            return np.ndarray((self.horizon, nj), np.float64, buffer=self._traj, offset=offs[0] if offs else 0,
                              strides=(stride, 8)), None
        return None, [np.ndarray((nj,), np.float64, buffer=self._traj, offset=o) for o in offs]

    # -- per tick ---------------------------------------------------------------------------------------------
    def fill(self, actions: np.ndarray, stamp_ns: int, sequence: int, inference_s: float, prompt: str,
             trajectory: bool = True, positions: np.ndarray | None = None,
             velocities: np.ndarray | None = None) -> None:
        """Write one [horizon, action_dim] chunk into both messages: a few struct.pack_into + one numpy copy per
        message, nothing allocated (except when the prompt changed: the chunk bytes are rebuilt). The trajectory
        gets `positions` (default: the actions themselves) and `velocities` (when built with velocities)."""
        if prompt is not self.prompt and prompt != self.prompt:
            self._build_chunk(prompt)
        self.prompt = prompt
        sec, nsec = _split_ns(stamp_ns)
        buf = self._chunk
        _STAMP.pack_into(buf, self._c_stamp, sec, nsec)
        _U64.pack_into(buf, self._c_seq, sequence)
        _F32.pack_into(buf, self._c_inf, inference_s)
        self._chunk_view[...] = actions
        if trajectory:
            self.fill_trajectory(stamp_ns, actions if positions is None else positions, velocities)

    def fill_trajectory(self, stamp_ns: int, positions: np.ndarray, velocities: np.ndarray | None = None) -> None:
        """Only the trajectory (a hold, or fill()'s second half)."""
        sec, nsec = _split_ns(stamp_ns)
        _STAMP.pack_into(self._traj, self._t_stamp, sec, nsec)
        for view, rows, src in ((self._traj_view, self._traj_rows, positions),
                                (self._vel_view, self._vel_rows, velocities)):
            if src is None:
                continue
            if view is not None:
                view[...] = src
            elif rows is not None:
                for k, v in enumerate(rows):
                    v[...] = src[k]

    def chunk_bytes(self) -> bytes:
        """The serialized ActionChunk for publisher.publish (rclpy accepts bytes only, so one copy)."""
        return bytes(self._chunk)

    def trajectory_bytes(self) -> bytes:
        return bytes(self._traj)

    def chunk_array(self) -> np.ndarray:
        return self._chunk_view

    # -- checks / debugging (not per tick) --------------------------------------------------------------------
    def messages(self):
        """(ActionChunk, JointTrajectory) deserialized from the current bytes, via rclpy."""
        from rclpy.serialization import deserialize_message
        from trajectory_msgs.msg import JointTrajectory

        from flash_rt_ros.msg import ActionChunk
        return (deserialize_message(bytes(self._chunk), ActionChunk),
                deserialize_message(bytes(self._traj), JointTrajectory))

    def reference_messages(self):
        """The same two messages built field by field as rclpy objects (what publish(msg) would send)."""
        import array

        from builtin_interfaces.msg import Duration
        from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

        from flash_rt_ros.msg import ActionChunk
        chunk_ns = _STAMP.unpack_from(self._chunk, self._c_stamp)
        c = ActionChunk()
        c.header.stamp.sec, c.header.stamp.nanosec = chunk_ns
        c.header.frame_id = self.frame_id
        c.sequence = _U64.unpack_from(self._chunk, self._c_seq)[0]
        c.joint_names = list(self.names)
        c.horizon, c.action_dim = self.horizon, self.action_dim
        c.dt = _F32.unpack(_F32.pack(self.dt))[0]  # float32 on the wire
        c.data = array.array("f", self._chunk_view.tobytes())
        c.inference_time = _F32.unpack_from(self._chunk, self._c_inf)[0]
        c.prompt = self.prompt or ""
        t = JointTrajectory()
        t.header.stamp.sec, t.header.stamp.nanosec = _STAMP.unpack_from(self._traj, self._t_stamp)
        t.header.frame_id = self.frame_id
        t.joint_names = list(self.traj_names)
        rows = self._traj_view if self._traj_view is not None else np.stack(self._traj_rows or [np.zeros(0)])
        vrows = None
        if self.with_velocities:
            vrows = self._vel_view if self._vel_view is not None else np.stack(self._vel_rows or [np.zeros(0)])
        for k in range(self.horizon):
            sec, nsec = _duration(k, self.dt)
            pt = JointTrajectoryPoint(positions=array.array("d", np.asarray(rows[k]).tobytes()),
                                      time_from_start=Duration(sec=sec, nanosec=nsec))
            if vrows is not None:
                pt.velocities = array.array("d", np.asarray(vrows[k]).tobytes())
            t.points.append(pt)
        return c, t

    def check_against_rclpy(self) -> None:
        """Raise ValueError unless rclpy deserializes our bytes into exactly the message built field by field
        (configure time). Filled with a distinct value per element first, so a wrong offset cannot hide behind
        zeros. (Bytes are not compared: rclpy's serialization leaves its alignment padding uninitialized.)"""
        from rclpy.serialization import deserialize_message
        pattern = np.arange(1, self.horizon * self.action_dim + 1, dtype=np.float32).reshape(self.horizon, -1)
        nj = len(self.traj_names)
        tpos = np.arange(1, self.horizon * nj + 1, dtype=np.float64).reshape(self.horizon, nj) + 0.5
        self.fill(pattern, 1_700_000_000_123_456_789, 123456789012, 0.25, self.prompt or "", positions=tpos,
                  velocities=-tpos if self.with_velocities else None)
        c, t = self.reference_messages()
        for name, ours, ref in (("ActionChunk", bytes(self._chunk), c), ("JointTrajectory", bytes(self._traj), t)):
            try:
                ok = deserialize_message(ours, type(ref)) == ref
            except Exception:  # noqa: BLE001 - any failure to parse is the same finding
                ok = False
            if not ok:
                raise ValueError(f"preserialized {name} does not deserialize to the expected message: this rmw "
                                 "does not use plain little-endian CDR")
