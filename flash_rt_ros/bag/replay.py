"""Replay a bag's camera and joint topics into a running flash_rt node and collect the chunks it publishes.

    flash-rt-bag replay INPUT_BAG OUT_BAG [--node /flash_rt_node] [--mode lockstep|realtime] [--step S]

Why observation sets, and why re-stamping
-----------------------------------------
The node keeps the *latest* message of every input and, at each timer tick, computes a chunk from whatever
those are; the chunk's header.stamp is the *oldest* of their header stamps. From that one stamp nobody can tell
which message of the other inputs a chunk used, so a replay that just plays every message at its recorded time
(what `ros2 bag play` does) gives chunks that can't be recomputed exactly. Replay therefore publishes
**observation sets**: at step k (bag time t_k = t_0 + k * step, step = the node's control period by default) it
publishes, for every input, the latest message the bag had received at t_k, all with header.stamp rewritten
to t_k (a 12-byte patch of the CDR payload; pixels and joint positions are untouched). Then

* a chunk stamped t_k used set k for *every* input (its stamp is the minimum over inputs, and nothing newer
  than set k was published before set k+1), and
* a chunk stamped t_k that the replay received after publishing set k and before it began step k+1 is
  **clean**: no message of set k+1 can have reached the node before that chunk was computed (and it is not a
  left-over of an earlier replay of the same bag, whose last set may carry the same stamp). Only clean chunks are compared with the
  reference; report.py applies this rule from what replay records (the /flash_rt_bag/steps topic).

The rule for set k ("latest message by bag log time <= t_k", ObservationCursor) is the rule report uses to
rebuild each chunk's observation from the input bag, so the two never disagree.

Modes
-----
lockstep (default)  as fast as the node keeps up: publish set k, wait for a chunk stamped t_k, go on.
                    Sets are re-published every --retry seconds until the chunk comes (best-effort camera
                    QoS can drop a large frame); every step gives at least one clean chunk.
realtime            publish set k at t_0 + (t_k - t_0) / rate on the wall clock, never wait. Clean chunks
                    are compared; the others only count for latency.
realtime --verbatim every message exactly as recorded (original bytes and stamps) at its bag time, like
                    `ros2 bag play`: for latency and robustness runs; no chunk is attributable.

Prompt changes: a std_msgs/String on --prompt-topic (default /flash_rt_bag/prompt) at bag time t makes the
replay call the node's ~/set_prompt before it publishes the first set with t_k >= t (lockstep / realtime) or at
t (verbatim). A bag made by `record` has no prompt topic; then the prompts of its recorded ActionChunks are
used. Every chunk carries the prompt it was computed with, which is what report uses.

Output bag (MCAP, metadata v9):
* the node's ~/action_chunk as received (log time = receipt, wall clock);
* /flash_rt_bag/steps, std_msgs/String, one JSON object per step: k, t_ns (bag time of the set), stamp_ns (the
  header stamp published: t_ns, or 1 if t_ns is 0), begin_ns / published_ns (wall clock), prompt, and inputs =
  [bag topic, message index, log time, original stamp] per input;
* custom_data: the node's parameters (read from the running node), the node name, the input bag's path and
  these options.

The node must run with noise_seed >= 0 (chunk k then uses seeded_noise(seed, sequence)); replay refuses an
unseeded node unless --allow-unseeded (latency-only runs).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from flash_rt_ros.bag import bagio
from flash_rt_ros.bag.topics import NODE_NAME_KEY, NODE_PARAMS_KEY, NodeConfig
from flash_rt_ros.bag.types import ACTION_CHUNK, STRING, BagError, typestore, with_header_stamp

STEPS_TOPIC = "/flash_rt_bag/steps"
DEFAULT_PROMPT_TOPIC = "/flash_rt_bag/prompt"
REPLAY_KEY = "flash_rt_bag.replay"        # custom_data: JSON of the options + input bag path


@dataclasses.dataclass
class ReplayOptions:
    node: str = "/flash_rt_node"
    mode: str = "lockstep"                 # lockstep | realtime
    verbatim: bool = False                 # realtime only: publish every message as recorded
    rate: float = 1.0                      # realtime speed factor
    step_s: float = 0.0                    # 0 = the node's control period
    start_s: float = 0.0                   # skip this much of the bag (from the first complete set)
    duration_s: float = 0.0                # 0 = to the end
    max_steps: int = 0                     # 0 = no limit
    step_timeout_s: float = 30.0           # lockstep: give up when a step yields no chunk for this long
    retry_s: float = 0.0                   # lockstep: re-publish a set after this long (0 = 3 periods, >= 0.5 s)
    drain_s: float = 0.0                   # realtime: wait this long for late chunks (0 = 3 periods, >= 1 s)
    prompt_topic: str = DEFAULT_PROMPT_TOPIC
    remaps: tuple = ()
    allow_unseeded: bool = False
    allow_network: bool = False
    discovery_timeout_s: float = 15.0
    # matched subscriptions every input topic needs before the first set: 1 is the node; 2 when a recorder (or
    # another consumer) must see every replayed message too (a fixed settle time missed a recorder under CI load)
    min_subscribers: int = 1
    shm_profile: bool = True               # publish with a 32 MB SHM segment (rosutil.RosSession, fastdds.py)
    quiet: bool = False


@dataclasses.dataclass
class ReplayResult:
    steps: int = 0
    chunks: int = 0
    republished: int = 0
    prompts: int = 0
    seconds: float = 0.0
    out: str = ""

    def line(self) -> str:
        return (f"replayed {self.steps} steps in {self.seconds:.1f} s: {self.chunks} chunks received, "
                f"{self.republished} sets re-published, {self.prompts} prompt changes -> {self.out}")


def _log(opts: ReplayOptions, text: str) -> None:
    if not opts.quiet:
        print(f"flash-rt-bag replay: {text}", file=sys.stderr, flush=True)


def replay(input_bag, out_bag, opts: ReplayOptions) -> ReplayResult:
    from flash_rt_ros.bag import rosutil

    if opts.mode not in ("lockstep", "realtime"):
        raise BagError(f"--mode must be lockstep or realtime, got {opts.mode!r}")
    if opts.verbatim and opts.mode != "realtime":
        raise BagError("--verbatim needs --mode realtime")
    if opts.rate <= 0:
        raise BagError(f"--rate must be > 0, got {opts.rate:g}")
    rosutil.check_network_scope(opts.allow_network)
    remaps = bagio.parse_remaps(opts.remaps)
    out_bag = Path(out_bag)
    if out_bag.exists():
        raise BagError(f"output bag {str(out_bag)!r} exists already; choose a new path (bags are never overwritten)")

    with bagio.Bag(input_bag) as bag, rosutil.RosSession("flash_rt_bag_replay", opts.shm_profile) as ros:
        if ros.dds is not None:
            _log(opts, ros.dds.message + (" (--no-shm-profile: leave Fast DDS as it is)" if ros.dds.env else ""))
        values = rosutil.fetch_node_params(ros, opts.node, opts.discovery_timeout_s)
        cfg = NodeConfig.from_values(values, opts.node)
        p = cfg.params
        if p.noise_seed < 0 and not opts.allow_unseeded:
            raise BagError(f"node {opts.node} runs with noise_seed={p.noise_seed} (fresh noise): its chunks can't be "
                           "compared with the reference. Restart it with -p noise_seed:=<seed>, or pass "
                           "--allow-unseeded for a latency-only replay")
        state = rosutil.lifecycle_state(ros, opts.node, opts.discovery_timeout_s)
        if state != "active":
            raise BagError(f"node {opts.node} is {state}, not active: it publishes no chunks (activate it, or see "
                           "its log / /diagnostics for why configure failed)")
        bindings = bagio.check_inputs(bag, cfg, remaps)
        events = bagio.prompt_events(bag, opts.prompt_topic, cfg.chunk_topic)
        runner = _Runner(ros, bag, cfg, bindings, events, opts)
        runner.connect()
        custom = {NODE_PARAMS_KEY: cfg.to_json(), NODE_NAME_KEY: opts.node,
                  REPLAY_KEY: json.dumps({**dataclasses.asdict(opts), "remaps": list(opts.remaps),
                                          "input_bag": str(bag.path.resolve())})}
        with bagio.open_writer(out_bag, custom) as w:
            runner.attach_writer(w)
            t0 = time.monotonic()
            if opts.verbatim:
                runner.run_verbatim()
            else:
                runner.run_sets()
            runner.result.seconds = time.monotonic() - t0
        runner.result.out = str(out_bag)
        _log(opts, runner.result.line())
        return runner.result


class _Runner:
    def __init__(self, ros, bag, cfg: NodeConfig, bindings, events, opts: ReplayOptions):
        self.ros, self.bag, self.cfg, self.bindings, self.events, self.opts = ros, bag, cfg, bindings, events, opts
        self.period = cfg.params.period_s
        self.step_ns = int(round((opts.step_s or self.period) * 1e9))
        self.retry_s = opts.retry_s or max(0.5, 3 * self.period)
        self.drain_s = opts.drain_s or max(1.0, 3 * self.period)
        self.result = ReplayResult()
        self.store = typestore()
        self._chunk_recv: dict[int, int] = {}     # stamp -> receipt time (ns) of the last chunk with it
        self._writer = None
        self._prompt = None

    # -- ROS plumbing --------------------------------------------------------------------------------
    def connect(self) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from flash_rt_ros.bag.types import python_class
        from flash_rt_ros.msg import ActionChunk

        node, opts = self.ros.node, self.opts
        self.pubs = [node.create_publisher(python_class(b.input.msgtype), b.input.topic,
                                           QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
                     for b in self.bindings]
        self._chunk_sub = node.create_subscription(ActionChunk, self.cfg.chunk_topic, self._on_chunk,
                                                   QoSProfile(depth=100), raw=True)
        self._chunk_cls = ActionChunk
        need = max(1, opts.min_subscribers)
        ok = self.ros.spin_until(lambda: all(pub.get_subscription_count() >= need for pub in self.pubs)
                                 and self._chunk_sub.get_publisher_count() > 0, opts.discovery_timeout_s)
        if not ok:
            unmatched = [f"{b.input.topic} ({pub.get_subscription_count()} of {need} subscribers)"
                         for b, pub in zip(self.bindings, self.pubs) if pub.get_subscription_count() < need]
            if self._chunk_sub.get_publisher_count() == 0:
                unmatched.append(f"{self.cfg.chunk_topic} (no publisher)")
            raise BagError(f"node {opts.node} is not connected on {unmatched} after {opts.discovery_timeout_s:g} s "
                           "(same ROS_DOMAIN_ID? same namespace? a recorder counted in --subscribers running?)")
        # let discovery finish before the first set: other publishers (checked below) and other subscribers. A
        # recorder that must see every set is waited for explicitly (--subscribers 2): this settle alone once let
        # a recorder under CI load match after the last set and record no inputs
        self.ros.spin_for(1.0)
        others = [b.input.topic for b in self.bindings if self.ros.node.count_publishers(b.input.topic) > 1]
        if others:
            raise BagError(f"other nodes also publish {others}: stop the live sensors (or run the node in its own "
                           "ROS_DOMAIN_ID) before replaying, or the chunks mix live and recorded data")

    def attach_writer(self, w) -> None:
        self._writer = w
        self._conn_chunk = bagio.add_connection(w, self.cfg.chunk_topic, ACTION_CHUNK, self.store)
        self._conn_steps = bagio.add_connection(w, STEPS_TOPIC, STRING, self.store)

    def _on_chunk(self, raw: bytes) -> None:
        from rclpy.serialization import deserialize_message

        now = time.time_ns()
        msg = deserialize_message(raw, self._chunk_cls)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self._chunk_recv[stamp] = now
        self._writer.write(self._conn_chunk, now, raw)
        self.result.chunks += 1

    def _write_step(self, record: dict) -> None:
        from std_msgs.msg import String

        from rclpy.serialization import serialize_message
        self._writer.write(self._conn_steps, record["published_ns"],
                           serialize_message(String(data=json.dumps(record))))

    def _set_prompt(self, text: str) -> None:
        from flash_rt_ros.srv import SetPrompt

        res = self.ros.call(SetPrompt, f"{self.opts.node}/set_prompt", SetPrompt.Request(prompt=text),
                            self.opts.discovery_timeout_s, "changing the prompt")
        if not res.success:
            raise BagError(f"the node rejected the bag's prompt {text!r}: {res.message}")
        self._prompt = text
        self.result.prompts += 1
        _log(self.opts, f"prompt -> {text!r} ({res.setup_time * 1e3:.1f} ms)")

    def _due_prompt(self, t_ns: int) -> str | None:
        due = None
        while self.events and self.events[0][0] <= t_ns:
            due = self.events.pop(0)[1]
        return due if due is not None and due != self._prompt else None

    # -- observation sets ----------------------------------------------------------------------------
    def run_sets(self) -> None:
        opts = self.opts
        cursor = bagio.ObservationCursor(self.bag, self.bindings)
        t_first = cursor.first_complete_time()
        if t_first is None:
            raise BagError(f"bag {str(self.bag.path)!r} never has a message on every input at the same time")
        t0 = t_first + int(opts.start_s * 1e9)
        end = self.bag.end_time - 1
        if opts.duration_s > 0:
            end = min(end, t0 + int(opts.duration_s * 1e9))
        if t0 > end:
            raise BagError(f"--start {opts.start_s:g} s is past the end of the bag")
        times = bagio.step_times(t0, end, self.step_ns, opts.max_steps or None)
        _log(opts, f"{len(times)} observation sets, every {self.step_ns * 1e-9:g} s of bag time, mode {opts.mode}")
        wall0 = time.monotonic()
        seen = [-1] * len(self.bindings)
        for k, t in enumerate(times):
            if opts.mode == "realtime":
                self.ros.spin_for(wall0 + (t - t0) * 1e-9 / opts.rate - time.monotonic())
            begin = time.time_ns()
            prompt = self._due_prompt(t)
            if prompt is not None:
                self._set_prompt(prompt)
            msgs = cursor.at(t)
            self._check_new(msgs, seen)
            stamp = max(t, 1)  # the node takes a zero stamp as "unset" and uses its receive time instead
            payloads = [with_header_stamp(m.raw, stamp) for m in msgs]
            self._publish(payloads)
            published = time.time_ns()
            self._write_step({"k": k, "t_ns": t, "stamp_ns": stamp, "begin_ns": begin, "published_ns": published,
                              "prompt": self._prompt, "inputs": [m.ref() for m in msgs]})
            self.result.steps += 1
            if opts.mode == "lockstep":
                self._await_chunk(stamp, published, payloads, k)
        if opts.mode == "realtime":
            self.ros.spin_for(self.drain_s)

    def _check_new(self, msgs, seen: list) -> None:
        """Convert every message that is new in this set the way the node will (its own SlotWriter /
        JointStateMapper): a frame the node would reject stops the replay here, naming it, instead of stalling."""
        for i, (b, m) in enumerate(zip(self.bindings, msgs)):
            if m.index != seen[i]:
                try:
                    bagio.check_message(self.bag, b, m.raw, self.cfg.params)
                except BagError as e:
                    raise BagError(f"message #{m.index} (bag time {m.log_ns}): {e}") from None
                seen[i] = m.index

    def _publish(self, payloads) -> None:
        for pub, data in zip(self.pubs, payloads):
            pub.publish(bytes(data))

    def _await_chunk(self, stamp: int, published_ns: int, payloads, k: int) -> int:
        """Until a chunk stamped `stamp` arrives after the set was published (report's clean rule)."""
        attempts, start = 1, time.monotonic()
        while True:
            if self.ros.spin_until(lambda: self._chunk_recv.get(stamp, 0) >= published_ns, self.retry_s):
                return attempts
            if time.monotonic() - start > self.opts.step_timeout_s:
                raise BagError(f"step {k}: the node published no chunk for this observation within "
                               f"{self.opts.step_timeout_s:g} s ({attempts} attempts; is it skipping ticks? see its "
                               "log or /diagnostics)")
            self._publish(payloads)
            attempts += 1
            self.result.republished += 1

    # -- verbatim ------------------------------------------------------------------------------------
    def run_verbatim(self) -> None:
        opts = self.opts
        pub_of = {b.bag_topic: pub for b, pub in zip(self.bindings, self.pubs)}
        start = self.bag.start_time + int(opts.start_s * 1e9)
        stop = start + int(opts.duration_s * 1e9) if opts.duration_s > 0 else None
        wall0 = time.monotonic()
        n = 0
        for topic, t, raw in self.bag.messages(list(pub_of), start=start, stop=stop):
            self.ros.spin_for(wall0 + (t - start) * 1e-9 / opts.rate - time.monotonic())
            prompt = self._due_prompt(t)
            if prompt is not None:
                self._set_prompt(prompt)
            pub_of[topic].publish(bytes(raw))
            n += 1
        self.result.steps = n
        self.ros.spin_for(self.drain_s)
