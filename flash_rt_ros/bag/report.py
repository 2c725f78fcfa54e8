"""Compare the chunks of a replay with the FP32 reference, chunk by chunk; latency histogram; plot; JSON.

    flash-rt-bag report REPLAY_BAG [--input-bag IN_BAG] [--out DIR] [--min-cos C] [--max-abs A]

For every **clean** chunk of the replay (see replay.py: a chunk stamped t_k, received after the replay published
set k and before it began step k+1) the report rebuilds the exact observation the node computed it from and recomputes it:

1. observation: the latest message of every input with bag log time <= t_k (ObservationCursor on the input
   bag: the same rule and code replay used to build set k; the message numbers are checked against what replay
   recorded for step k, so a different input bag is an error, not a silent mismatch);
2. the node's conversions: the node's own SlotWriter (image -> the model's 224x224 slot, per camera, with the
   node's image_interpolation / expected size) and JointStateMapper (joint names -> state order), writing into
   a CPU policy loaded with the node's own parameters (`flash_rt.load_model(..., hardware="cpu")`);
3. the chunk's prompt (ActionChunk.prompt) and noise `flash_rt.noise.seeded_noise(noise_seed, sequence)`;
4. `policy.step()` on CPU (the engine check: for a CPU node this must equal the node's chunk to float
   rounding, which proves steps 1-3 reproduce the node's inputs), then `ReferenceOracle.chunk(host)`: the FP32
   eager reference run on exactly the bytes that step consumed.

Per chunk the JSON holds cos / max |diff| of node vs reference (the verdict), node vs CPU engine and CPU engine
vs reference (diagnostics). Cosine is float64 over the whole chunk (flash_rt's precision-ladder metric).

Verdict (exit status 1 when any fails): every compared chunk has cos >= --min-cos (default 0.99999 for a
hardware=cpu node, else 0.995, the FP8 rung of the ladder) and, if given, max |diff| <= --max-abs; at least
--min-chunks chunks were compared. Chunks that are not clean count for latency only (reported, not failed).

Latency: ActionChunk.inference_time (seconds inside the engine) of every chunk -> p50/p90/p99/max and a histogram
with fixed edges (LATENCY_EDGES_MS); for clean chunks also "observation -> chunk": replay publishing set k to
receiving its first chunk (waiting for the node's next tick included).

Boundary (the hand-off between chunks, issue 15): a receding-horizon controller executes chunk k until chunk k+1
arrives, then switches. For every pair of consecutive compared chunks the report samples both at the switch time
s = stamp_{k+1} + L_{k+1} (L: the chunk's observation -> receipt latency in the replay, else its inference time;
rows are dt apart from their chunk's stamp, linear between rows) and records the jump in position (the action
value) and in velocity (the row-to-row slope / dt), max over action dims, in the model's action units (for a
velocity-action policy the "position" is the commanded velocity). The JSON's "boundary" holds them for the node's
chunks and, for a node that ran with realtime_chunking, for the switch into each compared chunk from the node's
previous published chunk, with the chunk as published and recomputed without the constraint (same observation,
prompt and noise, prefix cleared): with and without RTC from one replay. RTC chunks are compared
with the FP32 reference under the same constraint: the report writes the prefix the node wrote (the previous
published chunk from this chunk's row 0 on) with the frozen rows the node's chunk shows (its leading rows that
equal that prefix), so engine and reference see the same inpainting target.

Outputs in --out (default <REPLAY_BAG>_report/): summary.json, trajectories.png (plot.py), and the verdict on
stdout.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from flash_rt_ros.bag import bagio
from flash_rt_ros.bag.replay import REPLAY_KEY, STEPS_TOPIC
from flash_rt_ros.bag.topics import NODE_NAME_KEY, NODE_PARAMS_KEY, NodeConfig, params_from_files
from flash_rt_ros.bag.types import ACTION_CHUNK, COMPRESSED_IMAGE, JOINT_STATE, STRING, BagError

LATENCY_EDGES_MS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, math.inf)
DEFAULT_MIN_COS_CPU = 0.99999
DEFAULT_MIN_COS_GPU = 0.995


@dataclasses.dataclass
class ReportOptions:
    out_dir: str = ""
    input_bag: str = ""
    checkpoint: str = ""
    params_files: tuple = ()
    overrides: tuple = ()
    min_cos: float | None = None
    max_abs: float | None = None
    min_chunks: int = 1
    reference_device: str = "cpu"
    threads: int = 0                       # torch intra-op threads; 0 = the node's cpu_threads, else torch's default
    engine_check: bool = True
    latency_only: bool = False
    plot: bool = True
    quiet: bool = False


@dataclasses.dataclass
class Chunk:
    """One received ActionChunk (from the replay bag)."""
    recv_ns: int
    stamp_ns: int
    sequence: int
    prompt: str
    inference_s: float
    dt: float
    joint_names: list
    actions: np.ndarray          # [horizon, action_dim] float32
    step: int | None = None      # replay step whose stamp it carries
    clean: bool = False


# ---------------------------------------------------------------------------------------------------------
# pure parts (unit-tested without a node or a model)
# ---------------------------------------------------------------------------------------------------------
def sample_chunk(actions: np.ndarray, row: float) -> tuple[np.ndarray, np.ndarray]:
    """(value, slope per row) of a chunk at a fractional row, linear between rows; clamped to the chunk (a chunk
    that ran out holds its last row)."""
    a = np.asarray(actions, np.float64)
    h = a.shape[0]
    if h == 1:
        return a[0], np.zeros_like(a[0])
    r = min(max(row, 0.0), h - 1.0)
    i = min(int(math.floor(r)), h - 2)
    f = r - i
    return a[i] * (1 - f) + a[i + 1] * f, a[i + 1] - a[i]


def boundary_jump(prev, nxt) -> dict:
    """The jump at the switch from chunk `prev` to chunk `nxt`, each (stamp_ns, dt_s, actions [H, D], latency_ns)
    (module docstring)."""
    (s0, dt0, a0, _), (s1, dt1, a1, lat1) = prev, nxt
    sw = s1 + lat1
    r0, r1 = (sw - s0) / (dt0 * 1e9), lat1 / (dt1 * 1e9)
    p0, v0 = sample_chunk(a0, r0)
    p1, v1 = sample_chunk(a1, r1)
    dp, dv = np.abs(p1 - p0), np.abs(v1 / dt1 - v0 / dt0)
    return {"stamp_ns": int(s1), "row_prev": float(r0), "row_next": float(r1),
            "prev_exhausted": bool(r0 > a0.shape[0] - 1), "position_jump": float(dp.max()),
            "velocity_jump": float(dv.max()), "position_jump_dim": int(dp.argmax())}


def boundary_jumps(series) -> list[dict]:
    """series: (stamp_ns, dt_s, actions [H, D], latency_ns) per chunk in execution order: the jump at every switch."""
    return [boundary_jump(a, b) for a, b in zip(series, series[1:])]


def jump_summary(jumps: list[dict]) -> dict:
    out: dict = {"count": len(jumps)}
    for key in ("position_jump", "velocity_jump"):
        v = np.asarray([j[key] for j in jumps], np.float64)
        out[key] = ({} if not v.size else {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
                                           "p90": float(np.percentile(v, 90)), "max": float(v.max())})
    return out


def rtc_constraint(prev: np.ndarray, prev_stamp_ns: int, actions: np.ndarray, stamp_ns: int, dt: float,
                   rtol: float = 1e-4, atol: float = 1e-5) -> tuple[int, int] | None:
    """The node's real-time-chunking constraint for a chunk, recovered from the bag: (shift, frozen), where the
    prefix was prev[shift:] (node.py _write_prefix: rows are dt apart from each chunk's stamp) and `frozen` the
    leading rows of `actions` equal to it (the engine reproduces frozen rows exactly; free rows practically never
    are). None when the node had no prefix to write (shift outside the previous chunk)."""
    shift = int(round((stamp_ns - prev_stamp_ns) / (dt * 1e9)))
    h = prev.shape[0]
    if shift < 0 or shift >= h:
        return None
    tail = np.asarray(prev[shift:], np.float64)
    a = np.asarray(actions, np.float64)
    scale = max(float(np.abs(tail).max()), 1.0)
    n = 0
    while n < tail.shape[0] and np.allclose(a[n], tail[n], rtol=rtol, atol=atol * scale):
        n += 1
    return shift, n


def cosine64(a, b) -> float:
    """flash_rt/metrics.py's cosine, restated: the ROS package imports only flash_rt's API (test_contract)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if np.size(a) else 0.0


def attribute(chunks: list[Chunk], steps: list[dict]) -> None:
    """Mark each chunk's step and whether it is clean: its stamp is step k's stamp, and it was received after
    replay published set k and before replay began step k+1 (the last step has no k+1). The first condition
    keeps out chunks computed before this replay (a node still holding the same set from an earlier replay of
    the same bag); the second any chunk that may have seen part of set k+1."""
    by_stamp = {}
    ordered = sorted(steps, key=lambda s: s["k"])
    for i, s in enumerate(ordered):
        nxt = ordered[i + 1]["begin_ns"] if i + 1 < len(ordered) else None
        by_stamp[int(s["stamp_ns"])] = (int(s["k"]), int(s.get("published_ns") or s["begin_ns"]), nxt)
    for c in chunks:
        hit = by_stamp.get(c.stamp_ns)
        if hit is None:
            c.step, c.clean = None, False
            continue
        c.step = hit[0]
        c.clean = c.recv_ns >= hit[1] and (hit[2] is None or c.recv_ns < hit[2])


def observation_latency_ms(clean: list[Chunk], steps: list[dict]) -> list[float]:
    """Per step: replay published set k -> the first clean chunk of step k arrived (ms)."""
    pub = {s["k"]: s.get("published_ns") for s in steps}
    first: dict[int, int] = {}
    for c in clean:
        if c.step is not None and pub.get(c.step):
            first[c.step] = min(first.get(c.step, c.recv_ns), c.recv_ns)
    return [(t - pub[k]) * 1e-6 for k, t in sorted(first.items())]


def latency_summary(values_ms) -> dict:
    v = np.asarray(list(values_ms), np.float64)
    hist = []
    for lo, hi in zip(LATENCY_EDGES_MS[:-1], LATENCY_EDGES_MS[1:]):
        n = int(((v >= lo) & (v < hi)).sum()) if v.size else 0
        hist.append({"lo_ms": lo, "hi_ms": None if math.isinf(hi) else hi, "count": n})
    if not v.size:
        return {"count": 0, "histogram": hist}
    return {"count": int(v.size), "mean_ms": float(v.mean()), "p50_ms": float(np.percentile(v, 50)),
            "p90_ms": float(np.percentile(v, 90)), "p99_ms": float(np.percentile(v, 99)),
            "max_ms": float(v.max()), "min_ms": float(v.min()), "histogram": hist}


def histogram_text(lat: dict, width: int = 40) -> str:
    rows = [h for h in lat.get("histogram", []) if h["count"]]
    if not rows:
        return "  (no chunks)"
    top = max(h["count"] for h in rows)
    out = []
    for h in rows:
        hi = "inf" if h["hi_ms"] is None else f"{h['hi_ms']:g}"
        bar = "#" * max(1, round(width * h["count"] / top))
        out.append(f"  [{h['lo_ms']:>6g}, {hi:>6}) ms {h['count']:>6}  {bar}")
    return "\n".join(out)


def verdict(per_chunk: list[dict], min_cos: float, max_abs_limit: float | None, min_chunks: int,
            latency_only: bool) -> tuple[bool, list[str]]:
    """(passed, reasons it failed)."""
    fails = []
    if latency_only:
        return True, fails
    if len(per_chunk) < min_chunks:
        fails.append(f"only {len(per_chunk)} chunk(s) could be compared with the reference (need >= {min_chunks})")
    bad_cos = [c for c in per_chunk if not (c["cos_ref"] >= min_cos)]
    if bad_cos:
        w = min(bad_cos, key=lambda c: c["cos_ref"])
        fails.append(f"{len(bad_cos)} chunk(s) below cos {min_cos:g} vs the FP32 reference (worst: sequence "
                     f"{w['sequence']}, cos {w['cos_ref']:.7f}, max |diff| {w['max_abs_ref']:.3g})")
    if max_abs_limit is not None:
        bad_abs = [c for c in per_chunk if not (c["max_abs_ref"] <= max_abs_limit)]
        if bad_abs:
            w = max(bad_abs, key=lambda c: c["max_abs_ref"])
            fails.append(f"{len(bad_abs)} chunk(s) above max |diff| {max_abs_limit:g} (worst: sequence "
                         f"{w['sequence']}, {w['max_abs_ref']:.3g})")
    return not fails, fails


# ---------------------------------------------------------------------------------------------------------
# reading the replay bag
# ---------------------------------------------------------------------------------------------------------
def read_chunks(bag: bagio.Bag, topic: str) -> list[Chunk]:
    if not bag.has(topic):
        raise BagError(f"bag {str(bag.path)!r} has no chunk topic {topic!r}; it has {bag.describe_topics()}")
    if bag.msgtype(topic) != ACTION_CHUNK:
        raise BagError(f"{topic!r} in {str(bag.path)!r} has type {bag.msgtype(topic)!r}, expected {ACTION_CHUNK}")
    out = []
    for _, t, raw in bag.messages([topic]):
        m = bag.deserialize(raw, ACTION_CHUNK)
        h, d = int(m.horizon), int(m.action_dim)
        data = np.asarray(m.data, np.float32)
        if data.size != h * d:
            raise BagError(f"chunk sequence {m.sequence} has {data.size} values for horizon {h} x action_dim {d}")
        out.append(Chunk(t, m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec, int(m.sequence),
                         str(m.prompt), float(m.inference_time), float(m.dt), list(m.joint_names),
                         data.reshape(h, d)))
    return out


def read_steps(bag: bagio.Bag) -> list[dict]:
    if not bag.has(STEPS_TOPIC):
        return []
    if bag.msgtype(STEPS_TOPIC) != STRING:
        raise BagError(f"{STEPS_TOPIC!r} has type {bag.msgtype(STEPS_TOPIC)!r}, expected {STRING}")
    steps = []
    for _, _, raw in bag.messages([STEPS_TOPIC]):
        try:
            steps.append(json.loads(bag.deserialize(raw, STRING).data))
        except ValueError as e:
            raise BagError(f"a {STEPS_TOPIC} record is not JSON: {e}") from None
    return sorted(steps, key=lambda s: s["k"])


def node_config(bag: bagio.Bag, opts: ReportOptions) -> NodeConfig:
    cd = bag.custom_data
    node = cd.get(NODE_NAME_KEY) or "/flash_rt_node"
    if opts.params_files:
        values = params_from_files(opts.params_files, opts.overrides, node)
        return NodeConfig.from_values(values, node, {"checkpoint": opts.checkpoint} if opts.checkpoint else None)
    if NODE_PARAMS_KEY not in cd:
        raise BagError(f"bag {str(bag.path)!r} does not hold the node's parameters (custom_data "
                       f"{NODE_PARAMS_KEY}); pass the node's --params-file (and -p overrides)")
    over = params_from_files((), opts.overrides, node)
    if opts.checkpoint:
        over["checkpoint"] = opts.checkpoint
    return NodeConfig.from_json(cd[NODE_PARAMS_KEY], node, over)


# ---------------------------------------------------------------------------------------------------------
# recomputation
# ---------------------------------------------------------------------------------------------------------
class Recomputer:
    """A CPU policy + the node's converters + the FP32 oracle, fed one observation set at a time."""

    def __init__(self, cfg: NodeConfig, bag: bagio.Bag, bindings, reference_device: str = "cpu", threads: int = 0):
        from flash_rt_ros.conversions import SlotWriter
        from flash_rt_ros.policy_loader import load_policy
        from flash_rt_ros.joint_state import JointStateMapper

        p = cfg.params
        self.p, self.bag, self.bindings = p, bag, bindings
        try:
            self.policy = load_policy(p, hardware="cpu")
        except Exception as e:  # noqa: BLE001 - any load failure is a usage error here
            raise BagError(f"cannot load the node's checkpoint {p.checkpoint!r} on the CPU for the reference "
                           f"({type(e).__name__}: {e}); pass --checkpoint if it lives elsewhere here") from None
        if threads > 0:  # after loading: the node's cpu_threads applies to the load, the report's wins here
            import torch
            torch.set_num_threads(threads)
        pol = self.policy
        self.reference_device = reference_device
        self.cams = {b.input.index: SlotWriter(pol.image_slot(b.input.slot), p.image_interpolation,
                                               p.expected_size, p.min_image_side)
                     for b in bindings if b.input.is_camera}
        for b in bindings:  # as the node's warm-up leaves them: camera slots black and masked until a frame comes
            if b.input.is_camera:
                pol.image_slot(b.input.slot).fill(0)
                pol.set_image_mask(b.input.slot, False)
        self.state = np.zeros(len(p.state_joint_names), np.float32)
        self.joints = JointStateMapper(p.state_joint_names, self.state)
        self.horizon, self.model_dim = pol.action_horizon, pol.config.action_dim
        self._last_refs = None

    def write_observation(self, msgs) -> None:
        from flash_rt.errors import InputError

        refs = [m.ref() for m in msgs]
        if refs == self._last_refs:
            return
        for b, m in zip(self.bindings, msgs):
            msg = self.bag.deserialize(m.raw, b.input.msgtype)
            try:
                if b.input.msgtype == JOINT_STATE:
                    self.joints.write(list(msg.name), msg.position)
                elif b.input.msgtype == COMPRESSED_IMAGE:
                    self.cams[b.input.index].write_compressed(msg)
                else:
                    self.cams[b.input.index].write_image(msg)
            except InputError as e:
                raise BagError(f"input bag, {m.topic} message #{m.index}: {e}") from None
            if b.input.is_camera:
                self.policy.set_image_mask(b.input.slot, True)
        self.policy.write_state(self.state)
        self._last_refs = refs

    def compute(self, prompt: str, sequence: int, seed: int, engine: bool,
                reference: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
        from flash_rt.noise import seeded_noise

        if self.policy.prompt != prompt:
            self.policy.set_prompt(prompt)
        noise = seeded_noise(seed, sequence, self.horizon, self.model_dim)
        out = None
        if engine:
            out = self.policy.step(noise).copy()
        else:
            self.policy.prepare_inputs(noise)
        return out, (self.policy.reference_chunk(self.reference_device) if reference else None)

    def constrain(self, prefix: np.ndarray | None, frozen: int) -> None:
        """Real-time chunking: the prefix the node wrote for this chunk (None clears)."""
        self.policy.write_action_prefix(prefix, frozen)


# ---------------------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------------------
def report(replay_bag, opts: ReportOptions) -> tuple[bool, dict]:
    t_start = time.monotonic()
    replay_bag = bagio.bag_dir(replay_bag)
    out_dir = Path(opts.out_dir) if opts.out_dir else replay_bag.with_name(replay_bag.name + "_report")
    with bagio.Bag(replay_bag) as rb:
        cfg = node_config(rb, opts)
        p = cfg.params
        try:
            rinfo = json.loads(rb.custom_data.get(REPLAY_KEY) or "{}")
        except ValueError:
            rinfo = {}
        chunks = read_chunks(rb, cfg.chunk_topic)
        steps = read_steps(rb)
    if not chunks:
        raise BagError(f"bag {str(replay_bag)!r} holds no chunks on {cfg.chunk_topic!r} (did the node publish? see "
                       "the replay's output)")
    attribute(chunks, steps)
    clean = [c for c in chunks if c.clean]
    hw = p.hardware
    min_cos = opts.min_cos if opts.min_cos is not None else (DEFAULT_MIN_COS_CPU if hw == "cpu"
                                                            else DEFAULT_MIN_COS_GPU)
    why_none = ""
    if rinfo.get("verbatim"):
        why_none = "verbatim replay: chunks are not attributable to observations"
    elif not steps:
        why_none = f"no {STEPS_TOPIC} records (not a flash-rt-bag replay output)"
    elif p.noise_seed < 0:
        why_none = "the node ran without noise_seed"
    per_chunk: list[dict] = []
    arrays: list[tuple[np.ndarray, np.ndarray]] = []
    if not opts.latency_only and not why_none and clean:
        per_chunk, arrays = _compare(cfg, opts, rinfo, clean, {s["k"]: s for s in steps}, replay_bag, chunks)
    elif not opts.latency_only and not why_none:
        why_none = "no clean chunk (every chunk's observation may have mixed two steps)"

    obs_lat = observation_latency_ms(clean, steps)
    ok, fails = verdict(per_chunk, min_cos, opts.max_abs, opts.min_chunks, opts.latency_only)
    if why_none and not opts.latency_only:
        ok, fails = False, [f"nothing was compared with the reference: {why_none} (pass --latency-only for a "
                            "latency-only report)"]
    worst = min(per_chunk, key=lambda c: c["cos_ref"]) if per_chunk else None
    summary = {
        "replay_bag": str(replay_bag),
        "input_bag": rinfo.get("input_bag") if not opts.input_bag else str(opts.input_bag),
        "node": cfg.node, "hardware": hw, "checkpoint": p.checkpoint, "noise_seed": p.noise_seed,
        "mode": ("realtime-verbatim" if rinfo.get("verbatim") else rinfo.get("mode", "recording")),
        "chunks": {"received": len(chunks), "clean": len(clean), "compared": len(per_chunk),
                   "unattributed": sum(c.step is None for c in chunks),
                   "not_clean": sum(c.step is not None and not c.clean for c in chunks)},
        "thresholds": {"min_cos": min_cos, "max_abs": opts.max_abs, "min_chunks": opts.min_chunks,
                       "latency_only": opts.latency_only},
        "worst": None if worst is None else {k: worst[k] for k in ("sequence", "stamp_ns", "cos_ref", "max_abs_ref")},
        "min_cos_ref": None if not per_chunk else min(c["cos_ref"] for c in per_chunk),
        "max_abs_ref": None if not per_chunk else max(c["max_abs_ref"] for c in per_chunk),
        "min_cos_engine_cpu": (None if not per_chunk or per_chunk[0].get("cos_engine_cpu") is None
                               else min(c["cos_engine_cpu"] for c in per_chunk)),
        "max_abs_engine_cpu": (None if not per_chunk or per_chunk[0].get("max_abs_engine_cpu") is None
                               else max(c["max_abs_engine_cpu"] for c in per_chunk)),
        "prompts": sorted({c.prompt for c in chunks}),
        "latency": {"inference": latency_summary(c.inference_s * 1e3 for c in chunks),
                    "observation_to_chunk": latency_summary(obs_lat)},
        "passed": ok, "failures": fails,
        "per_chunk": per_chunk,
        "report_seconds": None,
    }
    summary["boundary"] = boundary_section(p.realtime_chunking, chunks, steps, per_chunk, arrays)
    out_dir.mkdir(parents=True, exist_ok=True)
    if opts.plot and per_chunk:
        from flash_rt_ros.bag.plot import plot_trajectories
        plot_trajectories(out_dir / "trajectories.png", plot_series(per_chunk, arrays, chunks, summary["boundary"]),
                          title=f"{cfg.node} ({hw}) vs FP32 reference: {len(per_chunk)} chunks, worst cos "
                                f"{summary['min_cos_ref']:.7f}, max |diff| {summary['max_abs_ref']:.2e}",
                          min_cos=min_cos)
        summary["plot"] = str(out_dir / "trajectories.png")
    summary["report_seconds"] = round(time.monotonic() - t_start, 3)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=_json_default))
    summary["summary_json"] = str(out_dir / "summary.json")
    return ok, summary


def _json_default(x):
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    raise TypeError(type(x).__name__)


def chunk_latency_ns(c: Chunk, published: dict) -> int:
    """Observation -> receipt in the replay (clean chunks: replay published the set, the chunk came back), else the
    chunk's inference time."""
    pub = published.get(c.step) if c.step is not None else None
    return int(c.recv_ns - pub) if pub and c.clean else int(c.inference_s * 1e9)


def boundary_section(rtc: bool, chunks: list[Chunk], steps: list[dict], per_chunk: list[dict],
                     arrays: list) -> dict:
    """summary.json "boundary": the jumps of the node's chunks (all received, in sequence order) and, for an RTC node,
    of the compared chunks recomputed without the constraint (with the node's compared chunks beside them)."""
    published = {s["k"]: s.get("published_ns") for s in steps}
    ordered = sorted(chunks, key=lambda c: c.sequence)
    node = boundary_jumps([(c.stamp_ns, c.dt, c.actions, chunk_latency_ns(c, published)) for c in ordered])
    out = {"realtime_chunking": bool(rtc), "node": jump_summary(node), "per_boundary": node}
    if rtc and per_chunk and len(arrays[0]) > 2:
        # the switch INTO each compared chunk, from the chunk that was executing (the node's previous published
        # one): as the node computed it (with RTC) and as it comes out unconstrained (without)
        item = {c.sequence: (c.stamp_ns, c.dt, c.actions, chunk_latency_ns(c, published)) for c in ordered}
        prev_of = {b.sequence: a.sequence for a, b in zip(ordered, ordered[1:])}
        with_rtc, without = [], []
        for i in sorted(range(len(per_chunk)), key=lambda i: per_chunk[i]["sequence"]):
            seq = per_chunk[i]["sequence"]
            if seq not in prev_of:
                continue
            prev, cur = item[prev_of[seq]], item[seq]
            with_rtc.append(boundary_jump(prev, cur))
            without.append(boundary_jump(prev, (cur[0], cur[1], arrays[i][2], cur[3])))
        out.update(compared_with_rtc=jump_summary(with_rtc), compared_without_rtc=jump_summary(without),
                   per_boundary_compared=[{"stamp_ns": a["stamp_ns"], "with_rtc": a, "without_rtc": b}
                                          for a, b in zip(with_rtc, without)])
    return out


def _compare(cfg: NodeConfig, opts: ReportOptions, rinfo: dict, clean: list[Chunk], steps: dict,
             replay_bag: Path, chunks: list[Chunk] | None = None) -> tuple[list[dict], list]:
    input_bag = opts.input_bag or rinfo.get("input_bag")
    if not input_bag:
        raise BagError("the replay bag does not name its input bag; pass --input-bag")
    remaps = bagio.parse_remaps(rinfo.get("remaps") or ())
    out, arrays = [], []
    with bagio.Bag(input_bag) as ib:
        bindings = bagio.check_inputs(ib, cfg, remaps, check_content=False)
        rec = Recomputer(cfg, ib, bindings, opts.reference_device, opts.threads or cfg.params.cpu_threads)
        cursor = bagio.ObservationCursor(ib, bindings)
        seed = cfg.params.noise_seed
        rtc = cfg.params.realtime_chunking
        ordered = sorted(chunks or clean, key=lambda c: c.sequence)
        prev_of = {b.sequence: a for a, b in zip(ordered, ordered[1:])}   # the node's previous published chunk
        for c in sorted(clean, key=lambda c: (c.step, c.sequence)):
            msgs = cursor.at(int(steps[c.step].get("t_ns", c.stamp_ns)))
            want = steps[c.step]["inputs"]
            if msgs is None or [m.ref() for m in msgs] != want:
                raise BagError(f"input bag {str(ib.path)!r} does not match the replay {str(replay_bag)!r}: step "
                               f"{c.step} used {want}, the bag gives "
                               f"{None if msgs is None else [m.ref() for m in msgs]} (pass the bag that was replayed)")
            if list(c.actions.shape) != [rec.horizon, rec.policy.action_dim]:
                raise BagError(f"chunk sequence {c.sequence} is {c.actions.shape[0]}x{c.actions.shape[1]} but the "
                               f"checkpoint gives {rec.horizon}x{rec.policy.action_dim}: wrong checkpoint/params?")
            rec.write_observation(msgs)
            plain = None
            if rtc:
                prev = prev_of.get(c.sequence)
                con = None if prev is None else rtc_constraint(prev.actions, prev.stamp_ns, c.actions, c.stamp_ns,
                                                               c.dt)
                rec.constrain(None, 0)
                plain, _ = rec.compute(c.prompt, c.sequence, seed, True, reference=False)   # without RTC
                if con is not None and con[1] == 0:
                    con = None   # the node freezes >= 1 row whenever it writes a prefix (latency > 0): it had none
                if con is not None:
                    rec.constrain(prev.actions[con[0]:], con[1])
            engine, ref = rec.compute(c.prompt, c.sequence, seed, opts.engine_check)
            row = {"sequence": c.sequence, "step": c.step, "stamp_ns": c.stamp_ns, "recv_ns": c.recv_ns,
                   "prompt": c.prompt, "inference_ms": c.inference_s * 1e3, "dt": c.dt,
                   "cos_ref": cosine64(c.actions, ref), "max_abs_ref": max_abs(c.actions, ref),
                   "cos_engine_cpu": None, "max_abs_engine_cpu": None, "cos_engine_cpu_vs_ref": None}
            if engine is not None:
                row.update(cos_engine_cpu=cosine64(c.actions, engine), max_abs_engine_cpu=max_abs(c.actions, engine),
                           cos_engine_cpu_vs_ref=cosine64(engine, ref))
            if rtc:
                row["rtc_frozen_rows"] = None if con is None else con[1]
            out.append(row)
            arrays.append((c.actions, ref) if plain is None else (c.actions, ref, plain))
            if not opts.quiet and len(out) % 25 == 0:
                print(f"flash-rt-bag report: {len(out)}/{len(clean)} chunks compared", file=sys.stderr, flush=True)
    return out, arrays


def plot_series(per_chunk: list[dict], arrays: list, chunks: list[Chunk], boundary: dict | None = None) -> dict:
    """What plot.plot_trajectories draws: per compared chunk its time (s from the first), row spacing, node and
    reference arrays, cosine and prompt; and the boundary jumps (time of the switch, position jump) of the node's
    chunks -- with and without RTC when the report recomputed both."""
    t0 = min(c["stamp_ns"] for c in per_chunk)
    names = next((c.joint_names for c in chunks if c.joint_names), None)
    out = {"t": [(c["stamp_ns"] - t0) * 1e-9 for c in per_chunk], "dt": [c["dt"] for c in per_chunk],
           "node": [a[0] for a in arrays], "reference": [a[1] for a in arrays],
           "cos": [c["cos_ref"] for c in per_chunk], "prompts": [c["prompt"] for c in per_chunk],
           "joint_names": names}
    if boundary:
        if boundary.get("per_boundary_compared"):
            pts = boundary["per_boundary_compared"]
            out["boundary"] = {"t": [(b["stamp_ns"] - t0) * 1e-9 for b in pts],
                               "series": {"with RTC": [b["with_rtc"]["position_jump"] for b in pts],
                                          "without RTC (recomputed)": [b["without_rtc"]["position_jump"]
                                                                       for b in pts]}}
        elif boundary.get("per_boundary"):
            pts = [b for b in boundary["per_boundary"] if b["stamp_ns"] >= t0]
            label = "node (RTC)" if boundary.get("realtime_chunking") else "node (no RTC)"
            out["boundary"] = {"t": [(b["stamp_ns"] - t0) * 1e-9 for b in pts],
                               "series": {label: [b["position_jump"] for b in pts]}}
    return out


def format_summary(s: dict) -> str:
    ch = s["chunks"]
    what = "recording" if s["mode"] == "recording" else f"{s['mode']} replay"
    lines = [f"node {s['node']} ({s['hardware']}), {what}: {ch['received']} chunks received, "
             f"{ch['clean']} clean, {ch['compared']} compared with the FP32 reference"]
    if s["min_cos_ref"] is not None:
        lines.append(f"  vs reference : worst cos {s['min_cos_ref']:.8f}, max |diff| {s['max_abs_ref']:.3g} "
                     f"(threshold cos >= {s['thresholds']['min_cos']:g}"
                     + (f", max |diff| <= {s['thresholds']['max_abs']:g}" if s['thresholds']['max_abs'] is not None
                        else "") + ")")
    if s["min_cos_engine_cpu"] is not None:
        lines.append(f"  vs CPU engine: worst cos {s['min_cos_engine_cpu']:.8f}, max |diff| "
                     f"{s['max_abs_engine_cpu']:.3g}")
    inf = s["latency"]["inference"]
    if inf["count"]:
        lines.append(f"  inference    : p50 {inf['p50_ms']:.2f} ms, p90 {inf['p90_ms']:.2f}, p99 {inf['p99_ms']:.2f}, "
                     f"max {inf['max_ms']:.2f} ({inf['count']} chunks)")
        lines.append(histogram_text(inf))
    o = s["latency"]["observation_to_chunk"]
    if o["count"]:
        lines.append(f"  obs -> chunk : p50 {o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f}, max {o['max_ms']:.1f}")
    b = s.get("boundary") or {}
    for label, key in (("node", "node"), ("with RTC", "compared_with_rtc"), ("without RTC", "compared_without_rtc")):
        j = b.get(key)
        if j and j["count"]:
            lines.append(f"  boundary {label:<11}: position jump p50 {j['position_jump']['p50']:.3g}, max "
                         f"{j['position_jump']['max']:.3g}; velocity jump p50 {j['velocity_jump']['p50']:.3g}, max "
                         f"{j['velocity_jump']['max']:.3g} ({j['count']} switches)")
    lines.append(f"  summary: {s.get('summary_json', '')}" + (f", plot: {s['plot']}" if s.get("plot") else ""))
    lines.append("PASS" if s["passed"] else "FAIL: " + "; ".join(s["failures"]))
    return "\n".join(lines)
