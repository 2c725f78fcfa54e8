"""`flash-rt-bag`: record -> replay -> report (docs/rosbag.md).

    flash-rt-bag record OUT_BAG [--node /flash_rt_node] [--duration 30] [--max-chunks N] [--topic /extra]
    flash-rt-bag replay IN_BAG REPLAY_BAG [--node /flash_rt_node] [--mode lockstep|realtime] [--step S]
    flash-rt-bag report REPLAY_BAG [--out DIR] [--min-cos C] [--max-abs A]
    flash-rt-bag check  IN_BAG --params-file node.yaml [-p name:=value]     # can the node take this bag?
    flash-rt-bag info   BAG
    flash-rt-bag make-test-bag OUT_BAG [--duration 2]   # a synthetic robot bag (3 cameras, joints, 2 prompts)

Exit status: 0 ok; 1 the report's thresholds failed; 2 a bag / parameter / node problem (the message says
which and what to do); 130 interrupted (record: Ctrl-C is the normal stop and exits 0).
Environment: ROS_DOMAIN_ID (the node's) and ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (required unless
--allow-network or FASTDDS_DEFAULT_PROFILES_FILE is set).
"""
from __future__ import annotations

import argparse
import json
import sys

from flash_rt_ros.bag.types import BagError


def _common_ros(ap) -> None:
    ap.add_argument("--node", default="/flash_rt_node", help="fully qualified node name (default %(default)s)")
    ap.add_argument("--discovery-timeout", type=float, default=15.0, metavar="S",
                    help="seconds to wait for the node / publishers (default %(default)s)")
    ap.add_argument("--allow-network", action="store_true",
                    help="run without ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (node on another host)")
    ap.add_argument("-q", "--quiet", action="store_true")


def _params_args(ap) -> None:
    ap.add_argument("--params-file", action="append", default=[], metavar="YAML",
                    help="the node's ROS parameter file(s), later ones win (default: what the bag stores)")
    ap.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                    help="parameter override, ROS syntax (e.g. -p checkpoint:=/models/pi05)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="flash-rt-bag", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("record", help="record the node's inputs and chunks to an MCAP bag",
                       description=__import__("flash_rt_ros.bag.record", fromlist=["x"]).__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("out_bag")
    r.add_argument("--topic", action="append", default=[], help="extra (or, with --no-node, the) topics")
    r.add_argument("--no-node", action="store_true", help="don't ask the node; record only --topic")
    r.add_argument("--trajectory", action="store_true", help="also record ~/joint_trajectory")
    r.add_argument("--duration", type=float, default=0.0, metavar="S", help="stop after S seconds")
    r.add_argument("--max-chunks", type=int, default=0, metavar="N", help="stop after N action chunks")
    r.add_argument("--max-messages", type=int, default=0, metavar="N", help="stop after N messages in all")
    _common_ros(r)

    p = sub.add_parser("replay", help="publish a bag's cameras/joints into the running node, collect its chunks",
                       description=__import__("flash_rt_ros.bag.replay", fromlist=["x"]).__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("in_bag")
    p.add_argument("out_bag")
    p.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep")
    p.add_argument("--verbatim", action="store_true",
                   help="realtime: publish every message as recorded (latency only; chunks not comparable)")
    p.add_argument("--rate", type=float, default=1.0, help="realtime speed factor (default 1)")
    p.add_argument("--step", type=float, default=0.0, metavar="S",
                   help="bag seconds between observation sets (default: the node's control period)")
    p.add_argument("--start", type=float, default=0.0, metavar="S", help="skip S seconds of the bag")
    p.add_argument("--duration", type=float, default=0.0, metavar="S", help="replay only S seconds of the bag")
    p.add_argument("--max-steps", type=int, default=0, metavar="N")
    p.add_argument("--step-timeout", type=float, default=30.0, metavar="S",
                   help="lockstep: fail when a step yields no chunk for S seconds (default %(default)s)")
    p.add_argument("--retry", type=float, default=0.0, metavar="S",
                   help="lockstep: re-publish a set after S seconds without its chunk (default 3 periods)")
    p.add_argument("--prompt-topic", default="/flash_rt_bag/prompt",
                   help="std_msgs/String prompt changes in the bag (default %(default)s)")
    p.add_argument("--remap", action="append", default=[], metavar="/BAG/TOPIC:=/NODE/TOPIC")
    p.add_argument("--subscribers", type=int, default=1, metavar="N",
                   help="wait until every input topic has N matched subscribers before the first message: 2 when "
                        "`flash-rt-bag record` runs beside the node and must get every message (default 1)")
    p.add_argument("--no-shm-profile", action="store_true",
                   help="leave Fast DDS as it is; by default replay publishes with a 32 MB shared-memory segment "
                        "unless you configured Fast DDS (flash_rt_ros/fastdds.py; the stock 512 kB segment drops "
                        "most large raw frames)")
    p.add_argument("--allow-unseeded", action="store_true",
                   help="replay into a node without noise_seed (latency only)")
    _common_ros(p)

    rp = sub.add_parser("report", help="compare a replay's chunks with the FP32 reference; latency; plot; JSON",
                        description=__import__("flash_rt_ros.bag.report", fromlist=["x"]).__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("replay_bag")
    rp.add_argument("--input-bag", default="", help="the replayed bag (default: the path the replay stored)")
    rp.add_argument("--out", default="", help="output directory (default REPLAY_BAG_report)")
    rp.add_argument("--checkpoint", default="", help="the checkpoint path on this machine (default: the node's)")
    _params_args(rp)
    rp.add_argument("--min-cos", type=float, default=None,
                    help="per-chunk cosine threshold (default 0.99999 for hardware=cpu, else 0.995)")
    rp.add_argument("--max-abs", type=float, default=None, help="per-chunk max |node - reference| threshold")
    rp.add_argument("--min-chunks", type=int, default=1, help="fail with fewer compared chunks (default 1)")
    rp.add_argument("--reference-device", default="cpu", help="torch device of the FP32 reference (default cpu)")
    rp.add_argument("--threads", type=int, default=0,
                    help="torch threads for the recomputation (default: the node's cpu_threads, else torch's)")
    rp.add_argument("--no-engine-check", action="store_true",
                    help="skip recomputing each chunk with the CPU engine (large models)")
    rp.add_argument("--latency-only", action="store_true", help="no reference comparison")
    rp.add_argument("--no-plot", action="store_true")
    rp.add_argument("--json", action="store_true", help="print the summary JSON (without per-chunk rows)")
    rp.add_argument("-q", "--quiet", action="store_true")

    c = sub.add_parser("check", help="check a bag against the node's parameters (no ROS needed)")
    c.add_argument("in_bag")
    c.add_argument("--node", default="/flash_rt_node")
    c.add_argument("--remap", action="append", default=[], metavar="/BAG/TOPIC:=/NODE/TOPIC")
    c.add_argument("--all", action="store_true", help="convert every input message, not only the first")
    _params_args(c)

    i = sub.add_parser("info", help="topics, counts, duration and stored node parameters of a bag")
    i.add_argument("bag")

    m = sub.add_parser("make-test-bag", help="write a synthetic robot bag (no robot needed)",
                       description=__import__("flash_rt_ros.bag.synthetic", fromlist=["x"]).__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("out_bag")
    m.add_argument("--duration", type=float, default=2.0, metavar="S")
    return ap


def _record(a) -> int:
    from flash_rt_ros.bag.record import RecordOptions, record

    record(a.out_bag, RecordOptions(node=a.node, topics=tuple(a.topic), no_node=a.no_node, trajectory=a.trajectory,
                                    duration_s=a.duration, max_chunks=a.max_chunks, max_messages=a.max_messages,
                                    discovery_timeout_s=a.discovery_timeout, allow_network=a.allow_network,
                                    quiet=a.quiet))
    return 0


def _replay(a) -> int:
    from flash_rt_ros.bag.replay import ReplayOptions, replay

    res = replay(a.in_bag, a.out_bag, ReplayOptions(
        node=a.node, mode=a.mode, verbatim=a.verbatim, rate=a.rate, step_s=a.step, start_s=a.start,
        duration_s=a.duration, max_steps=a.max_steps, step_timeout_s=a.step_timeout, retry_s=a.retry,
        prompt_topic=a.prompt_topic, remaps=tuple(a.remap), allow_unseeded=a.allow_unseeded,
        allow_network=a.allow_network, discovery_timeout_s=a.discovery_timeout, shm_profile=not a.no_shm_profile,
        min_subscribers=a.subscribers, quiet=a.quiet))
    if a.quiet:
        print(res.line())
    return 0


def _report(a) -> int:
    from flash_rt_ros.bag.report import ReportOptions, format_summary, report

    ok, summary = report(a.replay_bag, ReportOptions(
        out_dir=a.out, input_bag=a.input_bag, checkpoint=a.checkpoint, params_files=tuple(a.params_file),
        overrides=tuple(a.param), min_cos=a.min_cos, max_abs=a.max_abs, min_chunks=a.min_chunks,
        reference_device=a.reference_device, threads=a.threads, engine_check=not a.no_engine_check,
        latency_only=a.latency_only, plot=not a.no_plot, quiet=a.quiet))
    if a.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "per_chunk"}, indent=1))
    else:
        print(format_summary(summary))
    return 0 if ok else 1


def _check(a) -> int:
    from flash_rt_ros.bag import bagio
    from flash_rt_ros.bag.topics import NODE_NAME_KEY, NODE_PARAMS_KEY, NodeConfig, params_from_files

    with bagio.Bag(a.in_bag) as bag:
        if a.params_file:
            cfg = NodeConfig.from_values(params_from_files(a.params_file, a.param, a.node), a.node)
        elif NODE_PARAMS_KEY in bag.custom_data:
            node = bag.custom_data.get(NODE_NAME_KEY) or a.node
            cfg = NodeConfig.from_json(bag.custom_data[NODE_PARAMS_KEY], node, params_from_files((), a.param, node))
        else:
            raise BagError("give the node's --params-file (the bag stores no node parameters)")
        bindings = bagio.check_inputs(bag, cfg, bagio.parse_remaps(a.remap))
        n = 0
        if a.all:
            by_topic = {b.bag_topic: b for b in bindings}
            for topic, t, raw in bag.messages(list(by_topic)):
                try:
                    bagio.check_message(bag, by_topic[topic], raw, cfg.params)
                except BagError as e:
                    raise BagError(f"bag time {t}: {e}") from None
                n += 1
        for b in bindings:
            print(f"  {b.input.topic:<40} <- {b.bag_topic} ({bag.topics[b.bag_topic][1]} x {b.input.msgtype})")
        print(f"OK: {a.in_bag} can feed node {cfg.node}" + (f" ({n} messages converted)" if a.all else ""))
    return 0


def _info(a) -> int:
    from flash_rt_ros.bag import bagio

    with bagio.Bag(a.bag) as bag:
        dur = max(0, bag.end_time - bag.start_time) * 1e-9
        print(f"bag {bag.path}: {dur:.2f} s, start {bag.start_time * 1e-9:.3f}")
        for t, (mt, n) in sorted(bag.topics.items()):
            rate = f"{(n - 1) / dur:.1f} Hz" if n > 1 and dur > 0 else ""
            print(f"  {t:<45} {mt:<36} {n:>7} {rate}")
        for k, v in sorted(bag.custom_data.items()):
            print(f"  custom_data {k}: {v if len(v) < 300 else v[:300] + '...'}")
    return 0


def _make_test_bag(a) -> int:
    from flash_rt_ros.bag.synthetic import node_camera_topics, write_test_bag

    if a.duration <= 0:
        raise BagError(f"--duration must be > 0, got {a.duration:g}")
    from pathlib import Path
    if Path(a.out_bag).exists():
        raise BagError(f"output bag {a.out_bag!r} exists already; choose a new path (bags are never overwritten)")
    path = write_test_bag(a.out_bag, duration_s=a.duration)
    print(f"wrote {path}; start the node with -p 'camera_topics:={json.dumps(node_camera_topics())}'")
    return 0


COMMANDS = {"record": _record, "replay": _replay, "report": _report, "check": _check, "info": _info,
            "make-test-bag": _make_test_bag}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BagError as e:
        print(f"flash-rt-bag {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flash-rt-bag {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
