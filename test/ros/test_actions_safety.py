"""Action semantics, the safety envelope, tiny frames and the real-time-chunking switch, end to end over real rclpy:
the node (FlashRTNode, its own timer) runs in this process on real DDS (loopback, this module's domain); a second
rclpy node publishes the camera frames and joint states and subscribes to ~/joint_trajectory, ~/action_chunk and
/diagnostics, so everything crosses the middleware. One node per test, configured from the shipped YAMLs layered as
a user would (config/pi05_cpu.yaml + config/actions/*.yaml) on tiny real checkpoints of the right dims.

The NaN / huge / teleport cases replace the Policy's step() with a function returning such rows: the engine's
OUTPUT is the test double; the thing under test (the node's safety stage and what reaches the trajectory topic)
is real.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from ros_testing import REPO

CPU_YAML = REPO / "config" / "pi05_cpu.yaml"
ACTIONS = REPO / "config" / "actions"
TINY_JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7", "gripper"]
PANDA = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]
ALOHA = ([f"left_{j}" for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")]
         + ["left_gripper"]
         + [f"right_{j}" for j in ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")]
         + ["right_gripper"])
OK, WARN, ERROR = b"\x00", b"\x01", b"\x02"


class Rig:
    """FlashRTNode + a peer node (inputs out, outputs in) on one executor, over DDS."""

    def __init__(self, domain: int, checkpoint, params_files, overrides: dict, joint_names, joint_positions,
                 width: int = 64, height: int = 48):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from trajectory_msgs.msg import JointTrajectory

        from flash_rt_ros.msg import ActionChunk
        from flash_rt_ros.node import FlashRTNode

        self.ctx = Context()
        args = ["test_actions_safety", "--ros-args"]
        for f in params_files:
            args += ["--params-file", str(f)]
        rclpy.init(args=args, context=self.ctx, domain_id=domain)
        ov = {"checkpoint": str(checkpoint), "hardware": "cpu", "cpu_threads": 1, "noise_seed": 3,
              "diagnostics_period_s": 0.3, "warmup_steps": 1, "robot_description_topic": "", **overrides}
        self.node = FlashRTNode(context=self.ctx, parameter_overrides=[Parameter(k, value=v) for k, v in ov.items()])
        self.io = rclpy.create_node("actions_safety_peer", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.ex.add_node(self.io)
        self.trajs, self.chunks, self.diags = [], [], []
        self.io.create_subscription(JointTrajectory, "/flash_rt_node/joint_trajectory", self.trajs.append, 100)
        self.io.create_subscription(ActionChunk, "/flash_rt_node/action_chunk", self.chunks.append, 100)
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self.diags.append, 100)
        self.cams = [self.io.create_publisher(Image, "/" + t, qos_profile_sensor_data)
                     for t in ("camera/base/image_raw", "camera/left_wrist/image_raw", "camera/right_wrist/image_raw")]
        self.joint_pub = self.io.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        self.images = []
        for _ in self.cams:
            m = Image(height=height, width=width, encoding="rgb8", step=width * 3)
            m.data = rng.integers(0, 255, (height, width, 3), np.uint8).tobytes()
            self.images.append(m)
        self.js = JointState()
        self.js.name = list(joint_names)
        self.js.position = [float(x) for x in joint_positions]
        self.closed = False

    def configure(self) -> bool:
        from rclpy.lifecycle import TransitionCallbackReturn
        return self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS

    def start(self) -> "Rig":
        assert self.configure(), self.node.config_error
        self.node.trigger_activate()
        return self

    def feed(self) -> None:
        stamp = self.io.get_clock().now().to_msg()
        for pub, m in zip(self.cams, self.images):
            m.header.stamp = stamp
            pub.publish(m)
        self.js.header.stamp = stamp
        self.joint_pub.publish(self.js)

    def run(self, seconds: float = 0.0, trajs: int = 0, chunks: int = 0, timeout: float = 30.0) -> None:
        """Feed inputs at 20 Hz and spin, for `seconds` or until that many more messages arrived."""
        t_end = time.monotonic() + (seconds if seconds else timeout)
        n_t, n_c = len(self.trajs) + trajs, len(self.chunks) + chunks
        next_feed = 0.0
        while time.monotonic() < t_end:
            if time.monotonic() >= next_feed:
                self.feed()
                next_feed = time.monotonic() + 0.05
            self.ex.spin_once(timeout_sec=0.01)
            if not seconds and len(self.trajs) >= n_t and len(self.chunks) >= n_c:
                return
        assert seconds, f"timed out: {len(self.trajs)} trajectories, {len(self.chunks)} chunks"

    def statuses(self, part: str, since: int = 0):
        return [s for d in self.diags[since:] for s in d.status if part in s.name]

    def close(self) -> None:
        import rclpy
        if self.closed:
            return
        self.closed = True
        self.ex.shutdown()
        self.io.destroy_node()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


@pytest.fixture
def rig(domain):
    made = []

    def make(*args, **kw):
        r = Rig(domain, *args, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


@pytest.fixture(scope="module")
def tiny_aloha(tmp_path_factory):
    """Tiny real weights with ALOHA's dims: 14 state, 14 action norm stats."""
    from flash_rt.testing import build_tiny_checkpoint
    from flash_rt.testing.checkpoint import tiny_norm_stats
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_aloha"), layout="openpi",
                                 norm_stats=tiny_norm_stats(14, 14))


def traj_arrays(t):
    return (np.array([list(p.positions) for p in t.points]), np.array([list(p.velocities) for p in t.points]))


def pair(r, seq_from: int = 0):
    """(chunk, trajectory) pairs with the same stamp (the node publishes both per tick)."""
    by = {(t.header.stamp.sec, t.header.stamp.nanosec): t for t in r.trajs}
    out = []
    for c in r.chunks:
        t = by.get((c.header.stamp.sec, c.header.stamp.nanosec))
        if t is not None and c.sequence >= seq_from:
            out.append((np.asarray(c.data, np.float64).reshape(c.horizon, c.action_dim), t))
    return out


# -- action spaces ------------------------------------------------------------------------------------------
def test_droid_velocities_become_integrated_positions(rig, tiny_droid):
    state = np.array([0.1, -0.5, 0.2, -2.0, 0.3, 1.5, 0.4, 0.02])
    wide = {"joint_limits_lower": [-100.0] * 7, "joint_limits_upper": [100.0] * 7, "joint_limits_velocity": [0.0] * 7,
            "max_relative_target": [100.0]}      # the tiny policy's random velocities must not be clamped here
    r = rig(tiny_droid, [CPU_YAML, ACTIONS / "droid.yaml"], wide, PANDA, state).start()
    r.run(trajs=3, chunks=3)
    pairs = pair(r)
    assert len(pairs) >= 2
    for a, t in pairs:
        assert list(t.joint_names) == PANDA[:7], "the gripper command stays off the trajectory (command_in_trajectory)"
        pos, vel = traj_arrays(t)
        s = state.astype(np.float32)[:7].astype(np.float64)
        want = np.vstack([s, s + r.node.p.dt * np.cumsum(a[:-1, :7], axis=0)])
        np.testing.assert_allclose(pos, want, rtol=1e-9, atol=1e-9)      # q[0] = observed, q[k+1] = q[k] + v[k] dt
        np.testing.assert_array_equal(vel, a[:, :7])                      # the commanded velocities, filled in
    assert r.node._safety_counts.sum() == 0


def test_aloha_absolute_joints_with_the_engines_delta_mask(rig, tiny_aloha):
    state = np.linspace(-0.5, 0.5, 14)
    r = rig(tiny_aloha, [CPU_YAML, ACTIONS / "aloha_bimanual.yaml"], {"max_relative_target": [1e3]}, ALOHA,
            state).start()
    assert r.node.policy.action_delta_mask == (True,) * 6 + (False,) + (True,) * 6 + (False,)
    r.run(trajs=2, chunks=2)
    a, t = pair(r)[0]
    assert list(t.joint_names) == ALOHA and a.shape[1] == 14
    pos, vel = traj_arrays(t)
    np.testing.assert_allclose(pos, a, rtol=1e-6, atol=1e-6)   # the engine's output already absolute: as is
    np.testing.assert_allclose(vel[:-1], np.diff(a, axis=0) / r.node.p.dt, rtol=1e-5, atol=1e-5)
    assert not vel[-1].any()
    # the engine added the observed state to the masked dims: the same chunk without the mask differs by it
    import flash_rt
    from flash_rt.noise import seeded_noise
    plain = flash_rt.load_model(str(tiny_aloha), hardware="cpu", num_views=3, action_dim=14,
                                image_interpolation="linear")
    from flash_rt_ros.conversions import SlotWriter
    for s in range(3):
        SlotWriter(plain.image_slot(s), "linear").write_image(r.images[s])
        plain.set_image_mask(s, True)
    plain.set_prompt(r.node.policy.prompt)
    plain.write_state(state.astype(np.float32))
    seq = next(c.sequence for c in r.chunks if np.allclose(np.asarray(c.data).reshape(a.shape), a))
    ref = plain.step(seeded_noise(3, seq, plain.action_horizon, plain.config.action_dim)).astype(np.float64)
    mask = np.array(r.node.policy.action_delta_mask)
    np.testing.assert_allclose(a[:, mask], ref[:, mask] + state.astype(np.float32)[mask], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a[:, ~mask], ref[:, ~mask], rtol=1e-4, atol=1e-4)


def test_node_side_deltas_are_added_to_the_observed_state(rig, tiny_openpi):
    state = np.array([0.3, -0.2, 0.1, 0.5, -0.4, 0.25, 0.0, 0.7])
    r = rig(tiny_openpi, [CPU_YAML], {"action_semantics": ["delta"] * 6 + ["command"]}, TINY_JOINTS, state).start()
    r.run(trajs=2, chunks=2)
    a, t = pair(r)[0]
    pos, _ = traj_arrays(t)
    np.testing.assert_allclose(pos[:, :6], a[:, :6] + state.astype(np.float32)[:6], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pos[:, 6], a[:, 6], rtol=1e-6)          # the gripper command passes through


def test_missing_semantics_is_a_configure_error(rig, tiny_openpi, tmp_path):
    import yaml

    doc = yaml.safe_load(CPU_YAML.read_text())
    del doc["/**"]["ros__parameters"]["action_semantics"]
    no_sem = tmp_path / "no_semantics.yaml"
    no_sem.write_text(yaml.safe_dump(doc))
    r0 = rig(tiny_openpi, [no_sem], {}, TINY_JOINTS, np.zeros(8))
    assert not r0.configure()
    assert "parameter 'action_semantics' is required: the model returns 7 action dims" in r0.node.config_error
    r = rig(tiny_openpi, [CPU_YAML], {"action_semantics": ["position"] * 3}, TINY_JOINTS, np.zeros(8))
    assert not r.configure()
    assert "'action_semantics': needs one entry per action_joint_names entry (7)" in r.node.config_error
    r2 = rig(tiny_openpi, [CPU_YAML], {"action_semantics": ["position"] * 7, "action_delta_mask": [6, -1],
                                      "on_reject": "skip"}, TINY_JOINTS, np.zeros(8))
    assert r2.configure(), r2.node.config_error      # engine mask + 'position': fine
    r3 = rig(tiny_openpi, [CPU_YAML], {"action_semantics": ["delta"] * 6 + ["command"], "action_delta_mask": [6, -1]},
             TINY_JOINTS, np.zeros(8))
    assert not r3.configure() and "already adds the state" in r3.node.config_error


# -- safety envelope ----------------------------------------------------------------------------------------
def _replace_step(node, rows_fn):
    """The engine's output as a test double: step() returns rows_fn(real chunk) in a preallocated buffer."""
    real = node.policy.step
    buf = np.zeros((node.policy.action_horizon, node.policy.action_dim), np.float32)

    def step(noise=None):
        out = real(noise)
        buf[...] = rows_fn(out)
        return buf
    node.policy.step = step
    return lambda: setattr(node.policy, "step", real)


@pytest.mark.parametrize("on_reject", ["skip", "hold"])
def test_nan_actions_never_reach_the_controller(rig, tiny_openpi, on_reject):
    state = np.array([0.3, -0.2, 0.1, 0.5, -0.4, 0.25, 0.0, 0.7])
    r = rig(tiny_openpi, [CPU_YAML], {"on_reject": on_reject}, TINY_JOINTS, state).start()
    r.run(trajs=2, chunks=2)

    def nan_rows(a):
        a = a.copy()
        a[3, 2] = np.nan
        return a
    restore = _replace_step(r.node, nan_rows)
    n_t, n_c, n_d = len(r.trajs), len(r.chunks), len(r.diags)
    r.run(seconds=1.5)
    assert len(r.chunks) == n_c, "a chunk with NaN was published on ~/action_chunk"
    bad = r.trajs[n_t:]
    for t in bad:
        pos, vel = traj_arrays(t)
        assert np.isfinite(pos).all()
    if on_reject == "skip":
        assert not bad, "nothing may reach the trajectory topic"
    else:
        assert len(bad) >= 5, "hold publishes a hold trajectory every tick"
        pos, vel = traj_arrays(bad[-1])
        np.testing.assert_allclose(pos, np.tile(state.astype(np.float32)[[0, 1, 2, 3, 4, 5, 7]], (len(pos), 1)))
        assert not vel.any()
    err = [s for s in r.statuses("safety", n_d) if s.level == ERROR]
    assert err and "non-finite action" in err[-1].message and "dims [2]" in err[-1].message
    restore()
    r.run(trajs=2, chunks=2)           # the node keeps serving
    assert r.node._timer is not None


def test_huge_values_are_clamped_into_the_limits(rig, tiny_openpi):
    state = np.zeros(8)
    lim = {"joint_limits_names": TINY_JOINTS[:6], "joint_limits_lower": [-1.0] * 6, "joint_limits_upper": [1.0] * 6,
           "joint_limits_velocity": [2.0] * 6}
    r = rig(tiny_openpi, [CPU_YAML], lim, TINY_JOINTS, state).start()
    restore = _replace_step(r.node, lambda a: np.full_like(a, 1e6))
    n_d = len(r.diags)
    r.run(trajs=3, chunks=3)
    for a, t in pair(r):
        pos, vel = traj_arrays(t)
        assert (a[:, :6] == 1e6).all(), "~/action_chunk keeps the model's actions"
        assert (np.abs(pos[:, :6]) <= 1.0).all() and (np.abs(vel[:, :6]) <= 2.0 + 1e-9).all()
        assert (np.abs(np.diff(pos[:, :6], axis=0)) <= 2.0 * r.node.p.dt + 1e-9).all()
    warn = [s for s in r.statuses("safety", n_d) if s.level == WARN]
    assert warn and "clamped" in warn[-1].message and "position limits [-1, 1]" in warn[-1].message
    restore()


def test_teleport_rejected_by_max_relative_target(rig, tiny_openpi):
    state = np.array([0.3, -0.2, 0.1, 0.5, -0.4, 0.25, 0.0, 0.7])
    r = rig(tiny_openpi, [CPU_YAML], {"safety_mode": "reject", "max_relative_target": [0.1]}, TINY_JOINTS,
            state).start()
    s7 = state.astype(np.float32)[[0, 1, 2, 3, 4, 5, 7]]
    restore = _replace_step(r.node, lambda a: np.tile(s7, (a.shape[0], 1)) + np.float32(0.05))
    r.run(trajs=2, chunks=2)                                # within 0.1 of the arm: published as is
    a, t = pair(r)[-1]
    np.testing.assert_allclose(traj_arrays(t)[0], a, atol=1e-6)
    restore()
    restore = _replace_step(r.node, lambda a: np.tile(s7, (a.shape[0], 1)) + np.float32(1.5))   # a teleport
    n_t, n_c, n_d = len(r.trajs), len(r.chunks), len(r.diags)
    r.run(seconds=1.2)
    assert len(r.trajs) == n_t and len(r.chunks) == n_c
    err = [s for s in r.statuses("safety", n_d) if s.level == ERROR]
    assert err and "max_relative_target 0.1" in err[-1].message
    restore()


def test_urdf_on_the_robot_description_topic_sets_limits(rig, tiny_openpi):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String

    urdf = "<robot name='r'>" + "".join(
        f"<joint name='joint_{i}' type='revolute'><limit lower='-0.2' upper='0.2' velocity='1.0'/></joint>"
        for i in range(1, 7)) + "</robot>"
    r = rig(tiny_openpi, [CPU_YAML], {"robot_description_topic": "/robot_description"}, TINY_JOINTS, np.zeros(8))
    pub = r.io.create_publisher(String, "/robot_description",
                                QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                           reliability=ReliabilityPolicy.RELIABLE))
    pub.publish(String(data=urdf))        # latched: published before the node subscribes
    r.start()
    restore = _replace_step(r.node, lambda a: np.full_like(a, 5.0))
    r.run(trajs=3, chunks=3)
    pos, _ = traj_arrays(r.trajs[-1])
    assert (np.abs(pos[:, :6]) <= 0.2 + 1e-12).all() and r.node._safety.source["joint_1"] == "robot_description topic"
    restore()


# -- inputs --------------------------------------------------------------------------------------------------
def test_tiny_frame_is_refused_with_a_reason(rig, tiny_openpi):
    r = rig(tiny_openpi, [CPU_YAML], {}, TINY_JOINTS, np.zeros(8), width=7, height=5).start()
    r.run(seconds=1.5)
    assert not r.chunks, "a 7x5 frame must not be upscaled into the model"
    warn = [s for s in r.statuses("input camera/base/image_raw") if s.level == WARN and "too small" in s.message]
    assert warn and "min_image_side=32" in warn[-1].message
    r.node.trigger_deactivate()


# -- hand-off ------------------------------------------------------------------------------------------------
def _leading_equal_rows(prev, prev_stamp, nxt, nxt_stamp, dt) -> int:
    shift = int(round((nxt_stamp - prev_stamp) / dt))
    if not 0 <= shift < len(prev):
        return -1
    tail = prev[shift:]
    n = 0
    while n < len(tail) and np.allclose(tail[n], nxt[n], rtol=1e-4, atol=1e-4):
        n += 1
    return n


@pytest.mark.parametrize("model, rtc", [("pi05", False), ("pi05", True), ("pi0", True)])
def test_realtime_chunking_switch_freezes_the_executing_rows(request, rig, model, rtc):
    """Pi0 too (config/pi0_cpu.yaml): its cells take realtime_chunking since the ninth session."""
    ckpt, yaml = ((request.getfixturevalue("tiny_openpi"), CPU_YAML) if model == "pi05" else
                  (request.getfixturevalue("tiny_pi0"), REPO / "config" / "pi0_cpu.yaml"))
    r = rig(ckpt, [yaml], {"realtime_chunking": rtc, "noise_seed": -1}, TINY_JOINTS, np.zeros(8)).start()
    assert r.node.policy.realtime_chunking is rtc
    r.run(chunks=8)
    cs = r.chunks[-7:]
    dt = r.node.p.dt
    eq = []
    for p, n in zip(cs, cs[1:]):
        ps = p.header.stamp.sec + p.header.stamp.nanosec * 1e-9
        ns = n.header.stamp.sec + n.header.stamp.nanosec * 1e-9
        eq.append(_leading_equal_rows(np.asarray(p.data).reshape(p.horizon, -1), ps,
                                      np.asarray(n.data).reshape(n.horizon, -1), ns, dt))
    if rtc:
        assert r.node.rtc_frozen >= 1
        assert all(e >= 1 for e in eq), f"chunk k+1 must start with chunk k's executing rows: {eq}"
    else:
        assert all(e == 0 for e in eq), eq
