"""The safety envelope between the policy and the controller: what a chunk must satisfy before it is published.

Why: a policy is a neural network; a bad checkpoint, a numerically broken kernel or an out-of-distribution scene can
emit NaN, huge values or a target far from where the arm is. The controller would try to execute it. Checks, in
order, on the trajectory (joint space, after action_semantics.py):

1. every model action finite (always a rejection: there is no sane way to clamp a NaN);
2. max_relative_target: the first point within this distance of the observed joint state (lerobot's habit:
   a target never jumps more than this from where the arm is);
3. position limits [lower, upper] per joint (parameters or the robot's URDF);
4. velocity limit per joint: |q[k+1] - q[k]| <= v_max * dt and |velocity| <= v_max.

With mode "clamp" a violation of 2-4 is corrected (first point pulled toward the state, positions clipped, steps
limited row by row from the first point, velocities recomputed) and the chunk is published; with "reject" it is
not. Either way the caller gets a reason for /diagnostics. Pure numpy, preallocated: `check` allocates nothing
when the chunk is within the envelope (the common case); building a reason string happens only on a violation.
Unit-tested in test/unit/test_ros_safety.py.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

MODES = ("clamp", "reject")
ON_REJECT = ("skip", "hold")
OK, CLAMPED, REJECTED = 0, 1, 2


class LimitsError(ValueError):
    """Limit parameters or a URDF that cannot be used."""


def urdf_limits(xml_text: str) -> dict[str, tuple[float, float, float]]:
    """{joint: (lower, upper, velocity)} from a URDF's `<joint><limit lower upper velocity/>`; nan where absent.

    A continuous joint has no position limits (lower/upper nan) even if its <limit> carries zeros; fixed joints
    are skipped. Raises LimitsError when the text is not XML."""
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as e:
        raise LimitsError(f"robot_description is not valid XML (URDF): {e}") from None
    out = {}
    for j in root.iter("joint"):
        name, jtype = j.get("name"), j.get("type", "")
        lim = j.find("limit")
        if not name or lim is None or jtype == "fixed":
            continue

        def num(attr):
            v = lim.get(attr)
            try:
                return float(v) if v is not None else math.nan
            except ValueError:
                raise LimitsError(f"URDF joint {name!r}: <limit {attr}={v!r}> is not a number") from None

        lo, hi, vel = num("lower"), num("upper"), num("velocity")
        if jtype == "continuous":
            lo = hi = math.nan
        out[name] = (lo, hi, vel)
    return out


def limits_from_params(names, joint_names, lower, upper, velocity) -> dict[str, tuple[float, float, float]]:
    """Parallel parameter arrays -> {joint: (lower, upper, velocity)}; empty lower/upper/velocity = none given."""
    names = list(names)
    for label, arr in (("joint_limits_lower", lower), ("joint_limits_upper", upper),
                       ("joint_limits_velocity", velocity)):
        if arr and len(arr) != len(names):
            raise LimitsError(f"parameter {label!r} has {len(arr)} values for {len(names)} joint_limits_names")
    out = {}
    for i, n in enumerate(names):
        lo = float(lower[i]) if lower else math.nan
        hi = float(upper[i]) if upper else math.nan
        v = float(velocity[i]) if velocity else math.nan
        if v <= 0:
            v = math.nan      # 0 = no velocity limit for this joint
        if not math.isnan(lo) and not math.isnan(hi) and lo > hi:
            raise LimitsError(f"joint {n!r}: lower limit {lo} > upper limit {hi}")
        out[n] = (lo, hi, v)
    return out


class SafetyEnvelope:
    """Limits for the trajectory joints, and the check applied to every chunk."""

    def __init__(self, joint_names, horizon: int, dt: float, mode: str = "clamp",
                 max_relative_target=(), has_state=None):
        if mode not in MODES:
            raise LimitsError(f"safety_mode must be one of {MODES}; got {mode!r}")
        self.names = [str(n) for n in joint_names]
        j = len(self.names)
        self.horizon, self.dt, self.mode = int(horizon), float(dt), mode
        self.lower = np.full(j, -np.inf)
        self.upper = np.full(j, np.inf)
        self.vmax = np.full(j, np.inf)
        self.source = {n: "" for n in self.names}          # where each joint's limits came from
        mrt = [float(x) for x in max_relative_target]
        if len(mrt) not in (0, 1, j):
            raise LimitsError(f"max_relative_target has {len(mrt)} values; give one (all joints) or one per "
                              f"trajectory joint ({j}: {self.names})")
        if any(not (m > 0) for m in mrt):
            raise LimitsError(f"max_relative_target values must be > 0; got {mrt}")
        self.max_rel = np.full(j, np.inf) if not mrt else np.broadcast_to(np.asarray(mrt, np.float64), (j,)).copy()
        self.has_state = np.ones(j, bool) if has_state is None else np.asarray(has_state, bool)
        if mrt and not self.has_state.all():
            missing = [n for n, h in zip(self.names, self.has_state) if not h]
            # joints without an observed position cannot be held to a distance from it
            self.max_rel[~self.has_state] = np.inf
            self.unchecked_relative = missing
        else:
            self.unchecked_relative = []
        self._step = np.zeros(j)
        self._lo = np.zeros(j)
        self._hi = np.zeros(j)
        self._d = np.zeros((max(self.horizon - 1, 0), j))
        self._fin = np.zeros((self.horizon, j), bool)
        self._v = np.zeros((self.horizon, j))
        # numpy (2.x) buffers a whole operand when a ufunc broadcasts a row over the chunk: the limits are also kept
        # as full [horizon, j] tiles for the per-chunk comparisons (updated with the limits, not per chunk)
        self._L = np.zeros((self.horizon, j))
        self._U = np.zeros((self.horizon, j))
        self._VT = np.zeros((self.horizon, j))
        self._NVT = np.zeros((self.horizon, j))
        self._ST = np.zeros((max(self.horizon - 1, 0), j))
        self._jb = np.zeros(j, bool)
        self._afin = np.zeros((0, 0), bool)
        self._step_tol = np.zeros(j)
        self._vmax_tol = np.zeros(j)
        self.reason = ""
        self.key: tuple = ()        # which checks fired (no values): what a log rate limit compares
        self._update_step()

    def set_limits(self, limits: dict[str, tuple[float, float, float]], source: str, keep=()) -> list:
        """Apply {joint: (lower, upper, velocity)} (nan = keep as is), except to joints whose limits came from a
        source in `keep` (the node passes keep=("parameters",) for a URDF: parameters win, a newer URDF replaces
        an older one). Returns the trajectory joints it set."""
        hit = []
        for i, n in enumerate(self.names):
            if n not in limits:
                continue
            if self.source[n] in keep:
                continue
            lo, hi, v = limits[n]
            if not math.isnan(lo):
                self.lower[i] = lo
            if not math.isnan(hi):
                self.upper[i] = hi
            if not math.isnan(v):
                self.vmax[i] = v
            self.source[n] = source
            hit.append(n)
        self._update_step()
        return hit

    def _update_step(self) -> None:
        np.multiply(self.vmax, self.dt, out=self._step)
        np.multiply(self._step, 1 + 1e-9, out=self._step_tol)   # float rounding of an exactly-at-limit step
        np.multiply(self.vmax, 1 + 1e-9, out=self._vmax_tol)
        if hasattr(self, "_L"):
            np.copyto(self._L, self.lower)
            np.copyto(self._U, self.upper)
            np.copyto(self._VT, self._vmax_tol)
            np.copyto(self._NVT, -self.vmax)
            np.copyto(self._ST, self._step_tol)

    @property
    def limited(self) -> bool:
        return bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any() or np.isfinite(self.vmax).any()
                    or np.isfinite(self.max_rel).any())

    # -- per chunk ---------------------------------------------------------------------------------------------
    def check_actions(self, actions: np.ndarray) -> int:
        """Reject a chunk with any non-finite model action (before anything is built from it)."""
        if self._afin.shape != actions.shape:   # once (configure's first chunk), then reused
            self._afin = np.zeros(actions.shape, bool)
        if np.isfinite(actions, out=self._afin).all():
            return OK
        bad = ~np.isfinite(actions)
        rows, cols = np.nonzero(bad)
        self.key = ("non-finite",)
        self.reason = (f"non-finite action from the policy: {int(bad.sum())} value(s), dims "
                       f"{sorted(set(cols.tolist()))}, first at row {int(rows[0])} "
                       f"({float(actions[rows[0], cols[0]])})")
        return REJECTED

    def check(self, pos: np.ndarray, vel: np.ndarray, observed: np.ndarray, builder=None) -> int:
        """Check (and with mode clamp, correct in place) one trajectory. `observed` is the state the chunk was
        computed from, per trajectory joint. builder: its differentiate() recomputes the velocities after a
        clamp (else they are recomputed here the same way)."""
        fin = self._fin
        np.isfinite(pos, out=fin)
        if not fin.all():
            self.reason = "trajectory positions overflow to non-finite values (huge actions)"
            self.key = ("overflow",)
            return REJECTED
        reasons, kinds = [], []
        # 2. first point vs the observed state
        np.subtract(pos[0], observed, out=self._lo)
        np.abs(self._lo, out=self._lo)
        if np.greater(self._lo, self.max_rel, out=self._jb).any():
            i = int(np.argmax(self._lo - self.max_rel))
            kinds.append("max_relative_target")
            reasons.append(f"first point of {self.names[i]!r} is {self._lo[i]:.4g} from the observed position "
                           f"(max_relative_target {self.max_rel[i]:.4g})")
            if self.mode == "reject":
                return self._reject(reasons, kinds)
            np.subtract(observed, self.max_rel, out=self._lo)
            np.add(observed, self.max_rel, out=self._hi)
            np.clip(pos[0], self._lo, self._hi, out=pos[0])
        # 3. position limits
        np.less(pos, self._L, out=fin)
        below = bool(fin.any())
        np.greater(pos, self._U, out=fin)
        if below or fin.any():
            over = np.maximum(self.lower - pos, pos - self.upper).max(axis=0)
            i = int(np.argmax(over))
            lo_v, hi_v = float(pos[:, i].min()), float(pos[:, i].max())
            kinds.append("position_limits")
            reasons.append(f"{self.names[i]!r} leaves its position limits [{self.lower[i]:.4g}, {self.upper[i]:.4g}]"
                           f" (chunk spans [{lo_v:.4g}, {hi_v:.4g}])")
            if self.mode == "reject":
                return self._reject(reasons, kinds)
            np.clip(pos, self._L, self._U, out=pos)
        # 4. velocity: steps between points and the velocities themselves
        d = self._d
        if d.shape[0]:
            np.subtract(pos[1:], pos[:-1], out=d)
            np.abs(d, out=d)
        step_bad = bool(d.shape[0]) and bool(np.greater(d, self._ST, out=fin[:-1]).any())
        np.abs(vel, out=self._v)
        vel_bad = bool(np.greater(self._v, self._VT, out=fin).any())
        if step_bad or vel_bad:
            kinds.append("velocity_limits")
            if step_bad:
                i = int(np.argmax((d / self._step).max(axis=0)))
                reasons.append(f"{self.names[i]!r} moves {float(d[:, i].max()):.4g} in one dt={self.dt:g} s "
                               f"(velocity limit {self.vmax[i]:.4g} -> {self._step[i]:.4g} a step)")
            else:
                i = int(np.argmax((self._v / self.vmax).max(axis=0)))
                reasons.append(f"{self.names[i]!r} velocity {float(self._v[:, i].max()):.4g} exceeds its limit "
                               f"{self.vmax[i]:.4g}")
            if self.mode == "reject":
                return self._reject(reasons, kinds)
            for k in range(1, pos.shape[0]):   # limit each step from the (already limited) previous point
                np.subtract(pos[k - 1], self._step, out=self._lo)
                np.add(pos[k - 1], self._step, out=self._hi)
                np.clip(pos[k], self._lo, self._hi, out=pos[k])
        if not reasons:
            return OK
        if builder is not None:
            builder.differentiate()
        else:
            np.subtract(pos[1:], pos[:-1], out=vel[:-1])
            vel[:-1] /= self.dt
            vel[-1] = 0.0
        np.clip(vel, self._NVT, self._VT, out=vel)
        self.reason = "clamped: " + "; ".join(reasons)
        self.key = ("clamped", *kinds)
        return CLAMPED

    def _reject(self, reasons, kinds) -> int:
        self.reason = "rejected: " + "; ".join(reasons)
        self.key = ("rejected", *kinds)
        return REJECTED
