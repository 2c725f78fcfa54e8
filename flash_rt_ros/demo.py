"""`flash-rt-ros-demo`: the whole ROS path on CPU in ~20 s, no robot, no GPU, nothing downloaded.

  1. writes the tiny generated checkpoint of `--model` (pi05 default, or pi0; flash_rt.testing) to a temp dir,
  2. starts the real node (`python -m flash_rt_ros.main --ros-args --params-file config/<model>_cpu.yaml ...`) in its
     own process and a synthetic camera + joint-state publisher in another,
  3. listens to ~/action_chunk and /diagnostics, changes the prompt through ~/set_prompt half way,
  4. prints chunks/s, tick jitter, latency and the prompt switch, stops both processes and exits
     (0 = chunks arrived at the configured rate and the prompt switched; 1 otherwise).

DDS stays on loopback: ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, config/fastdds_loopback_shm.xml (127.0.0.1 + shared
memory) and a ROS_DOMAIN_ID derived from the pid, unless already set. `make demo` sets a fresh machine up (venv, wheels, interfaces) and runs this.
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flash_rt_ros import fastdds
from flash_rt_ros.share import config_file

# --model -> the tiny checkpoint builder the demo writes when no --checkpoint is given
TINY_BUILDERS = {"pi05": "flash_rt.testing.checkpoint:build_tiny_checkpoint",
                 "pi0": "flash_rt.testing.pi0_checkpoint:build_tiny_pi0_checkpoint"}

def ros_env(domain_id: int | None = None) -> dict:
    """Environment for this process and its children: loopback-only discovery, an isolated domain, and the Fast
    DDS setup our entry points pick (flash_rt_ros/fastdds.py: under LOCALHOST the loopback + 32 MB shared-memory
    profile). Without it, best-effort 640x480 frames are mostly dropped (the default SHM segment is too small),
    the node then skips ticks on stale cameras and the demo misses its rate (seen in a CI run: 9.39 Hz)."""
    env = os.environ
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    fastdds.apply(env)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    else:
        env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    return dict(env)


def start(cmd: list, log: Path) -> subprocess.Popen:
    f = open(log, "wb")
    return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ), start_new_session=True)


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of chunks to measure")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--camera-rate", type=float, default=30.0)
    ap.add_argument("--model", default="pi05", choices=sorted(TINY_BUILDERS), help="the model family to serve")
    ap.add_argument("--params-file", default=None, help="default: config/<model>_cpu.yaml")
    ap.add_argument("--checkpoint", default=None, help="default: a freshly generated tiny checkpoint")
    ap.add_argument("--prompt", default="stack the red block on the blue block", help="prompt set mid-run")
    ap.add_argument("--startup-timeout", type=float, default=60.0)
    ap.add_argument("--log-dir", default=None, help="keep node/sensor logs here (default: a temp dir)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    ros_env()
    work = Path(tempfile.mkdtemp(prefix="flash_rt_ros_demo_"))
    logs = Path(a.log_dir) if a.log_dir else work
    logs.mkdir(parents=True, exist_ok=True)
    print(f"[demo] ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} "
          f"ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE']}; logs in {logs}", flush=True)

    import rclpy  # noqa: F401 - fail early and clearly if ROS isn't importable
    try:
        from flash_rt_ros.msg import ActionChunk  # noqa: F401
    except ImportError as e:
        print(f"[demo] the flash_rt_ros interfaces are not built ({e}); run: bash scripts/build_interfaces.sh",
              file=sys.stderr)
        return 2

    ckpt = a.checkpoint
    if ckpt is None:
        module, fn = TINY_BUILDERS[a.model].split(":")
        ckpt = str(getattr(importlib.import_module(module), fn)(work / f"tiny_{a.model}"))
        print(f"[demo] tiny {a.model} checkpoint -> {ckpt}", flush=True)
    params = a.params_file or str(config_file(f"{a.model}_cpu.yaml"))
    node_cmd = [sys.executable, "-m", "flash_rt_ros.main", "--ros-args", "--params-file", params,
                "-p", f"checkpoint:={ckpt}"]
    sens_cmd = [sys.executable, "-m", "flash_rt_ros.synthetic_sensors", "--width", str(a.width),
                "--height", str(a.height), "--camera-rate", str(a.camera_rate)]
    print(f"[demo] node:    {' '.join(node_cmd)}", flush=True)
    print(f"[demo] sensors: {' '.join(sens_cmd)}", flush=True)
    node_p = start(node_cmd, logs / "node.log")
    sens_p = start(sens_cmd, logs / "sensors.log")
    try:
        ok = _run(a, node_p, sens_p)
    finally:
        rc_s, rc_n = stop(sens_p), stop(node_p)
        print(f"[demo] stopped: node exit {rc_n}, sensors exit {rc_s}", flush=True)
    if not ok:
        print(f"[demo] FAILED; node log tail:\n" + (logs / "node.log").read_text()[-3000:], file=sys.stderr)
    return 0 if ok and rc_n == 0 else 1


def _run(a, node_p, sens_p) -> bool:
    import numpy as np
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray

    from flash_rt_ros.msg import ActionChunk
    from flash_rt_ros.srv import SetPrompt

    rclpy.init()
    node = rclpy.create_node("flash_rt_demo_monitor")
    chunks = []   # (receive ns, msg)
    diags = []
    node.create_subscription(ActionChunk, "/flash_rt_node/action_chunk",
                             lambda m: chunks.append((time.time_ns(), m)), 50)
    node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
    cli = node.create_client(SetPrompt, "/flash_rt_node/set_prompt")

    def spin_for(sec):
        end = time.monotonic() + sec
        while time.monotonic() < end:
            rclpy.spin_once(node, timeout_sec=0.02)
            for p, name in ((node_p, "node"), (sens_p, "sensors")):
                if p.poll() is not None:
                    raise RuntimeError(f"the {name} process exited early with code {p.returncode}")

    try:
        t0 = time.monotonic()
        while not chunks:
            if time.monotonic() - t0 > a.startup_timeout:
                print("[demo] no action chunk within the startup timeout", flush=True)
                return False
            spin_for(0.2)
        print(f"[demo] first chunk after {time.monotonic() - t0:.1f} s; measuring {a.duration:g} s", flush=True)
        chunks.clear()
        spin_for(a.duration / 2)
        old_prompt = chunks[-1][1].prompt if chunks else ""
        fut = cli.call_async(SetPrompt.Request(prompt=a.prompt))
        t_call = time.monotonic()
        while not fut.done() and time.monotonic() - t_call < 10:
            spin_for(0.02)
        res = fut.result() if fut.done() else None
        switched_at = len(chunks)
        spin_for(a.duration / 2)
        end_ns = time.time_ns()
    finally:
        pass

    ok = True
    n = len(chunks)
    rx = np.array([t for t, _ in chunks], np.float64)
    rate = (n - 1) / ((rx[-1] - rx[0]) * 1e-9) if n > 1 else 0.0
    lat = np.array([(t - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) * 1e-6 for t, m in chunks])
    inf = np.array([m.inference_time * 1e3 for _, m in chunks])
    gaps = np.diff(rx) * 1e-6 if n > 1 else np.zeros(1)
    seqs = [m.sequence for _, m in chunks]
    missing = (seqs[-1] - seqs[0] + 1 - n) if n else 0
    engine = None
    for d in reversed(diags):
        engine = next((s for s in d.status if s.name.endswith(": engine")), None)
        if engine is not None and any(kv.key == "jitter_p99_ms" for kv in engine.values):
            break
    ev = {kv.key: kv.value for kv in engine.values} if engine is not None else {}
    expected = 10.0
    print(f"\n=== flash_rt_ros demo (CPU, tiny {a.model}) ===")
    print(f"chunks received      : {n} in {(rx[-1] - rx[0]) * 1e-9 if n > 1 else 0:.2f} s, sequence gaps {missing}")
    print(f"chunks/s             : {rate:.2f} (configured {expected:g})")
    print(f"tick jitter p50/p99  : {ev.get('jitter_p50_ms', '?')} / {ev.get('jitter_p99_ms', '?')} ms (node side; "
          f"first 2 intervals after activation: max {ev.get('startup_jitter_max_ms', '?')} ms)")
    print(f"inference p50/p99    : {np.percentile(inf, 50):.1f} / {np.percentile(inf, 99):.1f} ms")
    print(f"latency p50/p99      : {np.percentile(lat, 50):.1f} / {np.percentile(lat, 99):.1f} ms "
          "(chunk received - observation stamp)")
    print(f"inter-arrival p99    : {np.percentile(gaps, 99):.1f} ms")
    if res is None:
        print("set_prompt           : no answer within 10 s")
        ok = False
    else:
        after = [m.prompt for _, m in chunks[switched_at:]]
        seen = bool(after) and after[-1] != old_prompt
        print(f"set_prompt           : success={res.success} setup {res.setup_time * 1e3:.2f} ms: {res.message}")
        print(f"prompt in chunks     : {old_prompt!r} -> {after[-1] if after else '?'!r} "
              f"({'switched' if seen else 'NOT switched'})")
        ok &= res.success and seen
    if abs(rate - expected) > 0.05 * expected:
        print(f"rate {rate:.2f} is outside {expected:g} Hz +-5 %")
        ok = False
    print(f"result               : {'OK' if ok else 'FAILED'}", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return ok


if __name__ == "__main__":
    sys.exit(main())
