"""flash_rt_ros.safety: non-finite, huge and teleporting chunks, position/velocity limits (parameters and URDF),
clamp vs reject; the in-envelope path allocates nothing."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from flash_rt_ros.safety import (CLAMPED, OK, REJECTED, LimitsError, SafetyEnvelope, limits_from_params,
                                 urdf_limits)

URDF = """<robot name="r">
  <link name="base"/><link name="l1"/><link name="l2"/><link name="l3"/>
  <joint name="j1" type="revolute"><parent link="base"/><child link="l1"/>
    <limit lower="-1.5" upper="1.5" velocity="2.0" effort="10"/></joint>
  <joint name="j2" type="continuous"><parent link="l1"/><child link="l2"/><limit velocity="3" effort="1"/></joint>
  <joint name="fixed" type="fixed"><parent link="l2"/><child link="l3"/></joint>
</robot>"""


def env(mode="clamp", mrt=(), h=5, dt=0.1):
    e = SafetyEnvelope(["j1", "j2"], h, dt, mode, mrt)
    e.set_limits(urdf_limits(URDF), "urdf")
    return e


def test_urdf_limits():
    lim = urdf_limits(URDF)
    assert set(lim) == {"j1", "j2"}
    assert lim["j1"] == (-1.5, 1.5, 2.0)
    assert math.isnan(lim["j2"][0]) and math.isnan(lim["j2"][1]) and lim["j2"][2] == 3.0
    with pytest.raises(LimitsError, match="not valid XML"):
        urdf_limits("<robot>")


def test_params_win_over_the_urdf():
    e = SafetyEnvelope(["j1", "j2"], 3, 0.1)
    e.set_limits(limits_from_params(["j1"], None, [-0.5], [0.5], [0]), "parameters")
    e.set_limits(urdf_limits(URDF), "urdf", keep=("parameters",))
    assert (e.lower[0], e.upper[0], e.vmax[0]) == (-0.5, 0.5, np.inf)
    assert e.vmax[1] == 3.0 and e.source == {"j1": "parameters", "j2": "urdf"}
    with pytest.raises(LimitsError, match="lower limit 1.0 > upper limit 0.0"):
        limits_from_params(["j1"], None, [1.0], [0.0], [])
    with pytest.raises(LimitsError, match="has 2 values for 1"):
        limits_from_params(["j1"], None, [1.0, 2.0], [], [])


def test_nan_and_inf_actions_are_rejected_with_the_place():
    e = env()
    a = np.zeros((5, 3), np.float32)
    assert e.check_actions(a) == OK
    a[2, 1] = np.nan
    a[3, 2] = np.inf
    assert e.check_actions(a) == REJECTED
    assert "non-finite action" in e.reason and "dims [1, 2]" in e.reason and "row 2" in e.reason


def test_within_limits_passes_untouched_and_allocates_nothing():
    e = env(mrt=[0.5], h=400)
    pos = np.tile(np.linspace(0, 1.0, 400)[:, None], (1, 2))
    vel = np.zeros_like(pos)
    vel[:-1] = np.diff(pos, axis=0) / 0.1
    before = pos.copy()
    obs = np.zeros(2)
    assert e.check(pos, vel, obs) == OK
    np.testing.assert_array_equal(pos, before)
    e.check(pos, vel, obs)
    tracemalloc.start()
    e.check(pos, vel, obs)
    tracemalloc.reset_peak()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(20):
        e.check(pos, vel, obs)
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak - start < 4096 and cur - start < 256  # a chunk-sized temporary: 6.4 kB, (start, cur, peak)


def test_huge_values_are_clamped_into_limits_and_velocity():
    e = env()
    pos = np.full((5, 2), 1e6)
    vel = np.zeros_like(pos)
    assert e.check(pos, vel, np.zeros(2)) == CLAMPED
    assert "position limits [-1.5, 1.5]" in e.reason
    assert pos[:, 0].max() <= 1.5 and np.abs(np.diff(pos[:, 0])).max() <= 2.0 * 0.1 + 1e-12
    assert np.abs(np.diff(pos[:, 1])).max() <= 3.0 * 0.1 + 1e-12
    assert np.abs(vel[:, 0]).max() <= 2.0 and np.abs(vel[:, 1]).max() <= 3.0


def test_teleport_is_pulled_to_max_relative_target_or_rejected():
    e = env(mrt=[0.1])
    pos = np.full((5, 2), 1.0)
    vel = np.zeros_like(pos)
    obs = np.array([0.2, -0.3])
    assert e.check(pos, vel, obs) == CLAMPED
    assert "max_relative_target 0.1" in e.reason
    np.testing.assert_allclose(pos[0], obs + 0.1)
    r = env("reject", mrt=[0.1])
    pos = np.full((5, 2), 1.0)
    assert r.check(pos, vel, obs) == REJECTED and r.reason.startswith("rejected:")


def test_overflow_to_inf_is_rejected_even_in_clamp_mode():
    e = env()
    pos = np.full((5, 2), np.inf)
    assert e.check(pos, np.zeros_like(pos), np.zeros(2)) == REJECTED
    assert "non-finite" in e.reason


def test_bad_max_relative_target():
    with pytest.raises(LimitsError, match="one per trajectory joint"):
        SafetyEnvelope(["a", "b", "c"], 3, 0.1, "clamp", [0.1, 0.2])
    with pytest.raises(LimitsError, match="must be > 0"):
        SafetyEnvelope(["a"], 3, 0.1, "clamp", [0.0])
    with pytest.raises(LimitsError, match="safety_mode"):
        SafetyEnvelope(["a"], 3, 0.1, "warn")


def test_key_names_the_checks_not_the_values():
    """The node rate-limits its log on `key`: a policy clamped every tick with new numbers logged every tick."""
    e = env()
    a, b = np.full((5, 2), 2.0), np.full((5, 2), 3.0)
    e.check(a, np.zeros_like(a), np.zeros(2))
    k1, r1 = e.key, e.reason
    e.check(b, np.zeros_like(b), np.zeros(2))
    assert e.key == k1 == ("clamped", "position_limits") and e.reason != r1
    e.check_actions(np.full((5, 3), np.nan))
    assert e.key == ("non-finite",)
