"""The report without a ROS graph: attribution (clean / not clean / unattributed), latency histogram, verdict,
the plot, and report() end to end on a replay-shaped bag whose chunks were computed here with the CPU engine
on the observations replay would have published (the real node is exercised in test/ros/test_bag_replay.py)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from flash_rt_ros.bag import bagio, cli
from flash_rt_ros.bag.plot import executed_path, nice_ticks, plot_trajectories
from flash_rt_ros.bag.replay import REPLAY_KEY, STEPS_TOPIC
from flash_rt_ros.bag.report import (Chunk, ReportOptions, Recomputer, attribute, boundary_jumps, cosine64,
                                     histogram_text, jump_summary, latency_summary, observation_latency_ms, report,
                                     rtc_constraint, sample_chunk, verdict)
from flash_rt_ros.bag.synthetic import PROMPT_TOPIC, node_camera_topics, write_test_bag
from flash_rt_ros.bag.topics import NODE_NAME_KEY, NODE_PARAMS_KEY, NodeConfig, params_from_files
from flash_rt_ros.bag.types import ACTION_CHUNK, STRING, BagError, typestore

REPO = Path(__file__).resolve().parents[2]
CPU_YAML = REPO / "config" / "pi05_cpu.yaml"
WALL0 = 1_800_000_000_000_000_000
SEED = 11


def chunk(stamp, recv, seq=0, data=None):
    return Chunk(recv, stamp, seq, "p", 0.01, 0.1, ["a"], np.zeros((2, 1), np.float32) if data is None else data)


# ---------------------------------------------------------------------------------------------------------
# pure math
# ---------------------------------------------------------------------------------------------------------
def test_attribution_rule():
    steps = [{"k": 0, "stamp_ns": 100, "begin_ns": 1000, "published_ns": 1001},
             {"k": 1, "stamp_ns": 200, "begin_ns": 2000, "published_ns": 2002},
             {"k": 2, "stamp_ns": 300, "begin_ns": 3000, "published_ns": 3003}]
    cs = [chunk(100, 1500), chunk(100, 1999), chunk(100, 2000),   # clean, clean, began step 1 -> not clean
          chunk(200, 2500), chunk(200, 3500),                       # clean, not clean
          chunk(300, 9999),                                         # last step: always clean
          chunk(250, 2600),                                         # no such step -> unattributed
          chunk(300, 900)]                                          # before set 2 was published: a left-over
    attribute(cs, list(reversed(steps)))
    assert [(c.step, c.clean) for c in cs] == [(0, True), (0, True), (0, False), (1, True), (1, False),
                                               (2, True), (None, False), (2, False)]
    # observation -> first clean chunk, per step
    assert observation_latency_ms([c for c in cs if c.clean], steps) == pytest.approx([499e-6, 498e-6, 6996e-6])


def test_latency_and_verdict():
    lat = latency_summary([0.5, 1.5, 3, 30, 30, 31, 2500, 7000])
    assert lat["count"] == 8 and lat["max_ms"] == 7000 and lat["p50_ms"] == pytest.approx(30)
    counts = {(h["lo_ms"], h["hi_ms"]): h["count"] for h in lat["histogram"]}
    assert counts[(0.0, 1.0)] == 1 and counts[(1.0, 2.0)] == 1 and counts[(2.0, 5.0)] == 1
    assert counts[(20.0, 50.0)] == 3 and counts[(2000.0, 5000.0)] == 1 and counts[(5000.0, None)] == 1
    assert sum(counts.values()) == 8
    assert "[    20,     50) ms      3" in histogram_text(lat)
    assert latency_summary([])["count"] == 0

    rows = [{"sequence": i, "cos_ref": c, "max_abs_ref": a} for i, (c, a) in enumerate([(1.0, 0.0), (0.9999, 0.2)])]
    ok, why = verdict(rows, 0.99999, None, 1, False)
    assert not ok and "1 chunk(s) below cos 0.99999" in why[0] and "sequence 1" in why[0]
    assert verdict(rows, 0.999, None, 1, False) == (True, [])
    ok, why = verdict(rows, 0.999, 0.1, 1, False)
    assert not ok and "above max |diff| 0.1" in why[0]
    ok, why = verdict(rows, 0.999, None, 3, False)
    assert not ok and "only 2 chunk(s)" in why[0]
    assert verdict([{"sequence": 0, "cos_ref": float("nan"), "max_abs_ref": 0.0}], 0.9, None, 1, False)[0] is False
    assert verdict([], 0.9, None, 1, True) == (True, [])


def test_cosine_is_the_oracles():
    from flash_rt.models.pi05.oracle import cosine64 as oracle_cos
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((10, 7)).astype(np.float32), rng.standard_normal((10, 7)).astype(np.float32)
    assert cosine64(a, b) == oracle_cos(a, b)
    assert cosine64(a, a) == pytest.approx(1.0, abs=1e-15)


def test_plot(tmp_path):
    assert nice_ticks(0, 2.35, 8) == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert nice_ticks(-1.2, 1.3, 6) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    t, dt = [0.0, 0.25, 0.5], [0.1] * 3
    arr = [np.arange(10 * 2, dtype=np.float64).reshape(10, 2) + 100 * i for i in range(3)]
    ts, rows = executed_path(t, dt, arr)
    assert ts[:4] == pytest.approx([0.0, 0.1, 0.2, 0.25]) and rows[3, 0] == 100 and len(ts) == 3 + 3 + 10
    series = {"t": t, "dt": dt, "node": arr, "reference": [a + 1e-3 for a in arr], "cos": [1.0, 0.999999, 0.99],
              "prompts": ["a", "a", "b"], "joint_names": ["shoulder", "gripper"]}
    out = plot_trajectories(tmp_path / "p.png", series, title="t", min_cos=0.99999)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 1600 and img.shape[0] > 400
    assert (img < 200).any() and (img == 255).all(axis=2).mean() > 0.5   # drawn, mostly white


# ---------------------------------------------------------------------------------------------------------
# report() on a replay-shaped bag
# ---------------------------------------------------------------------------------------------------------
def node_cfg(ckpt, *extra) -> NodeConfig:
    v = params_from_files([CPU_YAML], [f"checkpoint:={ckpt}", f"noise_seed:={SEED}", *extra])
    v["camera_topics"] = node_camera_topics()
    return NodeConfig.from_values(v)


def fabricate_replay(input_bag, out, cfg: NodeConfig, n_steps=6, tamper=None, rtc_frozen=None):
    """What replay + a CPU node would leave behind: steps records and chunks computed on the observation sets.
    Plus one late (not clean) and one unattributable chunk, both with garbage data the report must not use.
    rtc_frozen: the node ran with realtime_chunking and froze this many rows (the prefix written as node.py does:
    the previous chunk from this stamp's row on)."""
    ts = typestore()
    T = ts.types
    chunks, steps = [], []
    with bagio.Bag(input_bag) as ib:
        binds = bagio.check_inputs(ib, cfg)
        rec = Recomputer(cfg, ib, binds, threads=1)
        cur = bagio.ObservationCursor(ib, binds)
        t0 = cur.first_complete_time()
        times = bagio.step_times(t0, ib.end_time - 1, int(cfg.params.period_s * 1e9), n_steps)
        events = bagio.prompt_events(ib, PROMPT_TOPIC, None)
        for k, t in enumerate(times):
            prompt = [p for tt, p in events if tt <= t][-1]
            msgs = cur.at(t)
            rec.write_observation(msgs)
            if rtc_frozen is not None and chunks:
                pt, _, _, _, prev = chunks[-1]
                shift = int(round((t - pt) / (cfg.params.dt * 1e9)))
                rec.constrain(prev[shift:], min(rtc_frozen, prev.shape[0] - shift))
            actions, _ = rec.compute(prompt, k, SEED, True)
            begin = WALL0 + k * 100_000_000
            steps.append({"k": k, "stamp_ns": t, "begin_ns": begin, "published_ns": begin + 1_000_000,
                          "prompt": prompt, "inputs": [m.ref() for m in msgs]})
            if tamper and k in tamper:
                actions = tamper[k](actions)
            chunks.append((t, k, begin + 40_000_000, rec.policy.prompt, actions))
    h, d = chunks[0][4].shape
    junk = np.full((h, d), 50.0, np.float32)
    chunks.append((times[1], 99, WALL0 + 2 * 100_000_000 + 1, "late", junk))     # after step 2 began: not clean
    chunks.append((times[0] - 1, 98, WALL0 + 1, "orphan", junk))                  # stamp of no step

    def msg(stamp, seq, prompt, a):
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                            nanosec=stamp % 10**9), frame_id="")
        return T[ACTION_CHUNK](header=hdr, sequence=seq, joint_names=list(cfg.params.action_joint_names),
                               horizon=h, action_dim=d, dt=cfg.params.dt, data=np.asarray(a, np.float32).ravel(),
                               inference_time=0.02 + 0.001 * seq, prompt=prompt)
    custom = {NODE_PARAMS_KEY: cfg.to_json(), NODE_NAME_KEY: cfg.node,
              REPLAY_KEY: json.dumps({"mode": "lockstep", "verbatim": False, "remaps": [],
                                      "input_bag": str(Path(input_bag).resolve())})}
    with bagio.open_writer(out, custom) as w:
        cc = bagio.add_connection(w, cfg.chunk_topic, ACTION_CHUNK, ts)
        sc = bagio.add_connection(w, STEPS_TOPIC, STRING, ts)
        for s in steps:
            w.write(sc, s["published_ns"], ts.serialize_cdr(T[STRING](data=json.dumps(s)), STRING))
        for stamp, seq, recv, prompt, a in sorted(chunks, key=lambda c: c[2]):
            w.write(cc, recv, ts.serialize_cdr(msg(stamp, seq, prompt, a), ACTION_CHUNK))
    return out, steps


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_openpi):
    d = tmp_path_factory.mktemp("report")
    inp = write_test_bag(d / "in", duration_s=1.2)
    return d, inp, node_cfg(tiny_openpi)


def test_report_passes_on_exact_chunks(setup, capsys):
    d, inp, cfg = setup
    rb, steps = fabricate_replay(inp, d / "replay_ok", cfg, n_steps=8)
    ok, s = report(rb, ReportOptions(out_dir=str(d / "out_ok"), min_cos=0.99999, max_abs=1e-4, quiet=True))
    assert ok, s["failures"]
    assert s["chunks"] == {"received": 10, "clean": 8, "compared": 8, "unattributed": 1, "not_clean": 1}
    assert s["min_cos_ref"] >= 0.99999 and s["max_abs_ref"] <= 1e-4
    assert s["max_abs_engine_cpu"] == 0.0          # same code, same threads: bit-exact reconstruction
    assert {c["prompt"] for c in s["per_chunk"]} == {"pick up the red block", "put the red block in the bin"}
    assert s["latency"]["inference"]["count"] == 10 and s["latency"]["observation_to_chunk"]["count"] == 8
    assert not s["boundary"]["realtime_chunking"] and s["boundary"]["node"]["count"] == 9
    assert "compared_without_rtc" not in s["boundary"]
    written = json.loads((d / "out_ok" / "summary.json").read_text())
    assert written["passed"] and len(written["per_chunk"]) == 8 and "node" not in written["per_chunk"][0]
    assert cv2.imread(str(d / "out_ok" / "trajectories.png")) is not None
    # the CLI: exit 0 and the verdict on stdout
    assert cli.main(["report", str(rb), "--out", str(d / "out_cli"), "--min-cos", "0.99999", "-q"]) == 0
    assert "PASS" in capsys.readouterr().out


def test_report_fails_on_a_bad_chunk(setup, capsys):
    d, inp, cfg = setup
    rb, _ = fabricate_replay(inp, d / "replay_bad", cfg, n_steps=4,
                             tamper={2: lambda a: a + np.float32(0.05) * np.sign(a)})
    ok, s = report(rb, ReportOptions(out_dir=str(d / "out_bad"), min_cos=0.99999, quiet=True, plot=False))
    assert not ok and s["chunks"]["compared"] == 4
    assert "1 chunk(s) below cos 0.99999" in s["failures"][0] and "sequence 2" in s["failures"][0]
    assert s["worst"]["sequence"] == 2
    assert cli.main(["report", str(rb), "--out", str(d / "out_bad_cli"), "--min-cos", "0.99999", "--no-plot"]) == 1
    assert "FAIL:" in capsys.readouterr().out
    # a looser threshold (the GPU rung) passes the same chunks; --max-abs catches them again
    assert cli.main(["report", str(rb), "--out", str(d / "o2"), "--min-cos", "0.99", "--no-plot", "-q"]) == 0
    assert cli.main(["report", str(rb), "--out", str(d / "o3"), "--min-cos", "0.99", "--max-abs", "1e-3",
                     "--no-plot", "-q"]) == 1


def test_report_input_errors(setup, capsys, tmp_path):
    d, inp, cfg = setup
    rb, _ = fabricate_replay(inp, d / "replay_err", cfg, n_steps=2)
    other = write_test_bag(tmp_path / "other", duration_s=1.2, joint_rate_hz=40.0)
    with pytest.raises(BagError, match="does not match the replay"):
        report(rb, ReportOptions(out_dir=str(tmp_path / "o"), input_bag=str(other), quiet=True))
    with pytest.raises(BagError, match="cannot load the node's checkpoint"):
        report(rb, ReportOptions(out_dir=str(tmp_path / "o"), checkpoint=str(tmp_path / "nope"), quiet=True))
    ok, s = report(rb, ReportOptions(out_dir=str(tmp_path / "o"), latency_only=True, quiet=True))
    assert ok and s["chunks"]["compared"] == 0
    assert cli.main(["report", str(inp)]) == 2                     # an input bag, not a replay
    assert "does not hold the node's parameters" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# the boundary metric (hand-off between chunks)
# ---------------------------------------------------------------------------------------------------------
def test_sample_chunk_and_boundary_jumps_by_hand():
    a = np.array([[0.0], [1.0], [3.0]])
    p, v = sample_chunk(a, 0.5)
    assert p[0] == 0.5 and v[0] == 1.0
    p, v = sample_chunk(a, 1.25)
    assert p[0] == 1.5 and v[0] == 2.0
    assert sample_chunk(a, 7.0)[0][0] == 3.0                    # ran out: holds the last row
    dt = 0.1
    k0 = np.array([[0.0], [1.0], [2.0], [3.0]])                  # slope 10 units/s
    k1 = np.array([[5.0], [5.0], [5.0], [5.0]])                  # jumps to 5 and stops
    # chunk 1 stamped one row later, arrives 50 ms after its observation: the switch is at row 1.5 of chunk 0
    j = boundary_jumps([(0, dt, k0, 0), (100_000_000, dt, k1, 50_000_000)])
    assert len(j) == 1 and j[0]["row_prev"] == pytest.approx(1.5) and j[0]["row_next"] == pytest.approx(0.5)
    assert j[0]["position_jump"] == pytest.approx(5.0 - 1.5) and j[0]["velocity_jump"] == pytest.approx(10.0)
    same = boundary_jumps([(0, dt, k0, 0), (100_000_000, dt, k0[[1, 2, 3, 3]], 50_000_000)])   # continues k0
    assert same[0]["position_jump"] == pytest.approx(0.0) and same[0]["velocity_jump"] == pytest.approx(0.0)
    s = jump_summary(j + same)
    assert s["count"] == 2 and s["position_jump"]["max"] == pytest.approx(3.5)


def test_rtc_constraint_is_recovered_from_the_chunks():
    rng = np.random.default_rng(1)
    prev = rng.standard_normal((10, 3))
    nxt = rng.standard_normal((10, 3))
    nxt[:3] = prev[2:5]                                          # shift 2, 3 frozen rows
    assert rtc_constraint(prev, 0, nxt, 200_000_000, 0.1) == (2, 3)
    assert rtc_constraint(prev, 0, nxt, 2_000_000_000, 0.1) is None     # nothing of the previous chunk left


def test_report_boundary_with_and_without_rtc(setup, tiny_openpi):
    """A node that ran with realtime_chunking: the report recomputes every chunk under the same constraint (the
    verdict vs the constrained FP32 reference passes), recovers the frozen rows, and reports the boundary jump of
    the same chunks without the constraint: with RTC the switch lands in the frozen rows, so it does not jump."""
    d, inp, _ = setup
    cfg = node_cfg(tiny_openpi, "realtime_chunking:=true")
    rb, _ = fabricate_replay(inp, d / "replay_rtc", cfg, n_steps=6, rtc_frozen=2)
    ok, s = report(rb, ReportOptions(out_dir=str(d / "out_rtc"), min_cos=0.99999, max_abs=1e-4, quiet=True))
    assert ok, s["failures"]
    assert s["max_abs_engine_cpu"] == 0.0
    assert [c["rtc_frozen_rows"] for c in s["per_chunk"]] == [None, 2, 2, 2, 2, 2]
    b = s["boundary"]
    assert b["realtime_chunking"] and b["compared_with_rtc"]["count"] == 5
    assert b["compared_with_rtc"]["position_jump"]["max"] < 1e-5
    assert b["compared_without_rtc"]["position_jump"]["p50"] > 1e-2
    written = json.loads((d / "out_rtc" / "summary.json").read_text())
    assert written["boundary"]["compared_without_rtc"]["count"] == 5
    assert cv2.imread(str(d / "out_rtc" / "trajectories.png")) is not None
