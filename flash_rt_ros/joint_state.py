"""sensor_msgs/JointState -> a preallocated float32 state vector, ordered by the configured joint names.

Never by message order: drivers publish joints in any order and often more joints than the policy uses. A message
is validated completely (all configured names present, as many positions as names, every value finite) before the
output is written, so a bad message leaves the last good state in place and raises flash_rt.errors.InputError.
"""
from __future__ import annotations

import numpy as np

from flash_rt.errors import InputError


class JointStateMapper:
    def __init__(self, joint_names, out: np.ndarray | None = None):
        names = [str(n) for n in joint_names]
        if not names:
            raise InputError("state_joint_names is empty; list the joints whose positions form the policy state")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"state_joint_names has duplicates: {dup}")
        self.names = names
        self._index = {n: i for i, n in enumerate(names)}
        if out is None:
            out = np.zeros(len(names), np.float32)
        if out.shape != (len(names),) or out.dtype != np.float32:
            raise InputError(f"state buffer must be float32 of shape ({len(names)},); got {out.dtype} {out.shape}")
        self.out = out
        self._scratch = np.empty(len(names), np.float64)
        self._perm = np.empty(len(names), np.intp)  # message index of each configured joint
        self._last_names: list | None = None

    def _update_perm(self, msg_names) -> None:
        found = np.zeros(len(self.names), bool)
        for i, n in enumerate(msg_names):
            j = self._index.get(n)
            if j is not None:
                self._perm[j] = i
                found[j] = True
        if not found.all():
            missing = [self.names[j] for j in np.flatnonzero(~found)]
            self._last_names = None
            raise InputError(f"joint_states is missing joints {missing} (from state_joint_names); "
                             f"message names: {list(msg_names)}")
        self._last_names = list(msg_names)

    def write(self, msg_names, positions) -> np.ndarray:
        """Map (names, positions) into `out`; returns `out`. Raises InputError and leaves `out` as it was."""
        if self._last_names is None or len(msg_names) != len(self._last_names) or msg_names != self._last_names:
            self._update_perm(msg_names)
        if getattr(positions, "typecode", None) == "d":  # rclpy gives array.array('d'): zero-copy view
            pos = np.frombuffer(positions, np.float64)
        else:
            pos = np.asarray(positions, np.float64)
        if pos.shape[0] < len(msg_names):
            raise InputError(f"joint_states has {len(msg_names)} names but {pos.shape[0]} positions")
        np.take(pos, self._perm, out=self._scratch)
        if not np.isfinite(self._scratch).all():
            bad = [self.names[j] for j in np.flatnonzero(~np.isfinite(self._scratch))]
            raise InputError(f"joint_states has NaN/inf positions for {bad}")
        self.out[...] = self._scratch
        return self.out

    def write_msg(self, msg) -> np.ndarray:
        return self.write(msg.name, msg.position)
