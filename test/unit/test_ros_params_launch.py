"""Parameters (pure validation), the config YAMLs, and a static check of every launch file: `ros2 launch` can't run
here, so this proves each launch file's package / executable / params-file references resolve to files this repo
installs, and that the console entry point runs the same program."""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from flash_rt_ros.params import SPEC, NodeParams, ParamError

REPO = Path(__file__).resolve().parents[2]
LAUNCH = sorted((REPO / "launch").glob("*.launch.py"))
CONFIGS = sorted((REPO / "config").glob("pi0*_*.yaml"))   # pi05_<target> and pi0_<target>
BASE = dict(checkpoint="/x", camera_topics=["a", "b/compressed"], state_joint_names=["j1", "j2"])


def test_minimal_params_and_defaults():
    p = NodeParams.from_values(BASE)
    assert p.camera_slots == (0, 1) and p.views == 2 and p.compressed == (False, True)
    assert p.period_s == pytest.approx(0.1) and p.dt == pytest.approx(0.1) and p.noise_seed == -1
    assert p.subscription_topic(0) == "a"
    p = NodeParams.from_values(dict(BASE, image_transport="compressed", action_dt=0.05, num_views=3))
    assert p.subscription_topic(0) == "a/compressed" and p.subscription_topic(1) == "b/compressed"
    assert p.dt == 0.05 and p.views == 3


@pytest.mark.parametrize("change, needle", [
    (dict(checkpoint=""), "'checkpoint': is required"),
    (dict(camera_topics=[]), "at least one image topic"),
    (dict(camera_topics=["a", "a"]), "duplicate topics"),
    (dict(camera_slots=[0]), "one slot per camera"),
    (dict(camera_slots=[1, 1]), "distinct"),
    (dict(num_views=1), "does not exist with num_views=1"),
    (dict(state_joint_names=[]), "state_joint_names"),
    (dict(action_joint_names=["x", "x"]), "duplicate names"),
    (dict(image_transport="theora"), "'raw' or 'compressed'"),
    (dict(image_interpolation="cubic"), "image_interpolation"),
    (dict(hardware="tpu"), "hardware"),
    (dict(executor="multi"), "executor"),
    (dict(control_rate_hz=0.0), "control_rate_hz"),
    (dict(control_rate_hz=float("nan")), "control_rate_hz"),
    (dict(max_observation_age_s=-1.0), "max_observation_age_s"),
    (dict(noise_seed=-5), "noise_seed"),
    (dict(num_steps=0), "num_steps"),
    (dict(action_semantics=["position", "torque"]), "['torque'] are not"),
    (dict(action_joint_names=["a", "b"], action_semantics=["position"]), "one entry per action_joint_names entry (2)"),
    (dict(action_delta_mask=[6, 0]), "entries are non-zero"),
    (dict(safety_mode="warn"), "'clamp' or 'reject'"),
    (dict(on_reject="stop"), "'skip' (publish nothing) or 'hold'"),
    (dict(joint_limits_names=["a", "b"], joint_limits_lower=[0.0]), "one value per joint_limits_names entry (2)"),
    (dict(joint_limits_names=["a"], joint_limits_lower=[1.0], joint_limits_upper=[0.0]), "lower 1.0 > upper 0.0"),
    (dict(max_relative_target=[0.0]), "finite and > 0"),
    (dict(min_image_side=0), "min_image_side"),
])
def test_bad_params_name_the_parameter(change, needle):
    with pytest.raises(ParamError, match=re.escape(needle)):
        NodeParams.from_values(dict(BASE, **change))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda p: p.name)
def test_config_yaml_is_valid(cfg):
    doc = yaml.safe_load(cfg.read_text())
    params = doc["/**"]["ros__parameters"]
    unknown = set(params) - set(SPEC)
    assert not unknown, f"{cfg.name}: unknown parameters {unknown}"
    p = NodeParams.from_values(dict(params, checkpoint="/models/x"))
    assert len(p.camera_topics) == 3 and p.camera_slots == (0, 1, 2)
    assert not any(t.startswith("/") for t in p.camera_topics), "relative topics follow the namespace"


def test_hardware_names_are_exactly_the_engines():
    """params accepted "rtx", which flash_rt.load_model rejects: the node then failed at load time instead of at
    parameter validation. The list now comes from flash_rt.api."""
    from flash_rt.api import SUPPORTED_HARDWARE
    from flash_rt_ros.params import HARDWARE

    assert HARDWARE == ("auto",) + tuple(SUPPORTED_HARDWARE)
    for hw in HARDWARE:
        assert NodeParams.from_values(dict(BASE, hardware=hw)).hardware == hw
    with pytest.raises(ParamError, match=re.escape(f"'hardware': must be one of {', '.join(HARDWARE)} (an RTX card "
                                                   "is one of rtx_sm120")):
        NodeParams.from_values(dict(BASE, hardware="rtx"))
    assert all(hw in SPEC["hardware"][1] for hw in HARDWARE)


def test_framework_names_are_exactly_the_engines():
    """The node's framework parameter takes what flash_rt.load_model does: auto (the default: openpi Orbax params/ ->
    jax, model.safetensors -> torch), torch, jax; anything else fails at parameter validation, not at load time."""
    from flash_rt.api import supported_frameworks
    from flash_rt_ros.params import FRAMEWORKS

    assert FRAMEWORKS == ("auto",) + supported_frameworks() and "jax" in FRAMEWORKS
    assert NodeParams.from_values(BASE).framework == "auto"
    for fw in FRAMEWORKS:
        assert NodeParams.from_values(dict(BASE, framework=fw)).framework == fw
    with pytest.raises(ParamError, match=re.escape("'framework': must be one of auto, jax, torch (got 'orbax')")):
        NodeParams.from_values(dict(BASE, framework="orbax"))


def test_every_spec_parameter_is_a_field():
    fields = set(NodeParams.__dataclass_fields__)
    assert set(SPEC) <= fields


def _module_constants(path: Path) -> tuple[dict, list, set]:
    tree = ast.parse(path.read_text())
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    args = {c.args[0].value for c in calls if getattr(c.func, "id", "") == "DeclareLaunchArgument"}
    return consts, calls, args


COMMON = REPO / "flash_rt_ros" / "launch_common.py"


def test_there_are_four_launch_files():
    for model in ("pi05", "pi0"):
        assert {p.name for p in LAUNCH} >= {f"{model}_{t}.launch.py" for t in ("thor", "rtx", "hopper", "cpu")}
    for cfg in CONFIGS:   # each model's config names its model
        assert yaml.safe_load(cfg.read_text())["/**"]["ros__parameters"]["model"] == cfg.name.split("_")[0]


def test_shared_launch_description_references_resolve():
    _, calls, args = _module_constants(COMMON)
    assert {"checkpoint", "params_file", "namespace", "prompt"} <= args
    from flash_rt_ros.launch_common import LAUNCH_ARGUMENTS, node_spec  # importable without launch/launch_ros
    assert set(LAUNCH_ARGUMENTS) == args
    # the description hands launch_ros exactly node_spec(...)'s kwargs
    nodes = [c for c in calls if getattr(c.func, "id", "") == "Node"]
    assert len(nodes) == 1 and ast.unparse(nodes[0]) == "Node(**node_spec(**args).launch_ros_kwargs())"
    spec = node_spec("x.yaml")
    package, executable = spec.package, spec.executable
    # package: this repository's package.xml / CMake project
    assert package == ET.parse(REPO / "package.xml").getroot().findtext("name") == "flash_rt_ros"
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert f"project({package})" in cmake
    # executable: installed to lib/<package>/ by CMakeLists.txt, and runs flash_rt_ros.main like the console script
    assert re.search(rf"install\(PROGRAMS[^)]*scripts/{executable}\b[^)]*DESTINATION lib/\$\{{PROJECT_NAME\}}", cmake)
    script = (REPO / "scripts" / executable).read_text()
    assert "from flash_rt_ros.main import main" in script
    assert "flash-rt-node=flash_rt_ros.main:main" in (REPO / "setup.py").read_text()
    from flash_rt_ros import fastdds
    assert (REPO / "config" / fastdds.LOOPBACK_PROFILE).is_file() and (REPO / "config" / fastdds.LARGE_SHM_PROFILE).is_file()
    assert re.search(r"install\(DIRECTORY launch config\s+DESTINATION share/\$\{PROJECT_NAME\}", cmake)


def test_node_spec_is_what_the_launch_runs(tmp_path):
    from flash_rt_ros.launch_common import node_spec

    spec = node_spec("/share/config/pi05_cpu.yaml", checkpoint="/models/x", prompt="", namespace="robot1")
    kw = spec.launch_ros_kwargs()
    assert kw["parameters"] == ["/share/config/pi05_cpu.yaml", {"checkpoint": "/models/x"}]
    assert (kw["package"], kw["executable"], kw["name"], kw["namespace"]) == ("flash_rt_ros", "flash_rt_node",
                                                                              "flash_rt_node", "robot1")
    assert kw["additional_env"] is None
    argv = spec.argv(["prog"], tmp_path)
    assert argv == ["prog", "--ros-args", "-r", "__node:=flash_rt_node", "-r", "__ns:=/robot1",
                    "--params-file", "/share/config/pi05_cpu.yaml", "--params-file", str(tmp_path / "launch_params_1.yaml")]
    assert yaml.safe_load((tmp_path / "launch_params_1.yaml").read_text()) == {
        "/**": {"ros__parameters": {"checkpoint": "/models/x"}}}
    assert node_spec("f.yaml").argv(["prog"], tmp_path)[3:7] == ["__node:=flash_rt_node", "-r", "__ns:=/",
                                                                  "--params-file"]
    assert node_spec("f.yaml").parameters == ["f.yaml"]           # no overrides: no second file
    # an action space layered over the target's file, before the command-line overrides
    assert node_spec("f.yaml", checkpoint="/m", actions_file="/share/config/actions/droid.yaml").parameters == [
        "f.yaml", "/share/config/actions/droid.yaml", {"checkpoint": "/m"}]


ACTION_FILES = sorted((REPO / "config" / "actions").glob("*.yaml"))


@pytest.mark.parametrize("cfg", ACTION_FILES, ids=lambda p: p.name)
def test_action_space_files_layer_over_every_target(cfg):
    """config/actions/*.yaml hold only known parameters and, over any target's file, validate (semantics, limits)."""
    layer = yaml.safe_load(cfg.read_text())["/**"]["ros__parameters"]
    assert not set(layer) - set(SPEC)
    assert len(layer["action_semantics"]) == len(layer["action_joint_names"]) == layer["action_dim"]
    for target in CONFIGS:
        base = yaml.safe_load(target.read_text())["/**"]["ros__parameters"]
        p = NodeParams.from_values(dict(base, **layer, checkpoint="/models/x"))
        assert p.action_semantics == tuple(layer["action_semantics"])


@pytest.mark.parametrize("value, env", [("auto", None), ("true", None), ("off", {"FLASH_RT_FASTDDS": "off"}),
                                        ("false", {"FLASH_RT_FASTDDS": "off"}), ("OFF", {"FLASH_RT_FASTDDS": "off"})])
def test_node_spec_fastdds_profile(value, env):
    from flash_rt_ros.launch_common import node_spec
    assert node_spec("f.yaml", fastdds_profile=value).launch_ros_kwargs()["additional_env"] == env


def test_node_spec_rejects_an_unknown_fastdds_profile():
    from flash_rt_ros.launch_common import node_spec
    with pytest.raises(ValueError, match="fastdds_profile must be 'auto' or 'off' \\(got 'loopback'\\)"):
        node_spec("f.yaml", fastdds_profile="loopback")


@pytest.mark.parametrize("path", LAUNCH, ids=lambda p: p.name)
def test_launch_file_references_resolve(path):
    consts, calls, _ = _module_constants(path)
    text = path.read_text()
    assert "from flash_rt_ros.launch_common import pi05_launch_description" in text
    assert "generate_launch_description" in text
    # params file: in config/ (installed to share/<package>/config), named after the launch file
    assert consts["PARAMS_FILE"] == path.name.replace(".launch.py", ".yaml")
    assert (REPO / "config" / consts["PARAMS_FILE"]).is_file()
    assert any(getattr(c.func, "id", "") == "pi05_launch_description" for c in calls)


def test_fastdds_profile_is_loopback_and_shm():
    root = ET.parse(REPO / "config" / "fastdds_loopback_shm.xml").getroot()
    ns = {"d": "http://www.eprosima.com"}
    types = [e.text for e in root.iterfind(".//d:transport_descriptor/d:type", ns)]
    assert sorted(types) == ["SHM", "UDPv4"]
    addrs = {e.text for e in root.iterfind(".//d:address", ns)}
    assert addrs == {"127.0.0.1"}
    assert root.find(".//d:useBuiltinTransports", ns).text == "false"
    assert int(root.find(".//d:segment_size", ns).text) >= 4 * 640 * 480 * 3


def test_fastdds_large_shm_profile_is_stock_transports_with_a_big_segment():
    """Only the shared-memory segment differs from Fast DDS's stock setup: UDPv4 on every interface (no whitelist),
    no discovery locators or peers, so cross-host traffic is as without a profile."""
    root = ET.parse(REPO / "config" / "fastdds_large_shm.xml").getroot()
    ns = {"d": "http://www.eprosima.com"}
    types = [e.text for e in root.iterfind(".//d:transport_descriptor/d:type", ns)]
    assert sorted(types) == ["SHM", "UDPv4"]
    assert root.find(".//d:interfaceWhiteList", ns) is None and root.find(".//d:builtin", ns) is None
    assert int(root.find(".//d:segment_size", ns).text) >= 4 * 640 * 480 * 3 * 3


def test_package_xml_lists_every_ros_import():
    """Every ROS package that flash_rt_ros/*.py imports is an exec_depend (or depend) of package.xml."""
    root = ET.parse(REPO / "package.xml").getroot()
    deps = {e.text for tag in ("depend", "exec_depend", "build_depend") for e in root.iter(tag)}
    ros_pkgs = {"rclpy", "sensor_msgs", "std_msgs", "trajectory_msgs", "diagnostic_msgs", "builtin_interfaces",
                "lifecycle_msgs", "rcl_interfaces", "std_srvs", "geometry_msgs"}
    used = set()
    for f in (REPO / "flash_rt_ros").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                used.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                used.update(a.name.split(".")[0] for a in node.names)
    missing = (used & ros_pkgs) - deps
    assert not missing, f"package.xml lacks {missing}"
    assert {"rosidl_default_generators", "ament_cmake"} <= {e.text for e in root.iter("buildtool_depend")}
    assert "rosidl_interface_packages" in {e.text for e in root.iter("member_of_group")}
