"""The node's ROS parameters: one table of (name, default, description), declaration, reading and validation.

`NodeParams.from_values(dict)` is pure (unit-tested without ROS); `declare(node)` / `read(node)` wrap it.
A value that can't work raises ParamError (a ValueError) whose message names the parameter; the node logs it and
fails the `configure` transition, so a bad YAML never gets as far as loading a model.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from flash_rt.api import SUPPORTED_HARDWARE, supported_frameworks
from flash_rt_ros.conversions import INTERPOLATIONS


class ParamError(ValueError):
    """A ROS parameter value that the node can't run with."""


# name -> (default, description). Empty lists are declared typed-but-unset (rclpy can't infer a type from []).
_STR_ARRAY = "string[]"
_INT_ARRAY = "integer[]"
_DBL_ARRAY = "double[]"
_ARRAYS = (_STR_ARRAY, _INT_ARRAY, _DBL_ARRAY)
SPEC: dict[str, tuple[object, str]] = {
    "checkpoint": ("", "checkpoint dir (model.safetensors + config.json + assets/, or openpi's Orbax params/ + "
                             "assets/) or the .safetensors file"),
    "model": ("pi05", "model family for flash_rt.load_model(config=...)"),
    "framework": ("auto", "auto (from the checkpoint: model.safetensors -> torch, openpi Orbax params/ -> jax) | "
                          + " | ".join(supported_frameworks())),
    "hardware": ("auto", "auto (detect) | " + " | ".join(SUPPORTED_HARDWARE)),
    "num_views": (0, "model camera slots; 0 = len(camera_topics)"),
    "num_steps": (10, "flow-matching denoising steps"),
    "action_horizon": (0, "rows per chunk; 0 = the checkpoint's"),
    "action_dim": (0, "action columns to publish; 0 = len(action norm stats)"),
    "tokenizer": ("", "SentencePiece .model; empty = from the checkpoint dir"),
    "norm_stats": ("", "norm_stats.json or asset id; empty = auto-discover"),
    "weight_cache_dir": ("", "flash_rt weight cache dir; empty = ~/.flash_rt/weights"),
    "calibration_dir": ("", "FP8 calibration cache dir; empty = ~/.flash_rt/calibration"),
    "camera_topics": (_STR_ARRAY, "image topics, in model slot order unless camera_slots is set; a topic ending "
                                  "in /compressed is subscribed as sensor_msgs/CompressedImage"),
    "camera_slots": (_INT_ARRAY, "model slot of each camera topic; empty = 0, 1, 2, ..."),
    "image_transport": ("raw", "raw | compressed (compressed subscribes to <topic>/compressed)"),
    "image_interpolation": ("linear", "linear (~0.12 ms / 640x480 frame) | area (~1.2 ms; closer to openpi's PIL)"),
    "expected_image_width": (0, "reject frames of another width (0 = any)"),
    "expected_image_height": (0, "reject frames of another height (0 = any)"),
    "joint_state_topic": ("joint_states", "sensor_msgs/JointState input"),
    "state_joint_names": (_STR_ARRAY, "joints forming the policy state, in state order (mapped by name)"),
    "action_joint_names": (_STR_ARRAY, "the joint (or command) each action column maps to, in model order; empty = "
                                       "action_0 .. action_{n-1}"),
    "action_semantics": (_STR_ARRAY, "per action column: position | delta | velocity | command (required; "
                                     "docs/ros.md 'Action semantics')"),
    "command_in_trajectory": (True, "command columns go into ~/joint_trajectory as the position of their joint "
                                    "(false: ~/action_chunk only)"),
    "action_delta_mask": (_INT_ARRAY, "engine output stage adds the state to these dims (openpi make_bool_mask "
                                      "notation, e.g. [6, -1, 6, -1]); empty = none"),
    "realtime_chunking": (False, "real-time chunking: the rows that execute during inference are fixed to the "
                                 "previous chunk's (engine inpainting)"),
    "safety_mode": ("clamp", "clamp | reject: what a chunk outside the limits gets (non-finite is always rejected)"),
    "on_reject": ("skip", "skip (publish nothing) | hold (publish a trajectory that stays at the observed state)"),
    "joint_limits_names": (_STR_ARRAY, "joints the joint_limits_* arrays describe (they override the URDF)"),
    "joint_limits_lower": (_DBL_ARRAY, "lower position limit per joint_limits_names entry"),
    "joint_limits_upper": (_DBL_ARRAY, "upper position limit per joint_limits_names entry"),
    "joint_limits_velocity": (_DBL_ARRAY, "velocity limit per joint_limits_names entry (0 = none)"),
    "max_relative_target": (_DBL_ARRAY, "max distance of the first point from the observed joint state: one value "
                                        "or one per trajectory joint; empty = off"),
    "robot_description": ("", "URDF text: <limit lower upper velocity> of the trajectory joints"),
    "robot_description_topic": ("robot_description", "std_msgs/String URDF topic (transient local); '' = none"),
    "min_image_side": (32, "refuse camera frames with a side shorter than this (pixels)"),
    "control_rate_hz": (10.0, "chunks per second (timer rate)"),
    "action_dt": (0.0, "seconds between chunk rows; 0 = 1 / control_rate_hz"),
    "max_observation_age_s": (0.5, "skip the tick (and WARN) when any input is older than this"),
    "prompt": ("", "initial task prompt (change at run time with ~/set_prompt)"),
    "noise_seed": (-1, ">= 0: chunk k uses flash_rt.noise.seeded_noise(seed, k) (reproducible); -1: fresh noise"),
    "publish_trajectory": (True, "also publish trajectory_msgs/JointTrajectory on ~/joint_trajectory"),
    "diagnostics_period_s": (1.0, "period of /diagnostics status messages"),
    "cpu_threads": (0, "torch intra-op threads (torch.set_num_threads); 0 = library default. On small CPUs 1 "
                       "avoids OpenMP spinning against the executor thread and the camera processes"),
    "warmup_steps": (2, "policy.step() calls on configure, before the first tick"),
    "executor": ("events", "events (rclpy.experimental.EventsExecutor) | single (SingleThreadedExecutor)"),
    "autostart": (True, "configure + activate on start (console entry point); false = wait for lifecycle calls"),
}

HARDWARE = ("auto",) + tuple(SUPPORTED_HARDWARE)   # exactly what flash_rt.load_model accepts
FRAMEWORKS = ("auto",) + supported_frameworks()
EXECUTORS = ("events", "single")


@dataclass(frozen=True)
class NodeParams:
    checkpoint: str
    camera_topics: tuple[str, ...]
    camera_slots: tuple[int, ...]
    state_joint_names: tuple[str, ...]
    action_joint_names: tuple[str, ...] = ()
    model: str = "pi05"
    framework: str = "auto"
    hardware: str = "auto"
    num_views: int = 0
    num_steps: int = 10
    action_horizon: int = 0
    action_dim: int = 0
    tokenizer: str = ""
    norm_stats: str = ""
    weight_cache_dir: str = ""
    calibration_dir: str = ""
    image_transport: str = "raw"
    image_interpolation: str = "linear"
    expected_image_width: int = 0
    expected_image_height: int = 0
    joint_state_topic: str = "joint_states"
    control_rate_hz: float = 10.0
    action_dt: float = 0.0
    max_observation_age_s: float = 0.5
    prompt: str = ""
    noise_seed: int = -1
    publish_trajectory: bool = True
    diagnostics_period_s: float = 1.0
    warmup_steps: int = 2
    cpu_threads: int = 0
    executor: str = "events"
    autostart: bool = True
    action_semantics: tuple[str, ...] = ()
    command_in_trajectory: bool = True
    action_delta_mask: tuple[int, ...] = ()
    realtime_chunking: bool = False
    safety_mode: str = "clamp"
    on_reject: str = "skip"
    joint_limits_names: tuple[str, ...] = ()
    joint_limits_lower: tuple[float, ...] = ()
    joint_limits_upper: tuple[float, ...] = ()
    joint_limits_velocity: tuple[float, ...] = ()
    max_relative_target: tuple[float, ...] = ()
    robot_description: str = ""
    robot_description_topic: str = "robot_description"
    min_image_side: int = 32
    compressed: tuple[bool, ...] = field(default=())

    @property
    def period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def dt(self) -> float:
        return self.action_dt if self.action_dt > 0 else self.period_s

    @property
    def expected_size(self) -> tuple[int, int] | None:
        if self.expected_image_width > 0 and self.expected_image_height > 0:
            return (self.expected_image_width, self.expected_image_height)
        return None

    @property
    def views(self) -> int:
        return self.num_views if self.num_views > 0 else max(self.camera_slots) + 1

    def subscription_topic(self, i: int) -> str:
        t = self.camera_topics[i]
        if self.image_transport == "compressed" and not t.endswith("/compressed"):
            return t.rstrip("/") + "/compressed"
        return t

    @classmethod
    def from_values(cls, values: dict) -> "NodeParams":
        """Validate a {name: value} dict (unset arrays as None or []) into NodeParams."""
        v = {k: values.get(k, d if not isinstance(d, str) or d not in _ARRAYS else None)
             for k, (d, _) in SPEC.items()}
        for k, (d, _) in SPEC.items():
            if isinstance(d, str) and d in _ARRAYS:
                v[k] = tuple(v[k] or ())

        def bad(name, why):
            raise ParamError(f"parameter {name!r}: {why} (got {v[name]!r})")

        if not str(v["checkpoint"]).strip():
            bad("checkpoint", "is required: the path of a Pi0.5 checkpoint directory or .safetensors file")
        if not v["camera_topics"]:
            bad("camera_topics", "needs at least one image topic")
        if len(set(v["camera_topics"])) != len(v["camera_topics"]):
            bad("camera_topics", "has duplicate topics")
        if not v["camera_slots"]:
            v["camera_slots"] = tuple(range(len(v["camera_topics"])))
        if len(v["camera_slots"]) != len(v["camera_topics"]):
            bad("camera_slots", f"needs one slot per camera topic ({len(v['camera_topics'])})")
        if any(s < 0 for s in v["camera_slots"]) or len(set(v["camera_slots"])) != len(v["camera_slots"]):
            bad("camera_slots", "must be distinct slot indices >= 0")
        if v["num_views"] < 0:
            bad("num_views", "must be >= 0 (0 = number of cameras)")
        if v["num_views"] and max(v["camera_slots"]) >= v["num_views"]:
            bad("camera_slots", f"slot {max(v['camera_slots'])} does not exist with num_views={v['num_views']}")
        if not v["state_joint_names"]:
            bad("state_joint_names", "needs the joint names that form the policy state, in order")
        for k in ("state_joint_names", "action_joint_names"):
            if len(set(v[k])) != len(v[k]):
                bad(k, "has duplicate names")
        if v["image_transport"] not in ("raw", "compressed"):
            bad("image_transport", "must be 'raw' or 'compressed'")
        if v["image_interpolation"] not in INTERPOLATIONS:
            bad("image_interpolation", f"must be one of {INTERPOLATIONS}")
        if v["hardware"] not in HARDWARE:
            rtx = [h for h in HARDWARE if h.startswith("rtx_")]
            hint = f" (an RTX card is one of {', '.join(rtx)}, by compute capability)" if v["hardware"] == "rtx" else ""
            bad("hardware", "must be one of " + ", ".join(HARDWARE) + hint)
        if v["framework"] not in FRAMEWORKS:
            bad("framework", "must be one of " + ", ".join(FRAMEWORKS))
        if v["executor"] not in EXECUTORS:
            bad("executor", f"must be one of {EXECUTORS}")
        for k in ("expected_image_width", "expected_image_height", "action_horizon", "action_dim", "warmup_steps",
                  "cpu_threads"):
            if v[k] < 0:
                bad(k, "must be >= 0")
        if v["num_steps"] < 1:
            bad("num_steps", "must be >= 1")
        for k in ("control_rate_hz", "max_observation_age_s", "diagnostics_period_s"):
            if not (isinstance(v[k], (int, float)) and math.isfinite(v[k]) and v[k] > 0):
                bad(k, "must be a finite number > 0")
        if v["control_rate_hz"] > 1000:
            bad("control_rate_hz", "must be <= 1000")
        if not (math.isfinite(v["action_dt"]) and v["action_dt"] >= 0):
            bad("action_dt", "must be >= 0 (0 = 1/control_rate_hz)")
        from flash_rt_ros.action_semantics import KINDS
        bad_kinds = [k for k in v["action_semantics"] if k not in KINDS]
        if bad_kinds:
            bad("action_semantics", f"entries must be one of {KINDS}; {bad_kinds} are not")
        if v["action_joint_names"] and v["action_semantics"] and \
                len(v["action_joint_names"]) != len(v["action_semantics"]):
            bad("action_semantics", f"needs one entry per action_joint_names entry ({len(v['action_joint_names'])})")
        if any(int(n) == 0 for n in v["action_delta_mask"]):
            bad("action_delta_mask", "entries are non-zero: n > 0 = n delta dims, n < 0 = |n| absolute dims")
        if v["safety_mode"] not in ("clamp", "reject"):
            bad("safety_mode", "must be 'clamp' or 'reject'")
        if v["on_reject"] not in ("skip", "hold"):
            bad("on_reject", "must be 'skip' (publish nothing) or 'hold' (hold the observed state)")
        n_lim = len(v["joint_limits_names"])
        for k in ("joint_limits_lower", "joint_limits_upper", "joint_limits_velocity"):
            if v[k] and len(v[k]) != n_lim:
                bad(k, f"needs one value per joint_limits_names entry ({n_lim})")
            if any(not math.isfinite(float(x)) for x in v[k]):
                bad(k, "values must be finite numbers")
        for lo, hi, n in zip(v["joint_limits_lower"], v["joint_limits_upper"], v["joint_limits_names"]):
            if lo > hi:
                bad("joint_limits_lower", f"joint {n!r}: lower {lo} > upper {hi}")
        if any(not (math.isfinite(float(x)) and x > 0) for x in v["max_relative_target"]):
            bad("max_relative_target", "values must be finite and > 0 (leave it empty to turn it off)")
        if v["min_image_side"] < 1:
            bad("min_image_side", "must be >= 1 pixel")
        if v["noise_seed"] < -1:
            bad("noise_seed", "must be -1 (fresh noise) or a seed >= 0")
        v["compressed"] = tuple(v["image_transport"] == "compressed" or t.endswith("/compressed")
                                for t in v["camera_topics"])
        for k in ("control_rate_hz", "action_dt", "max_observation_age_s", "diagnostics_period_s"):
            v[k] = float(v[k])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: val for k, val in v.items() if k in names})


def declare(node) -> None:
    """Declare every parameter in SPEC on an rclpy node (typed; empty arrays stay unset)."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.parameter import Parameter

    for name, (default, desc) in SPEC.items():
        if node.has_parameter(name):
            continue
        d = ParameterDescriptor(description=desc)
        if default == _STR_ARRAY:
            node.declare_parameter(name, Parameter.Type.STRING_ARRAY, d)
        elif default == _INT_ARRAY:
            node.declare_parameter(name, Parameter.Type.INTEGER_ARRAY, d)
        elif default == _DBL_ARRAY:
            node.declare_parameter(name, Parameter.Type.DOUBLE_ARRAY, d)
        else:
            node.declare_parameter(name, default, d)


def raw_values(node) -> dict:
    """{name: value} of the declared parameters; unset ones as None."""
    from rclpy.exceptions import ParameterUninitializedException

    out = {}
    for name in SPEC:
        try:
            val = node.get_parameter(name).value
        except ParameterUninitializedException:
            val = None
        out[name] = list(val) if isinstance(val, (list, tuple)) or hasattr(val, "tolist") else val
    return out


def read(node) -> NodeParams:
    return NodeParams.from_values(raw_values(node))
