"""Camera frame loss per Fast DDS setup: the synthetic sensors (3 cameras, best-effort sensor-data QoS) publish to a
counting subscriber in another process; each side gets its own Fast DDS setup.

    .venv/bin/python benchmarks/fastdds_camera_loss.py [--seconds 10] [--width 640 --height 480] [--only NAME ...]
    unshare -n sh -c 'ip link set lo up; ip link set lo multicast on; ip route add 224.0.0.0/4 dev lo;
                      .venv/bin/python benchmarks/fastdds_camera_loss.py'

Rows whose discovery range is not LOCALHOST use multicast and every interface, so the script refuses to run them
unless the process is in a network namespace whose only interface is loopback (the `unshare -n` line above; root):
nothing leaves the host. A camera on "another host" is approximated by a publisher restricted to the UDPv4
builtin transport (no shared memory), which is all a remote participant can reach us with.

Per camera: received frames, frames published in the counting window (seconds x rate: the publisher's timer),
loss %, and the count reported by DDS itself (rclpy's message_lost subscription event). Counting starts
after a discovery warm-up. Prints a markdown table for docs/ros.md ("Large camera frames").
"""
from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LOOPBACK = str(REPO / "config" / "fastdds_loopback_shm.xml")
LARGE_SHM = str(REPO / "config" / "fastdds_large_shm.xml")
CAMERAS = ("camera/base/image_raw", "camera/left_wrist/image_raw", "camera/right_wrist/image_raw")
STOCK = {}

# name -> (discovery range, publisher env, subscriber env, what it stands for)
SETUPS = {
    "stock": ("LOCALHOST", STOCK, STOCK, "no Fast DDS configuration (512 kB SHM segment)"),
    "loopback_profile": ("LOCALHOST", {"FASTDDS_DEFAULT_PROFILES_FILE": LOOPBACK},
                         {"FASTDDS_DEFAULT_PROFILES_FILE": LOOPBACK}, "config/fastdds_loopback_shm.xml, both"),
    "profile_sub_only": ("LOCALHOST", STOCK, {"FASTDDS_DEFAULT_PROFILES_FILE": LOOPBACK},
                         "profile in the subscriber (node) only; stock camera driver"),
    "profile_pub_only": ("LOCALHOST", {"FASTDDS_DEFAULT_PROFILES_FILE": LOOPBACK}, STOCK,
                         "profile in the publisher (camera driver) only"),
    "large_shm_localhost": ("LOCALHOST", {"FASTDDS_DEFAULT_PROFILES_FILE": LARGE_SHM},
                            {"FASTDDS_DEFAULT_PROFILES_FILE": LARGE_SHM}, "config/fastdds_large_shm.xml, both"),
    "large_data_localhost": ("LOCALHOST", {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                             {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, "LARGE_DATA both, LOCALHOST range"),
    "stock_subnet": ("SUBNET", STOCK, STOCK, "no configuration, SUBNET range"),
    "large_data_subnet": ("SUBNET", {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                          {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, "LARGE_DATA both, SUBNET range"),
    "large_data_sub_only_subnet": ("SUBNET", STOCK, {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                                   "LARGE_DATA in the subscriber only; stock camera, same host"),
    "large_shm_subnet": ("SUBNET", {"FASTDDS_DEFAULT_PROFILES_FILE": LARGE_SHM},
                         {"FASTDDS_DEFAULT_PROFILES_FILE": LARGE_SHM}, "config/fastdds_large_shm.xml, both"),
    "large_shm_sub_only_subnet": ("SUBNET", STOCK, {"FASTDDS_DEFAULT_PROFILES_FILE": LARGE_SHM},
                                  "large_shm profile in the subscriber only; stock camera, same host"),
    "large_shm_pub_only_subnet": ("SUBNET", {"FASTDDS_DEFAULT_PROFILES_FILE": LARGE_SHM}, STOCK,
                                  "large_shm profile in the camera only; stock subscriber, same host"),
    "remote_stock": ("SUBNET", {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}, STOCK,
                     "camera on another host (UDPv4 only), stock subscriber"),
    "remote_large_data_sub": ("SUBNET", {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
                              {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                              "camera on another host (UDPv4 only), LARGE_DATA subscriber"),
    "remote_large_shm_sub": ("SUBNET", {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
                             {"FASTDDS_DEFAULT_PROFILES_FILE": LARGE_SHM},
                             "camera on another host (UDPv4 only), large_shm subscriber"),
    "remote_udp_4mb_buffers": ("SUBNET", {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4?sockets_size=4194304"},
                               {"FASTDDS_BUILTIN_TRANSPORTS": "DEFAULT?sockets_size=4194304"},
                               "camera on another host (UDPv4), 4 MB socket buffers on both sides"),
    "remote_jpeg": ("SUBNET", {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}, STOCK,
                    "camera on another host (UDPv4 only) publishing JPEG (CompressedImage), stock subscriber"),
}
FASTDDS_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS",
                "FLASH_RT_FASTDDS")


def only_loopback_interfaces() -> bool:
    names = [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]
    return names == ["lo"]


def subscriber(seconds: float, warmup: float, rate: float, compressed: bool = False) -> dict:
    """Count raw frames per camera after `warmup` s; stamps say how many were published meanwhile."""
    import rclpy
    from rclpy.event_handler import SubscriptionEventCallbacks
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init()
    node = rclpy.create_node("fastdds_loss_probe")
    stats = {t: {"n": 0, "lost": 0, "first": 0, "last": 0} for t in CAMERAS}
    counting = [False]

    def handlers(t):
        def on_frame(data):
            if counting[0]:
                s = stats[t]
                sec, nsec = struct.unpack_from("<iI", data, 4)
                s["n"] += 1
                s["first"] = s["first"] or sec * 10**9 + nsec
                s["last"] = sec * 10**9 + nsec

        def on_lost(info):
            if counting[0]:
                stats[t]["lost"] += info.total_count_change
        return on_frame, on_lost

    for t in CAMERAS:
        f, lost = handlers(t)
        node.create_subscription(CompressedImage if compressed else Image, t + "/compressed" * compressed, f,
                                 qos_profile_sensor_data, raw=True,
                                 event_callbacks=SubscriptionEventCallbacks(message_lost=lost))
    t0 = time.monotonic()
    while time.monotonic() - t0 < warmup + seconds:
        counting[0] = time.monotonic() - t0 >= warmup
        rclpy.spin_once(node, timeout_sec=0.05)
    out = {}
    for t, s in stats.items():
        span = round((s["last"] - s["first"]) * 1e-9 * rate) + 1 if s["n"] else 0
        out[t] = {"received": s["n"], "expected": round(seconds * rate), "stamp_span": span,
                  "message_lost": s["lost"]}
    node.destroy_node()
    rclpy.shutdown()
    return out


def run_setup(name: str, a, domain: int, tmp: Path) -> dict:
    rng, pub_env, sub_env, _ = SETUPS[name]
    base = {k: v for k, v in os.environ.items() if k not in FASTDDS_VARS}
    base.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE=rng, PYTHONUNBUFFERED="1",
                FLASH_RT_FASTDDS="off")   # our entry points must not add their default: this measures the env given
    base.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    jpeg = name.endswith("jpeg")
    pub = subprocess.Popen([sys.executable, "-m", "flash_rt_ros.synthetic_sensors", "--width", str(a.width),
                            "--height", str(a.height), "--camera-rate", str(a.rate)]
                           + (["--encoding", "jpeg"] if jpeg else []),
                           env={**base, **pub_env}, cwd=str(REPO), stdout=open(tmp / f"pub_{name}.log", "wb"),
                           stderr=subprocess.STDOUT, start_new_session=True)
    try:
        sub = subprocess.run([sys.executable, __file__, "--subscriber", str(a.seconds), "--rate", str(a.rate)]
                             + (["--compressed"] if jpeg else []),
                             env={**base, **sub_env}, cwd=str(REPO), capture_output=True, text=True,
                             timeout=a.seconds + 60)
    finally:
        pub.send_signal(2)
        pub.wait(10)
    if sub.returncode != 0:
        return {"error": sub.stderr[-2000:]}
    return json.loads(sub.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--only", nargs="*", default=None, help=f"setups to run (default: all): {', '.join(SETUPS)}")
    ap.add_argument("--subscriber", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--compressed", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.subscriber is not None:
        print(json.dumps(subscriber(a.subscriber, a.warmup, a.rate, a.compressed)))
        return 0
    netns = only_loopback_interfaces()
    tmp = Path(tempfile.mkdtemp(prefix="fastdds_loss_"))
    print(f"{a.width}x{a.height} rgb8 ({a.width * a.height * 3 / 1e3:.0f} kB), 3 cameras at {a.rate:g} Hz, "
          f"{a.seconds:g} s after {a.warmup:g} s warm-up; only loopback interfaces: {netns}; logs in {tmp}\n")
    print("| setup | range | what | received / expected (per camera) | loss | DDS message_lost |")
    print("|---|---|---|---|---|---|")
    for i, name in enumerate(a.only or SETUPS):
        rng, _, _, what = SETUPS[name]
        if rng != "LOCALHOST" and not netns:
            print(f"| {name} | {rng} | {what} | skipped: needs a loopback-only network namespace | | |")
            continue
        r = run_setup(name, a, 1 + (os.getpid() + 7 * i) % 100, tmp)
        if "error" in r:
            print(f"| {name} | {rng} | {what} | error: {r['error'][-200:]!r} | | |")
            continue
        rec = sum(c["received"] for c in r.values())
        exp = sum(c["expected"] for c in r.values())
        lost = sum(c["message_lost"] for c in r.values())
        per = ", ".join(f"{c['received']}/{c['expected']}" for c in r.values())
        loss = f"{max(0.0, 100 * (1 - rec / exp)):.1f} %" if exp else "no frames"   # timer slack: 301/300
        print(f"| {name} | {rng} | {what} | {per} | {loss} | {lost} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
