"""Record a flash_rt node's inputs and outputs to a rosbag2 MCAP bag (metadata version 9).

    flash-rt-bag record OUT_BAG [--node /flash_rt_node] [--duration S] [--max-chunks N] [--topic /extra ...]

The topics come from the running node's own parameters (its camera topics, joint-state topic and
~/action_chunk, resolved in its namespace; --trajectory adds ~/joint_trajectory), plus any --topic. With
--no-node (node not running yet, or another publisher) only the --topic list is recorded.

Messages are taken raw (`create_subscription(..., raw=True)`) and written byte for byte, with the receipt time
(wall clock, ns) as log time: no deserialize/serialize round trip, nothing changed. The node's own topics have
known types (Image / CompressedImage per camera_topics, JointState, ActionChunk) and are subscribed at once, the
inputs best effort (matches sensor-data and reliable publishers alike), the chunks reliable. An extra --topic's
type comes from the ROS graph (the tool waits up to --discovery-timeout for a publisher and fails, naming the
topic, when none shows up) and its QoS adapts to the publishers: reliable when all are, else best effort (what
`ros2 bag record` does). Definitions and RIHS01 hashes come from the rosbags typestore (ROS 2 Kilted +
flash_rt_ros/msg/ActionChunk from its .msg).

The node's parameters are stored as JSON in custom_data (key flash_rt_bag.node_params), so a later
`replay` / `report` knows the configuration the data was recorded with.

Stop: --duration, --max-chunks, --max-messages, or SIGINT / SIGTERM; every way closes the bag properly (MCAP
summary + metadata.yaml), so the result plays with `ros2 bag play` and reads with rosbags.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from flash_rt_ros.bag import bagio
from flash_rt_ros.bag.topics import NODE_NAME_KEY, NODE_PARAMS_KEY, NodeConfig
from flash_rt_ros.bag.types import ACTION_CHUNK, JOINT_TRAJECTORY, BagError, typestore


@dataclasses.dataclass
class RecordOptions:
    node: str = "/flash_rt_node"
    topics: tuple = ()
    no_node: bool = False
    trajectory: bool = False
    duration_s: float = 0.0
    max_chunks: int = 0
    max_messages: int = 0
    discovery_timeout_s: float = 10.0
    allow_network: bool = False
    quiet: bool = False


@dataclasses.dataclass
class RecordResult:
    counts: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    stopped_by: str = ""
    out: str = ""

    def line(self) -> str:
        per = ", ".join(f"{t}: {n}" for t, n in sorted(self.counts.items()))
        return (f"recorded {sum(self.counts.values())} messages in {self.seconds:.1f} s ({self.stopped_by}) -> "
                f"{self.out} [{per}]")


def _log(opts, text: str) -> None:
    if not opts.quiet:
        print(f"flash-rt-bag record: {text}", file=sys.stderr, flush=True)


def record(out_bag, opts: RecordOptions) -> RecordResult:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from flash_rt_ros.bag import rosutil
    from flash_rt_ros.bag.types import python_class

    BEST_EFFORT = ReliabilityPolicy.BEST_EFFORT

    rosutil.check_network_scope(opts.allow_network)
    out_bag = Path(out_bag)
    if out_bag.exists():
        raise BagError(f"output bag {str(out_bag)!r} exists already; choose a new path (bags are never overwritten)")
    for t in opts.topics:
        if not t.startswith("/"):
            raise BagError(f"--topic {t!r} must be an absolute topic name (starting with /)")
    res = RecordResult(out=str(out_bag))
    store = typestore()
    with rosutil.RosSession("flash_rt_bag_record") as ros:
        custom, topics = {}, list(opts.topics)
        chunk_topic = None
        types: dict[str, str] = {}      # known types: the node's own topics (no need to wait for publishers)
        qos: dict[str, object] = {}
        if not opts.no_node:
            values = rosutil.fetch_node_params(ros, opts.node, opts.discovery_timeout_s)
            cfg = NodeConfig.from_values(values, opts.node)
            custom = {NODE_PARAMS_KEY: cfg.to_json(), NODE_NAME_KEY: opts.node}
            chunk_topic = cfg.chunk_topic
            for i in cfg.inputs:        # sensors publish best effort (sensor-data QoS), replay reliable: match both
                types[i.topic], qos[i.topic] = i.msgtype, QoSProfile(depth=100, reliability=BEST_EFFORT)
            types[cfg.chunk_topic], qos[cfg.chunk_topic] = ACTION_CHUNK, QoSProfile(depth=100)
            if opts.trajectory:
                types[cfg.trajectory_topic] = JOINT_TRAJECTORY
                qos[cfg.trajectory_topic] = QoSProfile(depth=100)
            topics = list(types) + [t for t in topics if t not in types]
        if not topics:
            raise BagError("nothing to record: give --topic names (with --no-node) or a running node")

        def discovered() -> bool:
            graph = rosutil.topic_types(ros)
            for t in topics:
                if t not in types and graph.get(t):
                    types[t] = graph[t][0]
            return len(types) == len(topics)

        if not ros.spin_until(discovered, opts.discovery_timeout_s):
            missing = [t for t in topics if t not in types]
            raise BagError(f"no publisher on {missing} within {opts.discovery_timeout_s:g} s (start the sensors / "
                           "the node first, check ROS_DOMAIN_ID, or leave the topic out)")
        for t, mt in types.items():
            if mt not in store.fielddefs:
                raise BagError(f"topic {t!r} has type {mt!r}, which the bag typestore does not know (ROS 2 Kilted "
                               "types + flash_rt_ros); it can't be recorded")
            if t == chunk_topic and mt != ACTION_CHUNK:
                raise BagError(f"{t!r} has type {mt!r}, expected {ACTION_CHUNK}")

        with bagio.open_writer(out_bag, custom) as w:
            conns = {t: bagio.add_connection(w, t, mt, store) for t, mt in types.items()}
            counts = {t: 0 for t in topics}
            res.counts = counts
            subs = []

            def make_cb(topic):
                conn = conns[topic]

                def cb(raw: bytes) -> None:
                    w.write(conn, time.time_ns(), raw)
                    counts[topic] += 1
                return cb

            for t in topics:
                subs.append(ros.node.create_subscription(python_class(types[t]), t, make_cb(t),
                                                         qos.get(t) or rosutil.subscription_qos(ros, t), raw=True))
            _log(opts, f"recording {topics} -> {out_bag} (Ctrl-C to stop)")
            t0 = time.monotonic()
            try:
                while not ros.interrupted:
                    ros.executor.spin_once(timeout_sec=0.05)
                    if opts.duration_s > 0 and time.monotonic() - t0 >= opts.duration_s:
                        res.stopped_by = f"--duration {opts.duration_s:g}"
                        break
                    if opts.max_chunks > 0 and chunk_topic and counts.get(chunk_topic, 0) >= opts.max_chunks:
                        res.stopped_by = f"--max-chunks {opts.max_chunks}"
                        break
                    if opts.max_messages > 0 and sum(counts.values()) >= opts.max_messages:
                        res.stopped_by = f"--max-messages {opts.max_messages}"
                        break
            except KeyboardInterrupt:
                pass
            res.stopped_by = res.stopped_by or ros.interrupted or "interrupted"
            for s in subs:
                ros.node.destroy_subscription(s)
            res.seconds = time.monotonic() - t0
    _log(opts, res.line())
    return res
