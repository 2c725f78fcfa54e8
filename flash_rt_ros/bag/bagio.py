"""Reading and writing rosbag2 bags with `rosbags`, with errors a user can act on, and input-bag validation.

* `Bag` opens a rosbag2 directory (or its .mcap/.db3 file) and turns rosbags' errors into BagError messages
  that say which bag and what to do (missing metadata.yaml, truncated MCAP, bags without type definitions ...).
* `check_inputs` checks an input bag against the node's parameters before anything is published: every input
  topic present, of the right type, non-empty; the first frame of every camera converts with the node's own
  SlotWriter and the first joint state maps with the node's own JointStateMapper (so "wrong joint names" reads
  exactly like the node's own log line).
* `ObservationCursor` streams the input topics in log-time order and answers "the latest message of every input
  received at or before time t" for increasing t. Replay builds what it publishes with it and report rebuilds
  what each chunk saw with it: one rule, one implementation.
* `open_writer` creates an MCAP bag, metadata version 9 (what `ros2 bag play` on Jazzy/Kilted reads).
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from flash_rt_ros.bag.types import (ACTION_CHUNK, COMPRESSED_IMAGE, IMAGE, JOINT_STATE, STRING, BagError,
                                    header_stamp_ns)

TRUNCATED_HINT = ("the file is truncated or corrupt (a recording that was killed before it closed the bag has no "
                  "MCAP summary; re-record, or re-index it with `mcap recover`)")


def bag_dir(path) -> Path:
    """A rosbag2 directory from a directory or the path of its storage file."""
    p = Path(path)
    if p.is_file() and p.suffix in (".mcap", ".db3") and (p.parent / "metadata.yaml").is_file():
        return p.parent
    if not p.exists():
        raise BagError(f"bag {str(p)!r} does not exist")
    if not p.is_dir() or not (p / "metadata.yaml").is_file():
        raise BagError(f"{str(p)!r} is not a rosbag2 bag: expected a directory with metadata.yaml and an .mcap "
                       "(or .db3) file")
    return p


class Bag:
    """A rosbag2 bag opened for reading. Use as a context manager."""

    def __init__(self, path):
        from rosbags.highlevel import AnyReader

        self.path = bag_dir(path)
        try:
            self._reader = AnyReader([self.path])
        except Exception as e:  # noqa: BLE001 - rosbags raises several types; all mean "unreadable"
            raise BagError(f"bag {str(self.path)!r} cannot be opened: {e}") from None

    def __enter__(self) -> "Bag":
        try:
            self._reader.open()
        except Exception as e:  # noqa: BLE001
            text = str(e)
            hint = TRUNCATED_HINT if ("magic" in text or "truncat" in text.lower() or "unexpected end" in
                                      text.lower() or isinstance(e, (EOFError, ValueError))) else ""
            if "no type definitions" in text:
                hint = "it was written without message definitions; re-record it with flash-rt-bag record"
            raise BagError(f"bag {str(self.path)!r} cannot be read: {text.rstrip('.')}"
                           + (f"; {hint}" if hint else "")) from None
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._reader.close()
        except Exception:  # noqa: BLE001 - closing a half-open reader
            pass

    # -- facts ---------------------------------------------------------------------------------------
    @property
    def topics(self) -> dict[str, tuple[str | None, int]]:
        """{topic: (msgtype, message count)}."""
        return {t: (info.msgtype, info.msgcount) for t, info in self._reader.topics.items()}

    def describe_topics(self) -> str:
        return ", ".join(f"{t} ({m}, {n})" for t, (m, n) in sorted(self.topics.items())) or "(none)"

    @property
    def custom_data(self) -> dict:
        out = {}
        for r in self._reader.readers:
            meta = getattr(getattr(r, "storage", r), "metadata", None)
            out.update(getattr(meta, "custom", None) or {})
        return out

    @property
    def start_time(self) -> int:
        return self._reader.start_time

    @property
    def end_time(self) -> int:
        return self._reader.end_time

    def has(self, topic: str) -> bool:
        return topic in self._reader.topics

    def msgtype(self, topic: str) -> str | None:
        info = self._reader.topics.get(topic)
        return None if info is None else info.msgtype

    def msgdef(self, topic: str) -> str:
        return self._reader.topics[topic].msgdef.data

    # -- messages ------------------------------------------------------------------------------------
    def messages(self, topics=None, start: int | None = None, stop: int | None = None):
        """Yield (topic, log time ns, raw CDR bytes) in log-time order, for `topics` (None = all)."""
        conns = []
        if topics is not None:
            for t in topics:
                info = self._reader.topics.get(t)
                if info is None:
                    raise BagError(f"bag {str(self.path)!r} has no topic {t!r}; it has {self.describe_topics()}")
                conns.extend(info.connections)
        it = self._reader.messages(connections=conns, start=start, stop=stop)
        while True:
            try:
                conn, t, raw = next(it)
            except StopIteration:
                return
            except BagError:
                raise
            except Exception as e:  # noqa: BLE001 - a broken chunk in the middle of the file
                raise BagError(f"bag {str(self.path)!r}: reading failed ({type(e).__name__}: {e}); "
                               f"{TRUNCATED_HINT}") from None
            yield conn.topic, t, raw

    def deserialize(self, raw, msgtype: str):
        try:
            return self._reader.deserialize(raw, msgtype)
        except Exception as e:  # noqa: BLE001
            raise BagError(f"bag {str(self.path)!r}: a {msgtype} message cannot be decoded: {e}") from None

    def first(self, topic: str):
        """(log time, raw) of the first message on `topic`, or None."""
        for _, t, raw in self.messages([topic]):
            return t, raw
        return None


# -------------------------------------------------------------------------------------------------------------
# input validation
# -------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InputBinding:
    """A node input (topics.InputTopic) and the bag topic that feeds it."""
    input: object       # topics.InputTopic
    bag_topic: str


def parse_remaps(items) -> dict[str, str]:
    """['/bag/topic:=/node/topic', ...] -> {node topic: bag topic}."""
    out = {}
    for item in items or ():
        src, sep, dst = str(item).partition(":=")
        if not sep or not src.startswith("/") or not dst.startswith("/"):
            raise BagError(f"remap {item!r} must be /bag/topic:=/node/topic (absolute names)")
        out[dst] = src
    return out


def check_inputs(bag: Bag, cfg, remaps: dict[str, str] | None = None, check_content: bool = True
                 ) -> list[InputBinding]:
    """Bind every node input to a bag topic and check the bag can feed it; BagError lists every problem."""
    remaps = remaps or {}
    problems, bindings = [], []
    p = cfg.params
    for inp in cfg.inputs:
        src = remaps.get(inp.topic, inp.topic)
        what = (f"camera_topics[{inp.index}] (slot {inp.slot})" if inp.is_camera
                else "joint_state_topic")
        mt = bag.msgtype(src)
        if mt is None:
            problems.append(f"missing topic {src!r} for the node's {what}")
            continue
        want = (IMAGE, COMPRESSED_IMAGE) if inp.is_camera else (JOINT_STATE,)
        if mt not in want:
            problems.append(f"topic {src!r} has type {mt!r}, which the node's {what} can't take (expected "
                            f"{inp.msgtype}); unknown or unsupported message type")
            continue
        if mt != inp.msgtype:
            problems.append(f"topic {src!r} is {mt} but the node subscribes {inp.topic!r} as {inp.msgtype} "
                            "(check image_transport / a '/compressed' suffix in camera_topics)")
            continue
        if bag.topics[src][1] == 0:
            problems.append(f"topic {src!r} has no messages")
            continue
        bindings.append(InputBinding(inp, src))
    if problems:
        raise BagError(f"bag {str(bag.path)!r} can't feed node {cfg.node}: " + "; ".join(problems)
                       + f". Topics in the bag: {bag.describe_topics()}"
                       + (". Use --remap /bag/topic:=/node/topic if the names differ" if any(
                           "missing" in x for x in problems) else ""))
    if check_content:
        for b in bindings:
            first = bag.first(b.bag_topic)
            check_message(bag, b, first[1], p)
    return bindings


def check_message(bag: Bag, b: InputBinding, raw, p) -> None:
    """Convert one input message the way the node would; BagError if the node would reject it."""
    from flash_rt.errors import InputError
    from flash_rt_ros.conversions import SlotWriter
    from flash_rt_ros.joint_state import JointStateMapper

    msg = bag.deserialize(raw, b.input.msgtype)
    try:
        header_stamp_ns(raw)
        if b.input.msgtype == JOINT_STATE:
            JointStateMapper(p.state_joint_names).write(list(msg.name), msg.position)
        else:
            w = SlotWriter(np.zeros((224, 224, 3), np.uint8), p.image_interpolation, p.expected_size,
                           p.min_image_side)
            (w.write_compressed if b.input.msgtype == COMPRESSED_IMAGE else w.write_image)(msg)
    except InputError as e:
        raise BagError(f"bag {str(bag.path)!r}, topic {b.bag_topic!r}: the node would reject this message: {e}"
                       ) from None


# -------------------------------------------------------------------------------------------------------------
# observation sets
# -------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InputMessage:
    topic: str          # bag topic
    index: int          # 0-based message number on that topic
    log_ns: int         # bag (receive) time
    stamp_ns: int       # header.stamp as recorded
    raw: bytes

    def ref(self) -> list:
        return [self.topic, self.index, self.log_ns, self.stamp_ns]


class ObservationCursor:
    """The latest message of each bound input at or before a time t, for non-decreasing t (one pass)."""

    def __init__(self, bag: Bag, bindings: list[InputBinding], start: int | None = None):
        self.bindings = bindings
        self._slot = {b.bag_topic: i for i, b in enumerate(bindings)}
        self._it = bag.messages([b.bag_topic for b in bindings])
        self._counts = [0] * len(bindings)
        self.latest: list[InputMessage | None] = [None] * len(bindings)
        self._next = None
        self._done = False
        self._t = -1
        self._advance()

    def _advance(self) -> None:
        try:
            self._next = next(self._it)
        except StopIteration:
            self._next, self._done = None, True

    def _take(self) -> None:
        topic, t, raw = self._next
        i = self._slot[topic]
        self.latest[i] = InputMessage(topic, self._counts[i], t, header_stamp_ns(raw), bytes(raw))
        self._counts[i] += 1
        self._advance()

    def at(self, t_ns: int) -> list[InputMessage] | None:
        """Latest message per input with log time <= t_ns (None if an input has none yet)."""
        if t_ns < self._t:
            raise ValueError(f"ObservationCursor.at needs non-decreasing times ({t_ns} < {self._t})")
        self._t = t_ns
        while self._next is not None and self._next[1] <= t_ns:
            self._take()
        return None if any(m is None for m in self.latest) else list(self.latest)

    def first_complete_time(self) -> int | None:
        """The first log time at which every input has a message (None if the bag never gets there)."""
        while any(m is None for m in self.latest):
            if self._next is None:
                return None
            self._take()
        t = max(m.log_ns for m in self.latest)
        self._t = t
        while self._next is not None and self._next[1] <= t:
            self._take()
        return t

    @property
    def exhausted(self) -> bool:
        return self._next is None


def step_times(t0: int, end: int, step_ns: int, max_steps: int | None = None) -> list[int]:
    """t0, t0 + step, ... <= end (at least t0)."""
    if step_ns <= 0:
        raise BagError(f"step must be > 0 s, got {step_ns * 1e-9:g}")
    n = max(0, (end - t0) // step_ns) + 1
    if max_steps is not None:
        n = min(n, max_steps)
    return [t0 + k * step_ns for k in range(int(n))]


# -------------------------------------------------------------------------------------------------------------
# prompts
# -------------------------------------------------------------------------------------------------------------
def prompt_events(bag: Bag, prompt_topic: str | None, chunk_topic: str | None) -> list[tuple[int, str]]:
    """[(time ns, prompt)]: from a std_msgs/String prompt topic (at its log time) if the bag has it, else from
    recorded ActionChunks (a chunk's prompt from its observation stamp on). Only changes are kept."""
    events: list[tuple[int, str]] = []
    if prompt_topic and bag.has(prompt_topic):
        if bag.msgtype(prompt_topic) != STRING:
            raise BagError(f"prompt topic {prompt_topic!r} has type {bag.msgtype(prompt_topic)!r}; expected {STRING}")
        for _, t, raw in bag.messages([prompt_topic]):
            events.append((t, str(bag.deserialize(raw, STRING).data)))
    elif chunk_topic and bag.has(chunk_topic) and bag.msgtype(chunk_topic) == ACTION_CHUNK:
        for _, _, raw in bag.messages([chunk_topic]):
            c = bag.deserialize(raw, ACTION_CHUNK)
            events.append((c.header.stamp.sec * 1_000_000_000 + c.header.stamp.nanosec, str(c.prompt)))
        events.sort(key=lambda e: e[0])
    out: list[tuple[int, str]] = []
    for t, text in events:
        if not out or out[-1][1] != text:
            out.append((t, text))
    return out


# -------------------------------------------------------------------------------------------------------------
# writing
# -------------------------------------------------------------------------------------------------------------
@contextmanager
def open_writer(path, custom_data: dict | None = None):
    """A rosbags Writer: MCAP storage, metadata version 9. Refuses to overwrite; aborts cleanly on errors."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    p = Path(path)
    if p.exists():
        raise BagError(f"output bag {str(p)!r} exists already; choose a new path (bags are never overwritten)")
    w = Writer(p, version=9, storage_plugin=StoragePlugin.MCAP)
    for k, v in (custom_data or {}).items():
        w.set_custom_data(k, v)
    w.open()
    try:
        yield w
    except BaseException:
        w.close()  # keep what was written: a readable, shorter bag beats a broken one
        raise
    else:
        w.close()


def add_connection(writer, topic: str, msgtype: str, store, msgdef: str | None = None):
    """Register a topic on a writer; the definition comes from `store` (or `msgdef` text, e.g. from a bag)."""
    if msgdef is None:
        if msgtype not in store.fielddefs:
            raise BagError(f"message type {msgtype!r} of topic {topic!r} is unknown to the bag typestore (ROS 2 "
                           "Kilted types + flash_rt_ros); it can't be recorded")
        return writer.add_connection(topic, msgtype, typestore=store)
    from rosbags.typesys import get_types_from_msg
    store.register(get_types_from_msg(msgdef, msgtype))
    return writer.add_connection(topic, msgtype, typestore=store)
