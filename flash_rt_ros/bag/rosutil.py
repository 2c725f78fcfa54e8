"""The rclpy side shared by record and replay: a private context, the node's parameters and lifecycle state
through its standard services, synchronous service calls, and publisher-QoS discovery.

DDS stays where the environment puts it: ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE are read by rcl from
the environment (both bag tools refuse to start when ROS_AUTOMATIC_DISCOVERY_RANGE is unset and no Fast DDS
profile is configured, so a forgotten export never multicasts replayed camera data to the whole subnet; pass
--allow-network to accept the default discovery range). rclpy's own signal handlers are not installed: SIGINT
and SIGTERM set a flag that the spin loops turn into KeyboardInterrupt between callbacks (never in the middle of
writing a message), so record/replay close their bags cleanly.
"""
from __future__ import annotations

import os
import signal
import time

from flash_rt_ros.bag.types import BagError

_LIFECYCLE = {0: "unknown", 1: "unconfigured", 2: "inactive", 3: "active", 4: "finalized"}


def check_network_scope(allow_network: bool = False) -> None:
    if allow_network:
        return
    rng = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "")
    if rng.upper() in ("LOCALHOST", "OFF") or os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return
    raise BagError("ROS_AUTOMATIC_DISCOVERY_RANGE is not LOCALHOST (and no FASTDDS_DEFAULT_PROFILES_FILE is set): "
                   "refusing to publish/record off the loopback interface. export "
                   "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (and ROS_DOMAIN_ID=<the node's>), or pass "
                   "--allow-network when the node really runs on another host")


class RosSession:
    """rclpy context + one node + a single-threaded executor, for a tool's lifetime (a context manager).

    shm_profile: give this process the Fast DDS setup of our other entry points (flash_rt_ros/fastdds.py: a 32 MB
    shared-memory segment; loopback-only under ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, stock transports
    otherwise, nothing when the user configured Fast DDS). Measured here: 100 rgb8 640x480 frames at 20 Hz into a
    best-effort (sensor-data) subscriber, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: 2-4 arrive with the default
    transports, 100 when the *publisher* alone uses the profile (the sender's segment carries the sample). Replay
    publishes such frames, so it turns this on. (Before, it always took the loopback-only profile, which cut a
    replay with --allow-network off from a node on another host.)
    """

    def __init__(self, name: str, shm_profile: bool = False):
        from flash_rt_ros import fastdds

        self.name = name
        self.interrupted = ""
        self.dds = fastdds.choose(os.environ) if shm_profile else None

    def _on_signal(self, signum, frame) -> None:
        self.interrupted = signal.Signals(signum).name

    def check_interrupt(self) -> None:
        if self.interrupted:
            raise KeyboardInterrupt(self.interrupted)

    def __enter__(self) -> "RosSession":
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions

        if self.dds is not None:
            os.environ.update(self.dds.env)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self._old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        self.node = rclpy.create_node(self.name, context=self.context, start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.executor.shutdown()
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self.context.shutdown()
            for s, h in self._old.items():
                signal.signal(s, h)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.check_interrupt()
            left = end - time.monotonic()
            if left <= 0:
                return
            self.executor.spin_once(timeout_sec=min(left, 0.05))

    def spin_until(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not cond():
            self.check_interrupt()
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.executor.spin_once(timeout_sec=min(left, 0.02))
        return True

    def call(self, srv_type, name: str, request, timeout: float, what: str):
        cli = self.node.create_client(srv_type, name)
        try:
            if not self.spin_until(cli.service_is_ready, timeout):
                raise BagError(f"{what}: no service {name!r} within {timeout:g} s (is the node running, with the "
                               f"same ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID', '0')}?)")
            fut = cli.call_async(request)
            if not self.spin_until(fut.done, timeout):
                raise BagError(f"{what}: {name!r} did not answer within {timeout:g} s")
            return fut.result()
        finally:
            self.node.destroy_client(cli)


def fetch_node_params(ros: RosSession, node: str, timeout: float) -> dict:
    """The flash_rt node's parameters ({name: value}, unset as None) via its ~/get_parameters service."""
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    from flash_rt_ros.params import SPEC

    names = list(SPEC)
    res = ros.call(GetParameters, f"{node}/get_parameters", GetParameters.Request(names=names), timeout,
                   f"reading the parameters of {node}")
    values = list(res.values)
    if len(values) != len(names):
        # rclpy answers an empty list when any requested parameter is declared but unset (e.g. an empty
        # joint_limits_lower): ask one by one (one client), an unset one answers empty too and is None here
        values = _one_by_one(ros, f"{node}/get_parameters", names, timeout, f"reading the parameters of {node}")
    out = {}
    for n, v in zip(names, values):
        if v is None:
            out[n] = None
            continue
        out[n] = None if v.type == 0 else parameter_value_to_python(v)
        if isinstance(out[n], (list, tuple)):
            out[n] = list(out[n])
    return out


def _one_by_one(ros: RosSession, service: str, names: list, timeout: float, what: str) -> list:
    from rcl_interfaces.srv import GetParameters

    cli = ros.node.create_client(GetParameters, service)
    try:
        if not ros.spin_until(cli.service_is_ready, timeout):
            raise BagError(f"{what}: no service {service!r} within {timeout:g} s")
        out = []
        for n in names:
            fut = cli.call_async(GetParameters.Request(names=[n]))
            if not ros.spin_until(fut.done, timeout):
                raise BagError(f"{what}: {service!r} did not answer for {n!r} within {timeout:g} s")
            r = fut.result()
            out.append(r.values[0] if r.values else None)
        return out
    finally:
        ros.node.destroy_client(cli)


def lifecycle_state(ros: RosSession, node: str, timeout: float) -> str:
    from lifecycle_msgs.srv import GetState

    res = ros.call(GetState, f"{node}/get_state", GetState.Request(), timeout, f"reading the state of {node}")
    return res.current_state.label or _LIFECYCLE.get(res.current_state.id, "unknown")


def subscription_qos(ros: RosSession, topic: str, depth: int = 100):
    """Reliable if every publisher on `topic` is reliable (so nothing is dropped), else best effort (which
    matches any publisher) -- what `ros2 bag record` does."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    infos = ros.node.get_publishers_info_by_topic(topic)
    reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    return QoSProfile(depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)


def topic_types(ros: RosSession) -> dict[str, list[str]]:
    return {name: list(types) for name, types in ros.node.get_topic_names_and_types()}
