"""Which topics a flash_rt node reads and writes, and the node parameters the bag tools need.

The bag tools never guess the node's configuration: they take the node's own parameters, validated by the
node's own code (`flash_rt_ros.params.NodeParams.from_values`), from one of

* the running node (replay/record ask it through its standard `~/get_parameters` service),
* a bag written by `replay` or `record` (stored as JSON in metadata.yaml `custom_data`, key NODE_PARAMS_KEY),
* the same parameter files the node was started with (`--params-file F ... -p name:=value`, ROS semantics:
  `/**` and the node's name select a block, later files and `-p` override earlier ones).

From the parameters come the input topics (camera topics in camera_topics order, then the joint-state topic),
resolved against the node's namespace exactly as rclpy resolves the node's relative names.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from flash_rt_ros.bag.types import COMPRESSED_IMAGE, IMAGE, JOINT_STATE, BagError

NODE_PARAMS_KEY = "flash_rt_bag.node_params"      # custom_data key: JSON {parameter: value}
NODE_NAME_KEY = "flash_rt_bag.node"               # custom_data key: fully qualified node name
DEFAULT_NODE = "/flash_rt_node"


def split_node_name(fqn: str) -> tuple[str, str]:
    """'/robot1/flash_rt_node' -> ('/robot1', 'flash_rt_node'); 'flash_rt_node' -> ('/', 'flash_rt_node')."""
    fqn = fqn.strip()
    if not fqn or fqn.endswith("/"):
        raise BagError(f"node name {fqn!r} is not a ROS node name like /flash_rt_node or /robot1/flash_rt_node")
    ns, _, name = ("/" + fqn.lstrip("/")).rpartition("/")
    return (ns or "/"), name


def resolve(name: str, namespace: str = "/", node_name: str = "flash_rt_node") -> str:
    """Resolve a topic name the way rclpy does for a node in `namespace` (relative, absolute, ~/private)."""
    ns = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if name.startswith("~"):
        rest = name[1:].lstrip("/")
        return f"{ns}/{node_name}" + (f"/{rest}" if rest else "")
    if name.startswith("/"):
        return name
    return f"{ns}/{name}"


@dataclasses.dataclass(frozen=True)
class InputTopic:
    """One input of the node: camera i (slot `slot`) or the joint states (slot -1)."""
    index: int          # position in the node's input list: cameras in camera_topics order, then joints
    topic: str          # resolved topic name
    msgtype: str        # IMAGE | COMPRESSED_IMAGE | JOINT_STATE
    slot: int = -1

    @property
    def is_camera(self) -> bool:
        return self.msgtype != JOINT_STATE


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """The node's validated parameters + its name: everything needed to rebuild what it computed."""
    params: object        # flash_rt_ros.params.NodeParams
    values: dict          # the raw {name: value} it was built from (stored in bags as JSON)
    node: str = DEFAULT_NODE

    @property
    def namespace(self) -> str:
        return split_node_name(self.node)[0]

    @property
    def node_name(self) -> str:
        return split_node_name(self.node)[1]

    def resolve(self, name: str) -> str:
        return resolve(name, self.namespace, self.node_name)

    @property
    def inputs(self) -> list[InputTopic]:
        p = self.params
        out = [InputTopic(i, self.resolve(p.subscription_topic(i)), COMPRESSED_IMAGE if p.compressed[i] else IMAGE,
                          int(p.camera_slots[i])) for i in range(len(p.camera_topics))]
        out.append(InputTopic(len(out), self.resolve(p.joint_state_topic), JOINT_STATE))
        return out

    @property
    def chunk_topic(self) -> str:
        return self.resolve("~/action_chunk")

    @property
    def trajectory_topic(self) -> str:
        return self.resolve("~/joint_trajectory")

    def to_json(self) -> str:
        return json.dumps(self.values, sort_keys=True)

    @classmethod
    def from_values(cls, values: dict, node: str = DEFAULT_NODE, overrides: dict | None = None) -> "NodeConfig":
        from flash_rt_ros.params import NodeParams, ParamError

        v = dict(values)
        v.update(overrides or {})
        try:
            p = NodeParams.from_values(v)
        except ParamError as e:
            raise BagError(f"node parameters: {e}") from None
        split_node_name(node)
        return cls(p, v, node)

    @classmethod
    def from_json(cls, text: str, node: str = DEFAULT_NODE, overrides: dict | None = None) -> "NodeConfig":
        try:
            values = json.loads(text)
        except ValueError as e:
            raise BagError(f"stored node parameters are not valid JSON: {e}") from None
        return cls.from_values(values, node, overrides)


# ---------------------------------------------------------------------------------------------------------
# ROS parameter files and -p overrides (no rclpy needed)
# ---------------------------------------------------------------------------------------------------------
def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _matches(key: str, node: str) -> bool:
    ns, name = split_node_name(node)
    key = key.strip()
    fq = f"{ns.rstrip('/')}/{name}"
    return key in ("/**", "**", name, "/" + name, fq, fq.lstrip("/"), f"/**/{name}")


def params_from_files(files, overrides=(), node: str = DEFAULT_NODE) -> dict:
    """{name: value} from ROS 2 parameter YAML files (later files win) and `name:=value` overrides."""
    values: dict = {}
    for f in files or ():
        path = Path(f)
        try:
            doc = yaml.safe_load(path.read_text())
        except OSError as e:
            raise BagError(f"cannot read parameter file {path}: {e}") from None
        except yaml.YAMLError as e:
            raise BagError(f"parameter file {path} is not valid YAML: {e}") from None
        if not isinstance(doc, dict):
            raise BagError(f"parameter file {path} has no node blocks (expected '/**: ros__parameters: ...')")
        for key, block in doc.items():
            if _matches(str(key), node) and isinstance(block, dict):
                values.update(_flatten(block.get("ros__parameters") or {}))
    values.update(parse_overrides(overrides))
    return values


def parse_overrides(items) -> dict:
    """['checkpoint:=/x', 'noise_seed:=7', 'camera_topics:=[a, b]'] -> dict (values parsed as YAML, like ROS)."""
    out = {}
    for item in items or ():
        name, sep, text = str(item).partition(":=")
        if not sep or not name.strip():
            raise BagError(f"parameter override {item!r} is not of the form name:=value")
        try:
            out[name.strip()] = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as e:
            raise BagError(f"parameter override {item!r}: value is not valid YAML: {e}") from None
    return out
