"""ROS node on CPU: executor choice (tick jitter), host overhead per tick, allocation over 500 ticks.

    .venv/bin/python benchmarks/ros_node_cpu.py [--seconds 20] [--skip-executors]

1. Executors: the real node process (config/pi05_cpu.yaml, tiny checkpoint, 10 Hz) with `executor:=events` and
   `executor:=single`, fed by a synthetic sensor process with three 640x480 rgb8 cameras at 30 Hz + joints at
   100 Hz, both on the Fast DDS loopback+SHM profile (config/fastdds_loopback_shm.xml). Reads the node's own
   tick-start jitter |interval - period| (p50/p99/max, ms) from /diagnostics after `--seconds`.
2. Host overhead (in-process, flash_rt_ros.inprocess): per tick, three 640x480 rgb8 frames through the image
   callbacks (conversion into the model slots) + the tick minus policy.step (freshness, state, seeded noise,
   message fill, publish). p50/p99/max over 500 ticks.
   Each camera frame goes in as serialized bytes through the node's raw-subscription callback after the two
   copies rclpy's raw take makes, so take copies + parse + resize are all counted (flash_rt_ros.inprocess).
3. Allocation: tracemalloc growth over 500 ticks after warm-up, split into flash_rt_ros / rclpy / flash_rt.
4. Take cost in a real subscriber process (the node's three camera subscriptions, nothing else): CPU time per
   received 640x480 frame with raw (serialized) vs deserialized subscriptions, each with and without the node's
   malloc tuning (flash_rt_ros.main.tune_malloc), from the same synthetic sensor process.
Prints a markdown block for docs/benchmarks.md ("ROS node (CPU)").
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def executor_run(kind: str, ckpt: str, seconds: float, domain: int, tmp: Path) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context

    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="SYSTEM_DEFAULT",
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_loopback_shm.xml"))
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    node = subprocess.Popen([sys.executable, "-m", "flash_rt_ros.main", "--ros-args", "--params-file",
                             str(REPO / "config" / "pi05_cpu.yaml"), "-p", f"checkpoint:={ckpt}",
                             "-p", f"executor:={kind}", "-p", "diagnostics_period_s:=1.0"],
                            stdout=open(tmp / f"node_{kind}.log", "wb"), stderr=subprocess.STDOUT, env=env,
                            cwd=str(REPO), start_new_session=True)
    sens = subprocess.Popen([sys.executable, "-m", "flash_rt_ros.synthetic_sensors", "--width", "640",
                             "--height", "480", "--camera-rate", "30", "--joint-rate", "100"],
                            stdout=open(tmp / f"sensors_{kind}.log", "wb"), stderr=subprocess.STDOUT, env=env,
                            cwd=str(REPO), start_new_session=True)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "FASTDDS_DEFAULT_PROFILES_FILE")})
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    mon = rclpy.create_node("bench_monitor", context=ctx)
    diags = []
    mon.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    from rclpy.executors import SingleThreadedExecutor
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(mon)
    try:
        t_end = time.monotonic() + 90
        started = None
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
            ev = _engine_values(diags)
            if started is None and ev and float(ev.get("published", 0)) > 0:
                started = time.monotonic()
                diags.clear()
            if started and time.monotonic() - started > seconds:
                break
        ev = _engine_values(diags) or {}
    finally:
        for p in (sens, node):
            p.send_signal(2)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        ex.shutdown()
        mon.destroy_node()
        rclpy.shutdown(context=ctx)
    return ev


def take_probe(raw: bool, seconds: float) -> None:
    """(subprocess) Subscribe to the three cameras like the node does and print CPU ms per received frame."""
    import resource

    import rclpy
    from rclpy.experimental import EventsExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from flash_rt_ros.conversions import SlotWriter
    rclpy.init()
    node = rclpy.create_node("take_probe")
    writers = [SlotWriter(np.zeros((224, 224, 3), np.uint8), "linear") for _ in range(3)]
    count = [0]

    def cb(i, m):
        count[0] += 1
        writers[i].write_cdr(m) if raw else writers[i].write_image(m)

    topics = ["camera/base/image_raw", "camera/left_wrist/image_raw", "camera/right_wrist/image_raw"]
    subs = [node.create_subscription(Image, t, lambda m, i=i: cb(i, m), qos_profile_sensor_data, raw=raw)
            for i, t in enumerate(topics)]
    ex = EventsExecutor()
    ex.add_node(node)
    t_end = time.monotonic() + 3
    while time.monotonic() < t_end:
        ex.spin_once(timeout_sec=0.05)
    n0, r0, t0 = count[0], resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    while time.monotonic() - t0 < seconds:
        ex.spin_once(timeout_sec=0.05)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    k = max(count[0] - n0, 1)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    print(f"PROBE {count[0] - n0} {cpu / k * 1e3:.3f} {(r1.ru_minflt - r0.ru_minflt) / k:.0f}", flush=True)
    del subs
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown()


def take_cost(seconds: float, domain: int, tmp: Path) -> list:
    """[(mode, malloc tuned, frames, CPU ms / frame, minor faults / frame)] from take_probe subprocesses."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="SYSTEM_DEFAULT",
               FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_loopback_shm.xml"))
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    sens = subprocess.Popen([sys.executable, "-m", "flash_rt_ros.synthetic_sensors", "--width", "640",
                             "--height", "480", "--camera-rate", "30", "--joint-rate", "100"],
                            stdout=open(tmp / "sensors_probe.log", "wb"), stderr=subprocess.STDOUT, env=env,
                            cwd=str(REPO), start_new_session=True)
    rows = []
    try:
        for mode in ("raw", "message"):
            for tuned in (True, False):
                e = dict(env, FLASH_RT_MALLOPT="1" if tuned else "0")
                out = subprocess.run([sys.executable, __file__, "--probe-take", mode, "--seconds", str(seconds)],
                                     env=e, cwd=str(REPO), capture_output=True, text=True, timeout=seconds + 60)
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("PROBE")]
                if not line:
                    raise RuntimeError(f"take probe failed: {out.stdout[-2000:]} {out.stderr[-2000:]}")
                _, frames, ms, faults = line[0].split()
                rows.append((mode, tuned, int(frames), float(ms), float(faults)))
                print("take", rows[-1], flush=True)
    finally:
        sens.send_signal(2)
        try:
            sens.wait(10)
        except subprocess.TimeoutExpired:
            sens.kill()
    return rows


def _engine_values(diags):
    for d in reversed(diags):
        for s in d.status:
            if s.name.endswith(": engine") and s.values:
                return {kv.key: kv.value for kv in s.values}
    return None


def host_overhead_and_alloc(ckpt: str, domain: int) -> tuple[dict, dict]:
    from flash_rt_ros.inprocess import Harness

    h = Harness(ckpt, 640, 480, params_file=str(REPO / "config" / "pi05_cpu.yaml"), domain_id=domain,
                overrides={"noise_seed": 3})
    try:
        for _ in range(50):
            h.feed()
            h.tick()
        r = h.timed_ticks(500)
        h.warm_publish(3000)
        gc.collect()
        blocks0 = sys.getallocatedblocks()
        tracemalloc.start(1)
        s1 = tracemalloc.take_snapshot()
        for _ in range(500):
            h.feed()
            h.tick()
        gc.collect()
        s2 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        gc.collect()
        blocks = sys.getallocatedblocks() - blocks0
        diff = s2.compare_to(s1, "filename")
        parts = {"flash_rt_ros": 0, "rclpy": 0, "flash_rt": 0, "other": 0}
        for d in diff:
            f = d.traceback[0].filename
            key = ("flash_rt_ros" if "/flash_rt_ros/" in f else "rclpy" if "/rclpy/" in f
                   else "flash_rt" if "/flash_rt/" in f else "other")
            parts[key] += d.size_diff
        parts["pymalloc_blocks_incl_snapshots"] = blocks
    finally:
        h.close()
    return r, parts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--skip-executors", action="store_true")
    ap.add_argument("--skip-take", action="store_true")
    ap.add_argument("--probe-take", choices=("raw", "message"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.probe_take:
        from flash_rt_ros.main import tune_malloc
        tune_malloc()
        take_probe(a.probe_take == "raw", a.seconds)
        return 0
    import torch
    torch.set_num_threads(1)
    from flash_rt.testing.checkpoint import build_tiny_checkpoint
    tmp = Path(tempfile.mkdtemp(prefix="ros_bench_"))
    ckpt = str(build_tiny_checkpoint(tmp / "tiny"))
    base = 1 + os.getpid() % 90
    load0 = os.getloadavg()
    rows = []
    if not a.skip_executors:
        for i, kind in enumerate(("events", "single")):
            ev = executor_run(kind, ckpt, a.seconds, base + i, tmp)
            rows.append((kind, ev))
            print(kind, {k: ev.get(k) for k in ("rate_hz", "jitter_p50_ms", "jitter_p99_ms", "jitter_max_ms",
                                                 "inference_p50_ms", "overhead_p99_ms")}, flush=True)
    r, parts = host_overhead_and_alloc(ckpt, base + 5)
    takes = [] if a.skip_take else take_cost(min(a.seconds, 10.0), base + 6, tmp)
    load1 = os.getloadavg()
    q = lambda v: f"{np.percentile(v, 50):.3f} / {np.percentile(v, 99):.3f} / {v.max():.3f}"  # noqa: E731
    print("\n### ROS node (CPU)\n")
    print(f"`{' '.join(['.venv/bin/python', 'benchmarks/ros_node_cpu.py'] + sys.argv[1:])}` — "
          f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {load0[0]:.2f} -> {load1[0]:.2f}; tiny Pi0.5 checkpoint, torch threads 1, 10 Hz.\n")
    if rows:
        print("| executor | chunks/s | tick jitter p50 / p99 / max (ms) | inference p50 (ms) | tick overhead p99 (ms) |")
        print("|---|---|---|---|---|")
        for kind, ev in rows:
            print(f"| {kind} | {ev.get('rate_hz')} | {ev.get('jitter_p50_ms')} / {ev.get('jitter_p99_ms')} / "
                  f"{ev.get('jitter_max_ms')} | {ev.get('inference_p50_ms')} | {ev.get('overhead_p99_ms')} |")
        print()
    print("| per tick, 3 x 640x480 rgb8 (500 ticks) | p50 / p99 / max (ms) |")
    print("|---|---|")
    for k in ("take_copies_ms", "callbacks_ms", "conversion_ms", "tick_overhead_ms", "host_overhead_ms",
              "inference_ms"):
        print(f"| {k} | {q(r[k])} |")
    if takes:
        print("\n| subscription (3 x 640x480 rgb8, 30 Hz) | malloc tuned | frames | CPU ms / frame | minor faults / frame |")
        print("|---|---|---|---|---|")
        for mode, tuned, frames, ms, faults in takes:
            print(f"| {mode} | {'yes' if tuned else 'no'} | {frames} | {ms:.3f} | {faults:.0f} |")
    print(f"\ntracemalloc growth over 500 ticks after warm-up (bytes): {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
