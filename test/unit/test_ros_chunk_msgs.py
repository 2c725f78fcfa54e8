"""flash_rt_ros.chunk_msgs (preserialized ActionChunk / JointTrajectory patched in place) and flash_rt_ros.seeded_noise:
the bytes the node publishes must deserialize (with rclpy) to exactly the messages built field by field, for every
horizon / action_dim / dt and across prompt changes; the noise must equal flash_rt.noise.seeded_noise bit for bit."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from flash_rt.noise import seeded_noise

pytest.importorskip("rclpy")
from rclpy.serialization import deserialize_message  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from flash_rt_ros.chunk_msgs import ChunkMessages  # noqa: E402
from flash_rt_ros.msg import ActionChunk  # noqa: E402
from flash_rt.noise import SeededNoise  # noqa: E402


def _decode(m: ChunkMessages):
    return (deserialize_message(m.chunk_bytes(), ActionChunk),
            deserialize_message(m.trajectory_bytes(), JointTrajectory))


@pytest.mark.parametrize("horizon,adim,dt,frame", [(50, 7, 0.1, ""), (10, 7, 0.1, "base"), (3, 2, 1 / 30, "x"),
                                                    (1, 1, 0.05, ""), (4, 8, 0.02, "odd_len"), (16, 14, 1.7, "")])
def test_bytes_deserialize_to_the_filled_messages(horizon, adim, dt, frame):
    names = [f"joint_{i}" for i in range(adim)]
    m = ChunkMessages(names, horizon, adim, dt, frame_id=frame)
    m.check_against_rclpy()
    rng = np.random.default_rng(horizon * 100 + adim)
    for seq, prompt in ((0, "pick up the cube"), (1, "pick up the cube"), (2, "open the drawer, then the door")):
        a = rng.standard_normal((horizon, adim)).astype(np.float32)
        stamp = 1_700_000_123_456_789_012 + seq
        m.fill(a, stamp, seq, 0.0123 * (seq + 1), prompt)
        c, t = _decode(m)
        assert (c.header.stamp.sec, c.header.stamp.nanosec) == divmod(stamp, 10**9)
        assert c.header.frame_id == frame and t.header.frame_id == frame
        assert c.sequence == seq and c.prompt == prompt
        assert c.joint_names == names and t.joint_names == names
        assert (c.horizon, c.action_dim) == (horizon, adim)
        assert c.dt == pytest.approx(dt, rel=1e-6) and c.inference_time == pytest.approx(0.0123 * (seq + 1), rel=1e-6)
        np.testing.assert_array_equal(np.asarray(c.data, np.float32).reshape(horizon, adim), a)
        assert (t.header.stamp.sec, t.header.stamp.nanosec) == divmod(stamp, 10**9)
        assert len(t.points) == horizon
        for k, p in enumerate(t.points):
            np.testing.assert_array_equal(np.asarray(p.positions), a[k].astype(np.float64))
            assert len(p.velocities) == len(p.accelerations) == len(p.effort) == 0
            assert p.time_from_start.sec * 10**9 + p.time_from_start.nanosec == round(k * dt * 1e9)
        ref_c, ref_t = m.reference_messages()
        assert c == ref_c and t == ref_t


def test_fill_without_trajectory_leaves_it_alone():
    m = ChunkMessages(["a", "b"], 3, 2, 0.1)
    a = np.ones((3, 2), np.float32)
    m.fill(a, 5, 0, 0.1, "p")
    m.fill(2 * a, 7, 1, 0.1, "p", trajectory=False)
    c, t = _decode(m)
    assert c.data[0] == 2.0 and t.points[0].positions[0] == 1.0 and t.header.stamp.nanosec == 5


def test_fill_allocates_nothing_with_a_steady_prompt():
    m = ChunkMessages([f"j{i}" for i in range(7)], 50, 7, 0.1)
    a = np.zeros((50, 7), np.float32)
    prompt = "pick up the cube"
    for k in range(10):
        m.fill(a, 10**18 + k, k, 0.01, prompt)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for k in range(200):
            m.fill(a, 10**18 + k, k, 0.01, prompt)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    ours = [tracemalloc.Filter(True, __import__("flash_rt_ros.chunk_msgs").chunk_msgs.__file__)]
    diff = after.filter_traces(ours).compare_to(before.filter_traces(ours), "lineno")
    growth = sum(d.size_diff for d in diff)
    assert growth < 256, [str(d) for d in diff[:3]]


def test_wrong_name_count_is_rejected():
    with pytest.raises(ValueError, match="3 action joint names for action_dim=2"):
        ChunkMessages(["a", "b", "c"], 5, 2, 0.1)


@pytest.mark.parametrize("seed", [0, 3, 7, 2**63 + 5, 2**64 - 1])
def test_seeded_noise_stream_equals_seeded_noise(seed):
    out = np.empty((50, 32), np.float32)
    s = SeededNoise(seed, out)
    for index in (0, 1, 2, 7, 2**40, 3, 0):
        got = s.fill(index)
        assert got is out
        np.testing.assert_array_equal(got, seeded_noise(seed, index, 50, 32))


def test_seeded_noise_stream_rejects_negative():
    with pytest.raises(ValueError):
        SeededNoise(-1, np.empty((2, 2), np.float32))
    with pytest.raises(ValueError):
        SeededNoise(0, np.empty((2, 2), np.float32)).fill(-1)


@pytest.mark.parametrize("horizon,adim,nj", [(10, 8, 8), (5, 8, 7), (3, 14, 14), (1, 2, 1)])
def test_trajectory_with_its_own_joints_and_velocities(horizon, adim, nj):
    """action_semantics: the trajectory carries its joints (commands may be left out) and velocities."""
    names = [f"a{i}" for i in range(adim)]
    tnames = [f"j{i}" for i in range(nj)]
    m = ChunkMessages(names, horizon, adim, 0.1, traj_joint_names=tnames, velocities=True)
    m.check_against_rclpy()
    rng = np.random.default_rng(nj)
    a = rng.standard_normal((horizon, adim)).astype(np.float32)
    pos, vel = rng.standard_normal((horizon, nj)), rng.standard_normal((horizon, nj))
    m.fill(a, 10**18, 3, 0.01, "p", positions=pos, velocities=vel)
    c, t = _decode(m)
    assert c.joint_names == names and t.joint_names == tnames
    np.testing.assert_array_equal(np.asarray(c.data, np.float32).reshape(horizon, adim), a)   # model actions as is
    for k, p in enumerate(t.points):
        np.testing.assert_array_equal(np.asarray(p.positions), pos[k])
        np.testing.assert_array_equal(np.asarray(p.velocities), vel[k])
    m.fill_trajectory(10**18 + 5, np.zeros((horizon, nj)), np.zeros((horizon, nj)))
    _, t = _decode(m)
    assert t.header.stamp.nanosec == 5 and all(not any(p.positions) and not any(p.velocities) for p in t.points)
