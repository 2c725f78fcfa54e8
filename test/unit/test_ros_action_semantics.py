"""flash_rt_ros.action_semantics: per-dimension action meaning -> the JointTrajectory positions/velocities, checked
against hand-computed trajectories for each action space the shipped configs use (DROID velocities + gripper,
absolute bimanual joints, deltas), and the configure-time errors."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from flash_rt_ros.action_semantics import SemanticsError, TrajectoryBuilder, resolve

DT = 0.1


def test_droid_velocities_are_integrated_from_the_observed_state_and_gripper_passes_through():
    joints = [f"j{i}" for i in range(7)] + ["finger"]
    sp = resolve(["velocity"] * 7 + ["command"], joints, joints, 8)
    b = TrajectoryBuilder(sp, 4, DT)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 8)).astype(np.float32)
    state = rng.standard_normal(8).astype(np.float32)
    pos, vel = b.build(a, state)
    a64, s64 = a.astype(np.float64), state.astype(np.float64)
    want = np.vstack([s64[:7], s64[:7] + DT * np.cumsum(a64[:-1, :7], axis=0)])
    np.testing.assert_allclose(pos[:, :7], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(vel[:, :7], a64[:, :7])          # the commanded velocities, every row
    np.testing.assert_array_equal(pos[:, 7], a64[:, 7])            # gripper width verbatim
    np.testing.assert_allclose(vel[:-1, 7], np.diff(a64[:, 7]) / DT)
    assert vel[-1, 7] == 0.0
    assert sp.traj_joint_names == tuple(joints)


def test_absolute_bimanual_positions_are_published_as_is_with_finite_difference_velocities():
    joints = [f"left_{i}" for i in range(6)] + ["left_grip"] + [f"right_{i}" for i in range(6)] + ["right_grip"]
    sp = resolve(["position"] * 14, joints, joints, 14)
    b = TrajectoryBuilder(sp, 5, DT)
    a = np.arange(70, dtype=np.float32).reshape(5, 14) * 0.01
    pos, vel = b.build(a, np.full(14, 100, np.float32))             # the state plays no part
    np.testing.assert_array_equal(pos, a.astype(np.float64))
    np.testing.assert_allclose(vel[:-1], np.diff(a.astype(np.float64), axis=0) / DT)
    np.testing.assert_array_equal(vel[-1], 0.0)


def test_deltas_are_added_to_the_observed_state_and_commands_can_stay_off_the_trajectory():
    state_names = ["a", "b", "c", "grip"]
    sp = resolve(["delta", "delta", "delta", "command"], ["a", "b", "c", "gripper_cmd"], state_names, 4,
                 command_in_trajectory=False)
    assert sp.traj_joint_names == ("a", "b", "c")
    b = TrajectoryBuilder(sp, 3, DT)
    a = np.array([[0.1, 0.2, 0.3, 9], [0.2, 0.4, 0.6, 9], [0.3, 0.6, 0.9, 9]], np.float32)
    state = np.array([1, 2, 3, 0.5], np.float32)
    pos, _ = b.build(a, state)
    np.testing.assert_allclose(pos, a[:, :3].astype(np.float64) + state[:3].astype(np.float64))


def test_build_allocates_nothing():
    joints = [f"j{i}" for i in range(14)]
    b = TrajectoryBuilder(resolve(["velocity"] * 4 + ["delta"] * 2 + ["position"] * 7 + ["command"], joints, joints,
                                  14), 200, DT)
    a, s = np.ones((200, 14), np.float32), np.ones(14, np.float32)
    for _ in range(3):
        b.build(a, s)
    tracemalloc.start()
    b.build(a, s)
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(20):
        b.build(a, s)
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # one [200, 14] float64 buffer is 22 kB: a temporary of the chunk's size would exceed this (numpy's own
    # reductions and views take ~1 kB)
    assert peak - start < 4096 and cur - start < 256, (start, cur, peak)


@pytest.mark.parametrize("kinds,names,state,mask,needle", [
    ([], ["a", "b"], ["a", "b"], None, "'action_semantics' is required"),
    (["position"], ["a", "b"], ["a", "b"], None, "has 1 entries but the model returns 2"),
    (["position", "torque"], ["a", "b"], ["a", "b"], None, "dim 1 is 'torque'"),
    (["position", "position"], ["a"], ["a", "b"], None, "'action_joint_names' has 1 names"),
    (["velocity", "position"], ["x", "b"], ["a", "b"], None, "0 (velocity of 'x') need the observed position"),
    (["delta", "position"], ["a", "b"], ["a", "b"], (True, False), "already adds the state"),
    (["velocity", "position"], ["a", "b"], ["a", "b"], (True, False), "only makes sense for joint positions"),
])
def test_configure_errors_say_what_is_wrong(kinds, names, state, mask, needle):
    with pytest.raises(SemanticsError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve(kinds, names, state, 2, engine_delta_mask=mask)
