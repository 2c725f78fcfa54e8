"""record -> replay -> report through the real node process (CPU, tiny checkpoint, noise_seed) over loopback DDS.

The input bag is generated here (flash_rt_ros.bag.synthetic): three cameras with different sizes, encodings and
rates (640x480 rgb8 and 320x240 bgr8 Images at 15 Hz, a 424x240 JPEG CompressedImage at 10 Hz), joint states at
50 Hz in another order than the node's (plus an extra joint), and a prompt change half-way through on the
std_msgs/String topic /flash_rt_bag/prompt, which replay turns into a ~/set_prompt call. The CLI runs as
separate processes (`python -m flash_rt_ros.bag.cli`, i.e. `flash-rt-bag`); the report also runs in-process.

Every compared chunk must match the FP32 reference with cos >= 0.99999, and -- node and report both on the
CPU engine with one thread -- the report's recomputation must reproduce the node's chunk to float rounding.
"""
from __future__ import annotations

import json
import sys
import time

import pytest

from ros_testing import Proc, domain_for_module, node_cmd
from flash_rt_ros.bag.report import ReportOptions, report
from flash_rt_ros.bag.synthetic import PROMPTS, T0_NS, node_camera_topics, rewrite_bag, write_test_bag

SEED = 7
RATE = 20.0          # node ticks; the replay steps every 0.1 s of bag time (--step), so ~2 ticks a step
STEP = 0.1
BAG_S = 2.0


def bag_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "flash_rt_ros.bag.cli", *map(str, args)]


def run(cmd, log, domain, timeout=120.0) -> tuple[int, str]:
    p = Proc(cmd, log, domain)
    try:
        p.p.wait(timeout)
    except Exception:  # noqa: BLE001 - timeout: stop() kills it, the assert below shows the log
        pass
    finally:
        rc = p.stop()
    return rc, p.text()


@pytest.fixture(scope="module")
def env(tmp_path_factory, tiny_openpi):
    tmp = tmp_path_factory.mktemp("bag_replay")
    domain = domain_for_module()
    in_bag = write_test_bag(tmp / "in", duration_s=BAG_S)
    node = Proc(node_cmd(tiny_openpi, f"noise_seed:={SEED}", f"control_rate_hz:={RATE}",
                         "camera_topics:=" + json.dumps(node_camera_topics())), tmp / "node.log", domain)
    try:
        assert node.wait_for_log("active:", 90), f"node did not activate:\n{node.text()[-3000:]}"
        yield {"tmp": tmp, "domain": domain, "in": in_bag, "node": node, "ckpt": tiny_openpi}
    finally:
        node.stop()


def check_report(env, replay_bag, name, min_compared):
    ok, s = report(replay_bag, ReportOptions(out_dir=str(env["tmp"] / f"{name}_report"), min_cos=0.99999,
                                             max_abs=1e-4, quiet=True))
    assert ok, (s["failures"], env["node"].text()[-2000:])
    rows = s["per_chunk"]
    assert len(rows) >= min_compared, s["chunks"]
    assert all(r["cos_ref"] >= 0.99999 for r in rows)
    # the report rebuilt exactly what the node saw: same conversions, same noise, same prompt
    assert s["max_abs_engine_cpu"] <= 1e-6, s["max_abs_engine_cpu"]
    seqs = [r["sequence"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert (env["tmp"] / f"{name}_report" / "summary.json").is_file()
    return s


def test_lockstep_replay_matches_fp32_reference(env):
    out = env["tmp"] / "replay_lockstep"
    t0 = time.monotonic()
    rc, log = run(bag_cli("replay", env["in"], out, "--step", STEP), env["tmp"] / "replay_lockstep.log",
                  env["domain"])
    assert rc == 0, log + env["node"].text()[-2000:]
    replay_s = time.monotonic() - t0
    n_steps = int(BAG_S / STEP) - 1
    s = check_report(env, out, "lockstep", min_compared=n_steps)
    assert (env["tmp"] / "lockstep_report" / "trajectories.png").is_file()
    # the prompt change: chunks before half-time carry the first prompt, after it the second
    half = T0_NS + int(BAG_S / 2 * 1e9)
    for r in s["per_chunk"]:
        assert r["prompt"] == (PROMPTS[0] if r["stamp_ns"] < half else PROMPTS[1]), r
    assert s["latency"]["inference"]["count"] >= n_steps
    print(f"lockstep: replay {replay_s:.1f} s, {s['chunks']}, worst cos {s['min_cos_ref']:.9f}, "
          f"max |diff| {s['max_abs_ref']:.2e}, report {s['report_seconds']:.1f} s")


def test_realtime_replay(env):
    out = env["tmp"] / "replay_realtime"
    rc, log = run(bag_cli("replay", env["in"], out, "--mode", "realtime", "--step", STEP, "--duration", 1.0),
                  env["tmp"] / "replay_realtime.log", env["domain"])
    assert rc == 0, log + env["node"].text()[-2000:]
    # a chunk is clean when the node ticked between two sets: most of them at 20 Hz ticks / 10 Hz sets
    s = check_report(env, out, "realtime", min_compared=5)
    print(f"realtime: {s['chunks']}, worst cos {s['min_cos_ref']:.9f}")


def test_record_then_replay_the_recording(env):
    """record the node's inputs and chunks while a replay drives it, then replay that recording."""
    rec_bag = env["tmp"] / "recorded"
    rec = Proc(bag_cli("record", rec_bag), env["tmp"] / "record.log", env["domain"])
    try:
        assert rec.wait_for_log("Ctrl-C to stop", 30), rec.text()   # subscribed (the node's inputs + chunks)
        rc, log = run(bag_cli("replay", env["in"], env["tmp"] / "replay_for_record", "--step", STEP, "--max-steps", 30,
                               "--subscribers", 2),   # the node and the recorder: the recorder gets every set
                      env["tmp"] / "replay_for_record.log", env["domain"])
        assert rc == 0, log
    finally:
        assert rec.stop() == 0, rec.text()      # SIGINT: the normal way to end a recording, closes the bag
    assert "recorded" in rec.text() and "SIGINT" in rec.text(), rec.text()
    meta = (rec_bag / "metadata.yaml").read_text()
    assert "version: 9" in meta and "storage_identifier: mcap" in meta and "flash_rt_bag.node_params" in meta
    for topic in ("/camera/base/image_raw", "/camera/right_wrist/image_raw/compressed", "/joint_states",
                  "/flash_rt_node/action_chunk"):
        assert f"name: {topic}\n" in meta, meta
    out = env["tmp"] / "replay_recorded"
    rc, log = run(bag_cli("replay", rec_bag, out, "--step", STEP, "--max-steps", 10),
                  env["tmp"] / "replay_recorded.log", env["domain"])
    assert rc == 0, log + env["node"].text()[-2000:]
    assert "prompt -> " in log      # taken from the recorded chunks' prompt field
    check_report(env, out, "recorded", min_compared=5)


def test_bad_replays_are_refused_and_the_node_keeps_serving(env, tmp_path):
    wrong_joints = rewrite_bag(env["in"], tmp_path / "wrong_joints", rename_joint=("joint_3", "elbow"))
    no_camera = rewrite_bag(env["in"], tmp_path / "no_camera", drop={"/camera/left_wrist/image_raw"})
    cases = [
        (bag_cli("replay", wrong_joints, tmp_path / "o1"), "missing joints ['joint_3']"),
        (bag_cli("replay", no_camera, tmp_path / "o2"), "missing topic '/camera/left_wrist/image_raw'"),
        (bag_cli("replay", env["in"], tmp_path / "o3", "--node", "/nobody", "--discovery-timeout", "2"),
         "no service '/nobody/get_parameters'"),
        # waiting for a recorder that isn't running: says which topics lack subscribers, sends nothing
        # (the same timeout also bounds finding the node's parameter service: 2 s was too short on a loaded VM)
        (bag_cli("replay", env["in"], tmp_path / "o4", "--subscribers", "2", "--discovery-timeout", "8"),
         "(1 of 2 subscribers)"),
    ]
    for i, (cmd, needle) in enumerate(cases):
        rc, log = run(cmd, tmp_path / f"bad{i}.log", env["domain"], timeout=60)
        assert rc == 2 and needle in log and "flash-rt-bag replay: error:" in log, log
        assert not (tmp_path / f"o{i + 1}").exists()
    # a truncated bag: clear error, exit 2
    import shutil
    trunc = tmp_path / "trunc"
    shutil.copytree(env["in"], trunc)
    f = next(trunc.glob("*.mcap"))
    f.write_bytes(f.read_bytes()[:100_000])
    rc, log = run(bag_cli("replay", trunc, tmp_path / "o5"), tmp_path / "bad_trunc.log", env["domain"])
    assert rc == 2 and "truncated or corrupt" in log, log
    # and the node is still fine: a short replay still matches
    rc, log = run(bag_cli("replay", env["in"], tmp_path / "after", "--max-steps", "3"), tmp_path / "after.log",
                  env["domain"])
    assert rc == 0, log
    assert env["node"].alive()


def test_replay_of_an_rtc_node_reports_the_boundary_with_and_without(tmp_path, tiny_openpi):
    """A node with realtime_chunking, replayed in lockstep (its own domain and process): the report recomputes each
    chunk under the constraint the node wrote (engine bit-exact, cos vs the constrained FP32 reference), and its
    boundary section holds the jumps with RTC (the node's chunks) and without (the same chunks recomputed
    unconstrained). The switch lands in the frozen rows, so with RTC it does not jump."""
    domain = domain_for_module()
    in_bag = write_test_bag(tmp_path / "in", duration_s=1.2)
    node = Proc(node_cmd(tiny_openpi, f"noise_seed:={SEED}", f"control_rate_hz:={RATE}", "realtime_chunking:=true",
                         "camera_topics:=" + json.dumps(node_camera_topics())), tmp_path / "node.log", domain)
    try:
        assert node.wait_for_log("active:", 90), f"node did not activate:\n{node.text()[-3000:]}"
        out = tmp_path / "replay_rtc"
        rc, log = run(bag_cli("replay", in_bag, out, "--step", STEP), tmp_path / "replay.log", domain)
        assert rc == 0, log + node.text()[-2000:]
        ok, s = report(out, ReportOptions(out_dir=str(tmp_path / "report"), min_cos=0.99999, max_abs=1e-4,
                                          quiet=True))
        assert ok, (s["failures"], node.text()[-2000:])
        assert s["max_abs_engine_cpu"] <= 1e-6
        frozen = [r["rtc_frozen_rows"] for r in s["per_chunk"]]
        assert sum(1 for f in frozen if f) >= len(frozen) // 2, frozen
        b = s["boundary"]
        print(f"frozen rows {frozen}; boundary with RTC {b['compared_with_rtc']}; without "
              f"{b['compared_without_rtc']}")
        assert b["realtime_chunking"] and b["compared_with_rtc"]["count"] >= 3
        assert b["compared_with_rtc"]["position_jump"]["p50"] < 0.1 * b["compared_without_rtc"]["position_jump"]["p50"]
    finally:
        node.stop()
