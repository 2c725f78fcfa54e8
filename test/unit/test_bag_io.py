"""flash_rt_ros.bag without a ROS graph: bag writing/reading, header stamps on raw CDR, node parameters and topic
names, observation sets, prompt events, and the bad-bag errors (missing topics, unknown types, truncated files,
wrong joint names ...), through the functions and through `flash-rt-bag check` (exit status 2)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from flash_rt_ros.bag import bagio, cli
from flash_rt_ros.bag.synthetic import (DEFAULT_CAMERAS, PROMPT_TOPIC, PROMPTS, T0_NS, node_camera_topics,
                                        rewrite_bag, write_test_bag)
from flash_rt_ros.bag.topics import (NodeConfig, params_from_files, parse_overrides, resolve,
                                     split_node_name)
from flash_rt_ros.bag.types import (ACTION_CHUNK, COMPRESSED_IMAGE, IMAGE, JOINT_STATE, STRING, BagError,
                                    header_stamp_ns, typestore, with_header_stamp)

REPO = Path(__file__).resolve().parents[2]
CPU_YAML = REPO / "config" / "pi05_cpu.yaml"


def cfg_for(ckpt="/nonexistent/ckpt", **over) -> NodeConfig:
    values = params_from_files([CPU_YAML], [f"checkpoint:={ckpt}"])
    values["camera_topics"] = node_camera_topics()
    values.update(over)
    return NodeConfig.from_values(values)


@pytest.fixture(scope="module")
def bag_path(tmp_path_factory):
    return write_test_bag(tmp_path_factory.mktemp("bag") / "in", duration_s=1.0)


def write_bag(path, messages, store=None):
    """messages: [(topic, msgtype, log_ns, msg)] (msg already a rosbags object) -> an MCAP v9 bag."""
    store = store or typestore()
    with bagio.open_writer(path) as w:
        conns = {}
        for topic, mt, t, msg in messages:
            if topic not in conns:
                conns[topic] = bagio.add_connection(w, topic, mt, store)
            w.write(conns[topic], t, store.serialize_cdr(msg, mt))
    return path


def copy_without(src: Path, dst: Path, drop_topics=(), rename=None, transform=None):
    return rewrite_bag(src, dst, drop=drop_topics, rename=rename, transform=transform)


# ---------------------------------------------------------------------------------------------------------
# writing / reading
# ---------------------------------------------------------------------------------------------------------
def test_synthetic_bag_layout(bag_path):
    meta = (bag_path / "metadata.yaml").read_text()
    assert "version: 9" in meta and "storage_identifier: mcap" in meta and "RIHS01_" in meta
    with bagio.Bag(bag_path) as b:
        t = b.topics
        assert t["/camera/base/image_raw"] == (IMAGE, 15)
        assert t["/camera/left_wrist/image_raw"] == (IMAGE, 15)
        assert t["/camera/right_wrist/image_raw/compressed"] == (COMPRESSED_IMAGE, 10)
        assert t["/joint_states"] == (JOINT_STATE, 50)
        assert t[PROMPT_TOPIC] == (STRING, 2)
        sizes = set()
        for topic, _, raw in b.messages(["/camera/base/image_raw", "/camera/left_wrist/image_raw"]):
            m = b.deserialize(raw, IMAGE)
            sizes.add((m.width, m.height, m.encoding))
        assert sizes == {(640, 480, "rgb8"), (320, 240, "bgr8")}
        # log times are in order, header stamps a little older than log times
        last = 0
        for topic, t_ns, raw in b.messages():
            assert t_ns >= last
            last = t_ns
            if topic != PROMPT_TOPIC:
                assert 0 < t_ns - header_stamp_ns(raw) < 20_000_000


def test_action_chunk_hash_matches_rosidl():
    store = typestore()
    share = Path(sys.prefix) / "share" / "flash_rt_ros" / "msg" / "ActionChunk.json"
    if not share.is_file():
        pytest.skip("interfaces not built into this venv")
    desc = json.loads(share.read_text())
    assert store.hash_rihs01(ACTION_CHUNK) == desc["type_hashes"][0]["hash_string"]


def test_custom_data_roundtrip(tmp_path):
    ts = typestore()
    with bagio.open_writer(tmp_path / "b", {"k": "v", "json": json.dumps({"a": [1, 2]})}) as w:
        c = bagio.add_connection(w, "/s", STRING, ts)
        w.write(c, 5, ts.serialize_cdr(ts.types[STRING](data="x"), STRING))
    with bagio.Bag(tmp_path / "b") as b:
        assert b.custom_data["k"] == "v" and json.loads(b.custom_data["json"]) == {"a": [1, 2]}
    with pytest.raises(BagError, match="exists already"):
        with bagio.open_writer(tmp_path / "b"):
            pass


@pytest.mark.parametrize("msgtype", [IMAGE, COMPRESSED_IMAGE, JOINT_STATE])
@pytest.mark.parametrize("little", [True, False])
def test_header_stamp_patch(msgtype, little):
    ts = typestore()
    T = ts.types
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=17, nanosec=123456789), frame_id="cam")
    msg = {IMAGE: lambda: T[IMAGE](header=hdr, height=2, width=3, encoding="rgb8", is_bigendian=0, step=9,
                                   data=np.arange(18, dtype=np.uint8)),
           COMPRESSED_IMAGE: lambda: T[COMPRESSED_IMAGE](header=hdr, format="jpeg", data=np.arange(5, dtype=np.uint8)),
           JOINT_STATE: lambda: T[JOINT_STATE](header=hdr, name=["a", "b"], position=np.array([1.0, 2.0]),
                                               velocity=np.zeros(0), effort=np.zeros(0))}[msgtype]()
    raw = bytes(ts.serialize_cdr(msg, msgtype, little_endian=little))
    assert header_stamp_ns(raw) == 17 * 10**9 + 123456789
    new = with_header_stamp(raw, 1_700_000_001_250_000_000)
    assert len(new) == len(raw) and header_stamp_ns(new) == 1_700_000_001_250_000_000
    back = ts.deserialize_cdr(bytes(new), msgtype)
    assert (back.header.stamp.sec, back.header.stamp.nanosec) == (1_700_000_001, 250_000_000)
    assert back.header.frame_id == "cam"
    # everything after the stamp is untouched
    assert bytes(new[12:]) == raw[12:]
    with pytest.raises(BagError, match="not plain CDR"):
        header_stamp_ns(b"\x00\x07\x00\x00" + raw[4:])


# ---------------------------------------------------------------------------------------------------------
# names and parameters
# ---------------------------------------------------------------------------------------------------------
def test_resolve_and_node_names():
    assert resolve("camera/x", "/", "n") == "/camera/x"
    assert resolve("camera/x", "/robot1", "n") == "/robot1/camera/x"
    assert resolve("/abs", "/robot1", "n") == "/abs"
    assert resolve("~/action_chunk", "/robot1", "flash_rt_node") == "/robot1/flash_rt_node/action_chunk"
    assert resolve("~/action_chunk", "/", "flash_rt_node") == "/flash_rt_node/action_chunk"
    assert split_node_name("/robot1/flash_rt_node") == ("/robot1", "flash_rt_node")
    assert split_node_name("flash_rt_node") == ("/", "flash_rt_node")
    with pytest.raises(BagError):
        split_node_name("/robot1/")


def test_params_from_files_and_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    control_rate_hz: 5.0\n    noise_seed: 1\n"
                 "other_node:\n  ros__parameters:\n    noise_seed: 99\n"
                 "/robot1/flash_rt_node:\n  ros__parameters:\n    noise_seed: 4\n")
    v = params_from_files([CPU_YAML, f], ["checkpoint:=/m", "camera_topics:=[a, b/compressed]", "prompt:=do it"],
                          node="/robot1/flash_rt_node")
    assert v["control_rate_hz"] == 5.0 and v["noise_seed"] == 4 and v["checkpoint"] == "/m"
    assert v["camera_topics"] == ["a", "b/compressed"] and v["prompt"] == "do it"
    assert params_from_files([f])["noise_seed"] == 1  # /flash_rt_node: only the /** block
    with pytest.raises(BagError, match="name:=value"):
        parse_overrides(["noise_seed=3"])
    with pytest.raises(BagError, match="cannot read parameter file"):
        params_from_files([tmp_path / "missing.yaml"])
    (tmp_path / "bad.yaml").write_text("a: [unclosed")
    with pytest.raises(BagError, match="not valid YAML"):
        params_from_files([tmp_path / "bad.yaml"])


def test_node_config_inputs():
    cfg = cfg_for(camera_topics=["cam/a", "cam/b/compressed"], camera_slots=[2, 0])
    ins = cfg.inputs
    assert [(i.topic, i.msgtype, i.slot) for i in ins] == [
        ("/cam/a", IMAGE, 2), ("/cam/b/compressed", COMPRESSED_IMAGE, 0), ("/joint_states", JOINT_STATE, -1)]
    cfg2 = NodeConfig.from_values(dict(cfg.values, image_transport="compressed"), "/r1/flash_rt_node")
    assert [i.topic for i in cfg2.inputs] == ["/r1/cam/a/compressed", "/r1/cam/b/compressed", "/r1/joint_states"]
    assert cfg2.chunk_topic == "/r1/flash_rt_node/action_chunk"
    assert NodeConfig.from_json(cfg.to_json()).values == cfg.values
    with pytest.raises(BagError, match="noise_seed"):
        cfg_for(noise_seed=-5)


# ---------------------------------------------------------------------------------------------------------
# observation sets, steps, prompts
# ---------------------------------------------------------------------------------------------------------
def test_observation_cursor_is_latest_by_log_time(bag_path):
    cfg = cfg_for()
    with bagio.Bag(bag_path) as b:
        binds = bagio.check_inputs(b, cfg)
        # brute force: every message of every input
        allmsgs = {bd.bag_topic: [(t, raw) for _, t, raw in b.messages([bd.bag_topic])] for bd in binds}
        cur = bagio.ObservationCursor(b, binds)
        t0 = cur.first_complete_time()
        assert t0 == max(v[0][0] for v in allmsgs.values())
        times = bagio.step_times(t0, b.end_time - 1, 70_000_000)
        assert times[0] == t0 and all(y - x == 70_000_000 for x, y in zip(times, times[1:]))
        for t in times:
            got = cur.at(t)
            for bd, m in zip(binds, got):
                msgs = allmsgs[bd.bag_topic]
                idx = max(i for i, (tt, _) in enumerate(msgs) if tt <= t)
                assert (m.index, m.log_ns, m.raw) == (idx, msgs[idx][0], bytes(msgs[idx][1]))
                assert m.stamp_ns == header_stamp_ns(m.raw)
        with pytest.raises(ValueError, match="non-decreasing"):
            cur.at(times[0])
    with pytest.raises(BagError, match="step must be > 0"):
        bagio.step_times(0, 10, 0)
    assert bagio.step_times(0, 10, 3, max_steps=2) == [0, 3]


def test_prompt_events(bag_path, tmp_path):
    with bagio.Bag(bag_path) as b:
        ev = bagio.prompt_events(b, PROMPT_TOPIC, "/flash_rt_node/action_chunk")
    assert [p for _, p in ev] == list(PROMPTS) and ev[0][0] == T0_NS
    # from recorded chunks when there is no prompt topic: changes only, at their observation stamp
    ts = typestore()
    T = ts.types

    def chunk(sec, seq, prompt):
        hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=0), frame_id="")
        return T[ACTION_CHUNK](header=hdr, sequence=seq, joint_names=["a"], horizon=1, action_dim=1, dt=0.1,
                               data=np.zeros(1, np.float32), inference_time=0.01, prompt=prompt)
    p = write_bag(tmp_path / "chunks", [("/flash_rt_node/action_chunk", ACTION_CHUNK, 10 + i, chunk(s, i, pr))
                                         for i, (s, pr) in enumerate([(1, "a"), (2, "a"), (3, "b"), (4, "b")])])
    with bagio.Bag(p) as b:
        assert bagio.prompt_events(b, PROMPT_TOPIC, "/flash_rt_node/action_chunk") == [(10**9, "a"), (3 * 10**9, "b")]


# ---------------------------------------------------------------------------------------------------------
# bad bags -> clear errors
# ---------------------------------------------------------------------------------------------------------
def test_good_bag_checks(bag_path, capsys):
    with bagio.Bag(bag_path) as b:
        binds = bagio.check_inputs(b, cfg_for())
    assert [x.bag_topic for x in binds] == [c.topic for c in DEFAULT_CAMERAS] + ["/joint_states"]
    rc = cli.main(["check", str(bag_path), "--params-file", str(CPU_YAML), "-p", "checkpoint:=/x", "-p",
                   "camera_topics:=" + json.dumps(node_camera_topics()), "--all"])
    assert rc == 0 and "OK:" in capsys.readouterr().out


def test_missing_topic(bag_path, tmp_path):
    bad = copy_without(bag_path, tmp_path / "b", drop_topics={"/camera/left_wrist/image_raw"})
    with bagio.Bag(bad) as b, pytest.raises(BagError) as e:
        bagio.check_inputs(b, cfg_for())
    msg = str(e.value)
    assert "missing topic '/camera/left_wrist/image_raw'" in msg and "camera_topics[1]" in msg
    assert "Topics in the bag:" in msg and "--remap" in msg
    # the same bag works once the names are mapped
    ren = copy_without(bag_path, tmp_path / "r", rename={"/camera/left_wrist/image_raw": "/robot/wrist_cam"})
    with bagio.Bag(ren) as b:
        bagio.check_inputs(b, cfg_for(), bagio.parse_remaps(["/robot/wrist_cam:=/camera/left_wrist/image_raw"]))
    with pytest.raises(BagError, match="absolute"):
        bagio.parse_remaps(["robot/wrist_cam:=/x"])


def test_unknown_and_wrong_types(tmp_path):
    from rosbags.typesys import get_types_from_msg

    store = typestore()
    store.register(get_types_from_msg("uint32 width\nuint32 height\nuint8[] pixels", "acme_msgs/msg/Frame"))
    T = store.types
    frame = T["acme_msgs/msg/Frame"](width=2, height=2, pixels=np.zeros(12, np.uint8))
    msgs = [("/camera/base/image_raw", "acme_msgs/msg/Frame", 1, frame),
            ("/camera/left_wrist/image_raw", STRING, 1, T[STRING](data="not an image"))]
    p = write_bag(tmp_path / "b", msgs, store)
    with bagio.Bag(p) as b, pytest.raises(BagError) as e:
        bagio.check_inputs(b, cfg_for())
    msg = str(e.value)
    assert "'/camera/base/image_raw' has type 'acme_msgs/msg/Frame'" in msg and "unknown or unsupported" in msg
    assert "'/camera/left_wrist/image_raw' has type 'std_msgs/msg/String'" in msg
    assert "missing topic '/joint_states'" in msg
    # Image where the node expects CompressedImage (a /compressed topic)
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="")
    img = T[IMAGE](header=hdr, height=1, width=1, encoding="rgb8", is_bigendian=0, step=3,
                   data=np.zeros(3, np.uint8))
    p2 = write_bag(tmp_path / "c", [("/camera/right_wrist/image_raw/compressed", IMAGE, 1, img)])
    with bagio.Bag(p2) as b, pytest.raises(BagError, match="subscribes .* as sensor_msgs/msg/CompressedImage"):
        bagio.check_inputs(b, cfg_for())


def test_truncated_and_not_a_bag(bag_path, tmp_path, capsys):
    bad = tmp_path / "trunc"
    shutil.copytree(bag_path, bad)
    mcap = next(bad.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BagError) as e:
        with bagio.Bag(bad):
            pass
    assert "truncated or corrupt" in str(e.value) and str(bad) in str(e.value)
    rc = cli.main(["check", str(bad), "--params-file", str(CPU_YAML), "-p", "checkpoint:=/x"])
    err = capsys.readouterr().err
    assert rc == 2 and "flash-rt-bag check: error:" in err and "truncated" in err

    with pytest.raises(BagError, match="does not exist"):
        bagio.Bag(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 bag"):
        bagio.Bag(tmp_path / "empty")
    # the .mcap file itself is accepted
    with bagio.Bag(next(bag_path.glob("*.mcap"))) as b:
        assert b.has("/joint_states")


def test_wrong_joint_names(bag_path, tmp_path, capsys):
    def rename(topic, msg):
        if topic == "/joint_states":
            msg.name = [("elbow" if n == "joint_3" else n) for n in msg.name]
        return msg
    bad = copy_without(bag_path, tmp_path / "b", transform=rename)
    with bagio.Bag(bad) as b, pytest.raises(BagError) as e:
        bagio.check_inputs(b, cfg_for())
    msg = str(e.value)
    assert "'/joint_states'" in msg and "missing joints ['joint_3']" in msg and "elbow" in msg
    rc = cli.main(["check", str(bad), "--params-file", str(CPU_YAML), "-p", "checkpoint:=/x",
                   "-p", "camera_topics:=" + json.dumps(node_camera_topics())])
    assert rc == 2 and "missing joints ['joint_3']" in capsys.readouterr().err


def test_bad_frames(bag_path, tmp_path):
    def corrupt(topic, msg):
        if topic == "/camera/left_wrist/image_raw":
            msg.encoding = "yuv422"
        if topic == "/camera/right_wrist/image_raw/compressed":
            msg.data = msg.data[: len(msg.data) // 8]
        return msg
    bad = copy_without(bag_path, tmp_path / "b", transform=corrupt)
    with bagio.Bag(bad) as b, pytest.raises(BagError, match="unsupported image encoding 'yuv422'"):
        bagio.check_inputs(b, cfg_for())
    only_jpeg = copy_without(bag_path, tmp_path / "c", transform=lambda t, m: corrupt(t, m) if "compressed" in t else m)
    with bagio.Bag(only_jpeg) as b, pytest.raises(BagError, match="could not decode compressed image"):
        bagio.check_inputs(b, cfg_for())
    # a size the node is configured to reject
    with bagio.Bag(bag_path) as b, pytest.raises(BagError, match="does not match the configured 320x240"):
        bagio.check_inputs(b, cfg_for(expected_image_width=320, expected_image_height=240))


def test_info_and_check_need_params(bag_path, capsys):
    assert cli.main(["info", str(bag_path)]) == 0
    out = capsys.readouterr().out
    assert "/camera/right_wrist/image_raw/compressed" in out and "sensor_msgs/msg/CompressedImage" in out
    assert cli.main(["check", str(bag_path)]) == 2
    assert "--params-file" in capsys.readouterr().err
