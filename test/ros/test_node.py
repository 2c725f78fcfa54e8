"""The node end to end: one node process (tiny checkpoint, CPU, seeded noise) + one static synthetic sensor process
shared by the module; every test checks the node is still alive and publishing afterwards.

Order matters only in that the seeded-equivalence test runs before any prompt change.
"""
from __future__ import annotations

import array
import math
import re
import time

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState

from ros_testing import Monitor, Proc, domain_for_module, node_cmd, sensors_cmd

W, H = 320, 240
SEED = 7
RATE = 10.0
PROMPT = "pick up the object and place it in the bin"
CAM_TOPICS = ("/camera/base/image_raw", "/camera/left_wrist/image_raw", "/camera/right_wrist/image_raw")


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_openpi):
    tmp = tmp_path_factory.mktemp("ros_node")
    domain = domain_for_module()
    node = Proc(node_cmd(tiny_openpi, f"noise_seed:={SEED}", f"expected_image_width:={W}",
                         f"expected_image_height:={H}", "diagnostics_period_s:=0.5"), tmp / "node.log", domain)
    sensors = Proc(sensors_cmd("--static", "--width", str(W), "--height", str(H), "--camera-rate", "30"),
                   tmp / "sensors.log", domain)
    mon = Monitor(domain)
    procs = {"node": node, "sensors": sensors}
    try:
        assert node.wait_for_log("active:", 90), f"node did not activate:\n{node.text()[-3000:]}"
        assert mon.wait_chunks(3, 30), f"no chunks:\n{node.text()[-3000:]}"
        yield {"node": node, "mon": mon, "procs": procs, "tmp": tmp, "domain": domain, "ckpt": tiny_openpi}
    finally:
        mon.close()
        for p in procs.values():
            p.stop()


def assert_still_serving(env, n: int = 3):
    assert env["node"].alive(), env["node"].text()[-3000:]
    assert env["mon"].wait_chunks(n, 10), "node stopped publishing:\n" + env["node"].text()[-3000:]


def bad_input_reported(env, topic_part: str, needle: str, since: int, timeout: float = 5.0) -> bool:
    """A WARN status for the input and the reason in the node's log."""
    mon = env["mon"]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        mon.spin(0.1)
        warn = [s for s in mon.statuses(since, f"input {topic_part}") if s.level == b"\x01" and needle in s.message]
        if warn and needle in env["node"].text():
            return True
    return False


# -- rate, message contents, equivalence ------------------------------------------------------------------
def test_rate_10s_and_message_fields(env):
    mon = env["mon"]
    mon.spin(0.5)
    start = len(mon.chunks)
    ntraj = len(mon.trajs)
    mon.spin(10.0)
    got = mon.chunks[start:]
    t = np.array([r for r, _ in got])
    rate = (len(got) - 1) / (t[-1] - t[0])
    assert abs(rate - RATE) <= 0.05 * RATE, f"{rate:.2f} chunks/s over 10 s"
    seqs = [m.sequence for _, m in got]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "sequence numbers must be contiguous"
    m = got[-1][1]
    assert (m.horizon, m.action_dim) == (10, 7)
    assert math.isclose(m.dt, 1 / RATE, rel_tol=1e-6)
    assert list(m.joint_names) == ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "gripper"]
    assert len(m.data) == 70 and np.isfinite(np.asarray(m.data)).all()
    assert m.header.stamp.sec > 0 and 0 < m.inference_time < 1.0 and m.prompt == PROMPT
    trajs = mon.trajs[ntraj:]
    assert len(trajs) >= len(got) - 2
    tr = trajs[-1]
    assert list(tr.joint_names) == list(m.joint_names) and len(tr.points) == 10
    for k, pt in enumerate(tr.points):
        assert pt.time_from_start.sec * 1e9 + pt.time_from_start.nanosec == pytest.approx(k * 1e8, abs=1)
        assert len(pt.positions) == 7


def node_inputs(ckpt):
    """Exactly what the node's buffers hold with the static sensors: frame 0 of each camera through the node's
    own conversion (rgb8, linear), and the static joint state as float32."""
    from flash_rt_ros.conversions import SlotWriter
    from flash_rt_ros.synthetic_sensors import synthetic_frame, synthetic_joints

    images = []
    for c in range(3):
        frame = synthetic_frame(c, 0, W, H)
        msg = Image(height=H, width=W, encoding="rgb8", step=W * 3)
        msg.data = frame.tobytes()
        slot = np.zeros((224, 224, 3), np.uint8)
        SlotWriter(slot, "linear").write_image(msg)
        images.append(slot)
    state = synthetic_joints(8, 0.0, static=True).astype(np.float32)
    return images, state


@pytest.fixture(scope="module")
def reference_policy(env):
    import flash_rt
    return flash_rt.load_model(env["ckpt"], hardware="cpu", num_views=3)


def test_seeded_chunks_equal_policy_predict(env, reference_policy):
    from flash_rt.noise import seeded_noise

    mon = env["mon"]
    assert mon.wait_chunks(5, 10)
    images, state = node_inputs(env["ckpt"])
    pol = reference_policy
    worst = 0.0
    for _, m in mon.chunks[-5:]:
        assert m.prompt == PROMPT
        noise = seeded_noise(SEED, m.sequence, pol.action_horizon, pol.config.action_dim)
        ref = pol.predict(images, state, prompt=m.prompt, noise=noise)
        got = np.asarray(m.data, np.float32).reshape(m.horizon, m.action_dim)
        worst = max(worst, float(np.abs(got - ref).max()))
    assert worst <= 1e-5, f"max |chunk - Policy.predict| = {worst:g}"


# -- start-up log --------------------------------------------------------------------------------------------
def test_startup_log_says_where_the_time_went(env):
    """One INFO line after configure with the node's phases and the engine's nested under them, one after the first
    chunk with the time since activate; the numbers add up to the totals they claim."""
    log = env["node"].text()
    m = re.search(r"startup: configure (\d+\.\d+) s = load (\d+\.\d+) s \[(.*?)\] \+ prompt (\d+\.\d+) s "
                  r"\+ warm-up (\d+\.\d+) s \[warmup (\d+\.\d+) s \(2 step\(s\)[^)]*\)", log)
    assert m, log[-3000:]
    total, load, engine_load, prompt, warm, engine_warm = m.groups()
    total, load, prompt, warm, engine_warm = map(float, (total, load, prompt, warm, engine_warm))
    assert load + prompt + warm <= total + 0.015 and total - (load + prompt + warm) < 0.5
    assert engine_warm <= warm + 0.005
    names = re.findall(r"(\w+) \d+\.\d+ s", engine_load)
    assert names[:3] == ["open", "weights", "buffers"], engine_load
    assert "checkpoint index, config, tokenizer, norm stats" in engine_load
    f = re.search(r"startup: first chunk (\d+\.\d+) s after activate = (\d+\.\d+) s until a tick found every "
                  r"input fresh \+ first tick (\d+\.\d+) s \(no engine phase added by the first tick\)", log)
    assert f, log[-3000:]
    since, waited, tick = map(float, f.groups())
    assert abs(since - (waited + tick)) <= 0.011 and 0 < tick < 1.0 and since < 30
    assert log.count("startup: first chunk") == 1, "once per activation"


# -- services -----------------------------------------------------------------------------------------------
def latest_prompt_after(env, sec: float = 0.6) -> str:
    """The prompt of the newest chunk after draining what was queued (chunks published before now)."""
    env["mon"].spin(sec)
    return env["mon"].chunks[-1][1].prompt


def wait_for_prompt(env, prompt: str, timeout: float = 10.0):
    mon = env["mon"]
    end = time.monotonic() + timeout
    n0 = len(mon.chunks)
    while time.monotonic() < end:
        mon.spin(0.05)
        hits = [m for _, m in mon.chunks[n0:] if m.prompt == prompt]
        if hits:
            return hits
    return []


def set_prompt(env, text):
    from flash_rt_ros.srv import SetPrompt
    return env["mon"].call(SetPrompt, "/flash_rt_node/set_prompt", SetPrompt.Request(prompt=text))


def test_set_prompt_changes_output(env, reference_policy):
    from flash_rt.noise import seeded_noise

    mon = env["mon"]
    new = "stack the red block on the blue block"
    res = set_prompt(env, new)
    assert res.success, res.message
    assert 0 < res.setup_time < 1.0
    after = wait_for_prompt(env, new)
    assert after, "chunks never carried the new prompt"
    m = after[-1]
    images, state = node_inputs(env["ckpt"])
    noise = seeded_noise(SEED, m.sequence, m.horizon, reference_policy.config.action_dim)
    got = np.asarray(m.data, np.float32).reshape(m.horizon, m.action_dim)
    with_new = reference_policy.predict(images, state, prompt=new, noise=noise)
    with_old = reference_policy.predict(images, state, prompt=PROMPT, noise=noise)
    assert np.abs(got - with_new).max() <= 1e-5
    assert np.abs(got - with_old).max() > 1e-4, "the prompt did not change the output"
    assert set_prompt(env, PROMPT).success
    assert wait_for_prompt(env, PROMPT)
    assert_still_serving(env)


def test_calibrate_on_cpu_says_why(env):
    from flash_rt_ros.srv import Calibrate
    res = env["mon"].call(Calibrate, "/flash_rt_node/calibrate", Calibrate.Request(num_observations=0, percentile=0.0))
    assert not res.success
    assert "calibration not available" in res.message and "CPU" in res.message, res.message
    assert res.cache_path == ""
    assert_still_serving(env)


def test_empty_prompt_rejected(env):
    for text in ("", "   ", "___"):
        res = set_prompt(env, text)
        assert not res.success and "empty" in res.message, res.message
    assert latest_prompt_after(env) == PROMPT
    assert_still_serving(env)


def test_10kb_prompt_rejected(env):
    res = set_prompt(env, "pick up the cup " * 640)  # 10240 characters
    assert not res.success and "characters" in res.message, res.message
    assert_still_serving(env)
    assert latest_prompt_after(env) == PROMPT


def test_service_calls_during_inference(env):
    """Many service calls while the node ticks: each is answered, the rate holds, the node stays up."""
    from flash_rt_ros.srv import Calibrate, SetPrompt

    mon = env["mon"]
    node = mon.node
    cp = node.create_client(SetPrompt, "/flash_rt_node/set_prompt")
    cc = node.create_client(Calibrate, "/flash_rt_node/calibrate")
    assert cp.wait_for_service(timeout_sec=5) and cc.wait_for_service(timeout_sec=5)
    n0 = len(mon.chunks)
    t0 = time.monotonic()
    futs = []
    for i in range(20):
        futs.append(cp.call_async(SetPrompt.Request(prompt=PROMPT if i % 2 else "open the drawer")))
        futs.append(cc.call_async(Calibrate.Request()))
        mon.spin(0.1)
    end = time.monotonic() + 10
    while not all(f.done() for f in futs) and time.monotonic() < end:
        mon.spin(0.05)
    assert all(f.done() for f in futs), "some service calls were never answered"
    assert all(f.result().success for f in futs[0::2])
    assert set_prompt(env, PROMPT).success
    assert wait_for_prompt(env, PROMPT)
    dt = time.monotonic() - t0
    got = len(mon.chunks) - n0
    assert got >= 0.85 * RATE * dt, f"{got} chunks in {dt:.1f} s during the service storm"
    node.destroy_client(cp)
    node.destroy_client(cc)
    assert_still_serving(env)


# -- bad inputs ---------------------------------------------------------------------------------------------
def image_msg(width, height, encoding="rgb8", step=None, data_len=None):
    ch = {"rgb8": 3, "bgr8": 3, "mono8": 1, "bgra8": 4, "yuv422": 2, "16UC1": 2}[encoding]
    step = width * ch if step is None else step
    m = Image(height=height, width=width, encoding=encoding, step=step)
    m.data = bytes(step * height if data_len is None else data_len)
    return m


def publish_bad(env, topic, msg, times=5):
    pub = env["mon"].publisher(type(msg), topic)
    for _ in range(times):
        pub.publish(msg)
        env["mon"].spin(0.05)


def test_wrong_encoding(env):
    since = len(env["mon"].diags)
    publish_bad(env, CAM_TOPICS[0], image_msg(W, H, "yuv422"))
    assert bad_input_reported(env, "camera/base", "unsupported image encoding 'yuv422'", since)
    assert_still_serving(env)


def test_wrong_image_size(env):
    since = len(env["mon"].diags)
    publish_bad(env, CAM_TOPICS[1], image_msg(64, 48))
    assert bad_input_reported(env, "camera/left_wrist", "does not match the configured 320x240", since)
    assert_still_serving(env)


def test_truncated_image_data(env):
    since = len(env["mon"].diags)
    publish_bad(env, CAM_TOPICS[2], image_msg(W, H, data_len=W * 3 * H // 2))
    assert bad_input_reported(env, "camera/right_wrist", "truncated", since)
    assert_still_serving(env)


def joint_msg(names, values):
    m = JointState()
    m.name = list(names)
    m.position = array.array("d", values)
    return m


JOINTS = ["joint_1", "joint_2", "joint_3", "joint_4", "joint_5", "joint_6", "joint_7", "gripper"]


def test_nan_joints(env):
    since = len(env["mon"].diags)
    vals = [0.0] * 8
    vals[3] = math.nan
    publish_bad(env, "/joint_states", joint_msg(JOINTS, vals))
    assert bad_input_reported(env, "joint_states", "NaN/inf positions for ['joint_4']", since)
    assert_still_serving(env)


def test_missing_joint_names(env):
    since = len(env["mon"].diags)
    publish_bad(env, "/joint_states", joint_msg(JOINTS[:6], [0.0] * 6))
    assert bad_input_reported(env, "joint_states", "missing joints ['joint_7', 'gripper']", since)
    assert_still_serving(env)


def test_stale_camera_skips_and_warns(env):
    """Stop one camera: no chunk is published while it is stale and /diagnostics says WARN; it recovers."""
    mon, procs = env["mon"], env["procs"]
    procs["sensors"].stop()
    two = ",".join(t.lstrip("/") for t in CAM_TOPICS[:2])
    procs["sensors"] = Proc(sensors_cmd("--static", "--width", str(W), "--height", str(H), "--cameras", two),
                            env["tmp"] / "sensors_two.log", env["domain"])
    since = len(mon.diags)
    deadline = time.monotonic() + 10
    stale = []
    while time.monotonic() < deadline and not stale:
        mon.spin(0.1)
        stale = [s for s in mon.statuses(since, "input camera/right_wrist")
                 if s.level == b"\x01" and "stale" in s.message]
    assert stale, "no WARN diagnostics for the stale camera"
    assert env["node"].wait_for_log("skipping ticks: stale input", 5)
    mon.spin(0.6)
    n0 = len(mon.chunks)
    mon.spin(1.5)
    assert len(mon.chunks) == n0, "published chunks while a camera was stale"
    engine = [s for s in mon.statuses(since, ": engine") if s.level == b"\x01"]
    assert engine and "camera/right_wrist/image_raw" in engine[-1].message
    procs["sensors"].stop()
    procs["sensors"] = Proc(sensors_cmd("--static", "--width", str(W), "--height", str(H)),
                            env["tmp"] / "sensors_again.log", env["domain"])
    assert_still_serving(env)
