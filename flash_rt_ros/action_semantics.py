"""What each action dimension means, and the JointTrajectory a controller gets from a chunk of them.

Why: a policy's action vector is not always a vector of joint positions. Pi0.5 DROID emits 7 joint *velocities* and
a gripper position; openpi's ALOHA policies emit absolute joint positions (after openpi adds the state back to the
delta-trained dims); other policies emit deltas to the observed state. Publishing every column as a position would
tell a JointTrajectoryController to drive a velocity policy's joints to ~0 rad. So every action dimension gets a
kind (parameter `action_semantics`, parallel to `action_joint_names`):

  position  absolute joint position of the named joint (rad / m)
  delta     added to the observed position of the named joint: the state the chunk was computed from
  velocity  joint velocity (rad/s); positions are integrated from the observed position, zero-order hold per row:
            q[0] = q_obs, q[k+1] = q[k] + v[k] * dt (the velocity a DROID-style controller holds for one period)
  command   a non-joint command (e.g. a gripper width), passed through verbatim. With command_in_trajectory it is
            the trajectory position of its named joint (e.g. a gripper joint in the same controller); without it
            it stays on ~/action_chunk only (for a separate gripper action/controller)

The trajectory holds positions AND velocities for every joint: velocities are the commanded ones for `velocity`
dims and the forward differences (q[k+1] - q[k]) / dt for the others, 0 at the last point (the trajectory ends
at rest if no new chunk arrives). ~/action_chunk keeps the model's actions untouched, in model order.

Pure numpy, no ROS: unit-tested in test/unit/test_ros_action_semantics.py. `TrajectoryBuilder.build` allocates
nothing (every buffer is made at configure; the hot path is ufuncs with out= and where=).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KINDS = ("position", "delta", "velocity", "command")
DOC = "docs/ros.md 'Action semantics'"


class SemanticsError(ValueError):
    """Action semantics parameters that cannot describe this model's actions."""


@dataclass(frozen=True)
class ActionSpace:
    """The resolved mapping: action dim -> kind, joint, state index; and which dims form the trajectory."""
    kinds: tuple[str, ...]
    joints: tuple[str, ...]
    state_index: tuple[int, ...]     # per action dim: index of its joint in the state vector, -1 if not there
    traj_dims: tuple[int, ...]       # action dims in the trajectory, model order

    @property
    def traj_joint_names(self) -> tuple[str, ...]:
        return tuple(self.joints[i] for i in self.traj_dims)

    @property
    def traj_state_index(self) -> tuple[int, ...]:
        return tuple(self.state_index[i] for i in self.traj_dims)

    def describe(self) -> str:
        groups: dict[str, list[str]] = {}
        for k, j in zip(self.kinds, self.joints):
            groups.setdefault(k, []).append(j)
        return ", ".join(f"{len(v)} {k} ({', '.join(v)})" for k, v in groups.items())


def resolve(kinds, joint_names, state_joint_names, action_dim: int, command_in_trajectory: bool = True,
            engine_delta_mask=None) -> ActionSpace:
    """Validate the parameters against the model; raise SemanticsError saying what is wrong and what is expected.

    engine_delta_mask: the engine's per-dim mask (Policy.action_delta_mask) when it adds the state itself; a dim
    the engine already made absolute must not be `delta` here too (the state would be added twice).
    """
    kinds, joints, state = tuple(str(k) for k in kinds), tuple(str(j) for j in joint_names), list(state_joint_names)
    if not kinds:
        raise SemanticsError(
            f"parameter 'action_semantics' is required: the model returns {action_dim} action dims and the "
            f"checkpoint does not say what they mean. Give one of {'|'.join(KINDS)} per dim, parallel to "
            f"action_joint_names (e.g. a DROID policy: 7 x velocity + command); see {DOC}")
    if len(kinds) != action_dim:
        raise SemanticsError(f"parameter 'action_semantics' has {len(kinds)} entries but the model returns "
                             f"{action_dim} action dims (one of {'|'.join(KINDS)} per dim)")
    bad = [(i, k) for i, k in enumerate(kinds) if k not in KINDS]
    if bad:
        raise SemanticsError(f"parameter 'action_semantics': {', '.join(f'dim {i} is {k!r}' for i, k in bad)}; "
                             f"expected one of {KINDS}")
    if len(joints) != action_dim:
        raise SemanticsError(f"parameter 'action_joint_names' has {len(joints)} names but the model returns "
                             f"{action_dim} action dims; with action_semantics every dim needs the joint it maps to")
    if len(set(joints)) != len(joints):
        raise SemanticsError(f"parameter 'action_joint_names' has duplicates: {list(joints)}")
    sidx = tuple(state.index(j) if j in state else -1 for j in joints)
    need = [(i, joints[i], kinds[i]) for i in range(action_dim) if kinds[i] in ("delta", "velocity") and sidx[i] < 0]
    if need:
        raise SemanticsError("action dims " + ", ".join(f"{i} ({k} of {j!r})" for i, j, k in need)
                             + " need the observed position of their joint, but it is not in state_joint_names "
                             f"{state}")
    if engine_delta_mask is not None:
        mask = tuple(bool(m) for m in engine_delta_mask)
        twice = [i for i in range(min(len(mask), action_dim)) if mask[i] and kinds[i] == "delta"]
        if twice:
            raise SemanticsError(f"action dims {twice} are 'delta' but the engine's action_delta_mask already adds "
                                 "the state to them (its output is absolute): declare them 'position'")
        wrong = [i for i in range(min(len(mask), action_dim)) if mask[i] and kinds[i] in ("velocity", "command")]
        if wrong:
            raise SemanticsError(f"action dims {wrong} are {[kinds[i] for i in wrong]} but action_delta_mask adds "
                                 "the joint state to them: a delta mask only makes sense for joint positions")
    traj = tuple(i for i in range(action_dim) if kinds[i] != "command" or command_in_trajectory)
    if not traj:
        raise SemanticsError("no action dim maps to a joint trajectory (all are commands and "
                             "command_in_trajectory is false): set publish_trajectory false instead")
    return ActionSpace(kinds, joints, sidx, traj)


class TrajectoryBuilder:
    """[horizon, action_dim] model actions + the observed state -> trajectory positions and velocities
    [horizon, n_traj_joints] float64, into buffers made once here."""

    def __init__(self, space: ActionSpace, horizon: int, dt: float):
        self.space, self.horizon, self.dt = space, int(horizon), float(dt)
        j = len(space.traj_dims)
        self._cols = np.asarray(space.traj_dims, np.intp)
        sidx = np.asarray(space.traj_state_index, np.intp)
        self._has_state = sidx >= 0
        self._sidx = np.where(self._has_state, sidx, 0)
        kinds = [space.kinds[i] for i in space.traj_dims]
        self._is_delta = np.asarray([k == "delta" for k in kinds])
        self._is_vel = np.asarray([k == "velocity" for k in kinds])
        self._any_delta, self._any_vel = bool(self._is_delta.any()), bool(self._is_vel.any())
        # numpy (2.x) buffers a whole operand when a ufunc broadcasts a row over the chunk, so the per-row vectors
        # are kept as full [horizon, j] tiles instead (the state is copied into its tile each chunk: no buffer)
        self._delta_f = np.tile(self._is_delta.astype(np.float64), (self.horizon, 1))
        self._all_cols = space.traj_dims == tuple(range(len(space.kinds)))
        self._S = np.zeros((self.horizon, j), np.float64)
        self._SD = np.zeros((self.horizon, j), np.float64)
        self.positions = np.zeros((self.horizon, j), np.float64)
        self.velocities = np.zeros((self.horizon, j), np.float64)
        self.observed = np.zeros(j, np.float64)      # observed position per trajectory joint (0 if not in state)
        self._a32 = np.zeros((self.horizon, j), np.float32)
        self._a = np.zeros((self.horizon, j), np.float64)
        self._tmp = np.zeros((self.horizon, j), np.float64)
        self._s32 = np.zeros(j, np.float32)

    def observe(self, state: np.ndarray) -> np.ndarray:
        """Copy the observed positions of the trajectory joints out of the state vector (float32, state order)."""
        state.take(self._sidx, out=self._s32, mode="clip")   # the method: np.take's wrapper grows the heap
        np.copyto(self.observed, self._s32)
        return self.observed

    def build(self, actions: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fill and return (positions, velocities); `state` is the state vector the chunk was computed from."""
        pos, vel, a, tmp = self.positions, self.velocities, self._a, self._tmp
        if self._all_cols:
            np.copyto(a, actions)
        else:
            actions.take(self._cols, axis=1, out=self._a32, mode="clip")
            np.copyto(a, self._a32)
        s = self.observe(state)
        np.copyto(pos, a)
        np.copyto(self._S, s)
        if self._any_delta:
            np.multiply(self._S, self._delta_f, out=self._SD)
            np.add(pos, self._SD, out=pos)
        if self._any_vel:   # q[0] = q_obs, q[k+1] = q[k] + v[k] dt
            np.add.accumulate(a[:-1], axis=0, out=tmp[1:])
            tmp[0] = 0.0
            np.multiply(tmp, self.dt, out=tmp)
            np.add(tmp, self._S, out=tmp)
            np.copyto(pos, tmp, where=self._is_vel)
        self.differentiate()
        if self._any_vel:
            np.copyto(vel, a, where=self._is_vel)
        return pos, vel

    def differentiate(self) -> np.ndarray:
        """velocities = forward differences of positions, 0 at the last point (also after a safety clamp)."""
        vel = self.velocities
        np.subtract(self.positions[1:], self.positions[:-1], out=vel[:-1])
        np.multiply(vel[:-1], 1.0 / self.dt, out=vel[:-1])
        vel[-1] = 0.0
        return vel

    def hold(self) -> tuple[np.ndarray, np.ndarray]:
        """A trajectory that stays at the observed positions (call observe() first), at rest."""
        self.positions[...] = self.observed
        self.velocities[...] = 0.0
        return self.positions, self.velocities
