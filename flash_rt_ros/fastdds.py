"""The Fast DDS setup our own entry points (flash-rt-node, flash-rt-synthetic-sensors, the launch files) use when
the user has not configured Fast DDS: a shared-memory segment big enough for camera frames.

Why: Fast DDS's stock shared-memory segment is 512 kB, so best-effort 640x480 rgb8 frames (921 kB) between two
processes on one host are mostly dropped: 81.5 % lost with three cameras at 30 Hz, 0 % with a 32 MB segment
(benchmarks/fastdds_camera_loss.py; docs/ros.md "Large camera frames"). The segment belongs to the PUBLISHER:
with the profile in the subscriber only, 64 % were still lost; in the publisher only, 0 %. So the node cannot fix
this for a camera driver; what it does fix is our own synthetic camera, and it keeps the node consistent.

`choose(env, cwd)` is pure (unit-tested); `apply(environ)` sets the result in the process environment and must
run before rclpy.init, because Fast DDS reads it when the participant is created.

  * FLASH_RT_FASTDDS=off, an RMW other than Fast DDS, or any Fast DDS configuration of the user's own
    (FASTDDS_DEFAULT_PROFILES_FILE, FASTRTPS_DEFAULT_PROFILES_FILE, FASTDDS_BUILTIN_TRANSPORTS, or a
    DEFAULT_FASTDDS_PROFILES.xml in the working directory, which Fast DDS loads by itself): left as it is.
  * ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (and no discovery server): config/fastdds_loopback_shm.xml, 32 MB
    segment plus UDP on 127.0.0.1 only -- the user said everything is on this host.
  * anything else (SUBNET, SYSTEM_DEFAULT, unset: cameras may be on another host): config/fastdds_large_shm.xml,
    Fast DDS's stock transports and discovery with only the segment made 32 MB, so nothing about cross-host
    traffic changes (measured: a UDP-only "remote" camera reaches it exactly as it reaches a stock subscriber).

Not LARGE_DATA (FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA: UDP multicast for participant discovery only, TCP for the
rest, an 8.3 MB segment): with the Kilted wheels it loses nothing when EVERY participant uses it (SUBNET range),
but a LARGE_DATA participant and a stock one never exchange a frame (0 of 900, same host or a UDP-only one), and
under the LOCALHOST range it lost 96 %. As our default it would silently cut the node off from every stock camera
driver; docs/ros.md says when to choose it for the whole system.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from flash_rt_ros.share import config_file

SWITCH = "FLASH_RT_FASTDDS"           # "off" = never touch the Fast DDS configuration
LOOPBACK_PROFILE = "fastdds_loopback_shm.xml"
LARGE_SHM_PROFILE = "fastdds_large_shm.xml"
USER_CONFIG_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")
USER_CONFIG_FILES = ("DEFAULT_FASTDDS_PROFILES.xml", "DEFAULT_FASTRTPS_PROFILES.xml")
FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")   # "" = the ROS default, Fast DDS


@dataclass(frozen=True)
class Setup:
    name: str                          # loopback_shm | large_shm | user | other_rmw | off | missing
    env: dict = field(default_factory=dict)   # variables to set before rclpy.init
    message: str = ""                  # one line for the log: which setup is in effect and why


def choose(env: Mapping[str, str], cwd: Path | None = None, find=config_file) -> Setup:
    cwd = Path.cwd() if cwd is None else Path(cwd)
    if env.get(SWITCH, "").strip().lower() in ("off", "0", "false"):
        return Setup("off", message=f"Fast DDS setup left as it is ({SWITCH}=off)")
    rmw = env.get("RMW_IMPLEMENTATION", "").strip()
    if rmw not in FASTDDS_RMWS:
        return Setup("other_rmw", message=f"RMW_IMPLEMENTATION={rmw}: no Fast DDS setup applied")
    own = [f"{k}={env[k]}" for k in USER_CONFIG_VARS if env.get(k, "").strip()]
    own += [str(cwd / f) for f in USER_CONFIG_FILES if (cwd / f).is_file()]
    if own:
        return Setup("user", message=f"Fast DDS: your configuration is used ({'; '.join(own)})")
    rng = env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").strip().upper()
    local = rng == "LOCALHOST" and not env.get("ROS_DISCOVERY_SERVER", "").strip()
    name, profile = ("loopback_shm", LOOPBACK_PROFILE) if local else ("large_shm", LARGE_SHM_PROFILE)
    try:
        path = find(profile)
    except FileNotFoundError as e:
        return Setup("missing", message=f"Fast DDS: stock setup (512 kB shared memory: best-effort frames over "
                                        f"~512 kB from this host's cameras may drop), because {e}")
    why = ("ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: shared memory with a 32 MB segment + UDP on 127.0.0.1"
           if local else f"ROS_AUTOMATIC_DISCOVERY_RANGE={rng or 'unset'}: Fast DDS's stock transports with a 32 MB "
                         "shared-memory segment")
    return Setup(name, {"FASTDDS_DEFAULT_PROFILES_FILE": str(path)},
                 f"Fast DDS: {path.name} ({why}; {SWITCH}=off to leave Fast DDS as it is)")


def apply(environ=None) -> Setup:
    """choose() for this process and set its variables; call before rclpy.init."""
    environ = os.environ if environ is None else environ
    setup = choose(environ)
    environ.update(setup.env)
    return setup
