"""The repository contract (seed section 0, ARCHITECTURE.md section 3), checked statically."""
import ast
import re
from pathlib import Path

import yaml

from flash_rt.hardware import _PIPELINE_MAP
from flash_rt.models.pi05.config import Pi05Config

ROOT = Path(__file__).resolve().parents[2]


def _module_path(module: str) -> Path:
    return ROOT / (module.replace(".", "/") + ".py")


def test_pipeline_map_is_one_to_one():
    targets = list(_PIPELINE_MAP.values())
    assert len(targets) == len(set(targets)), "two keys share a frontend class (runtime fork)"
    assert len({m for m, _ in targets}) == len(targets), "two keys share a frontend module"


def test_every_entry_exists_and_is_named_by_the_rule():
    for (model, fw, hw), (module, cls) in _PIPELINE_MAP.items():
        path = _module_path(module)
        assert path.exists(), f"{module} missing"
        hw_file = {"rtx_sm120": "rtx"}.get(hw, hw)
        assert path.name == f"{model}_{hw_file}.py", path
        classes = {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)}
        assert cls in classes, f"{cls} not defined in {path}"
        camel = lambda s: "".join(p.capitalize() for p in s.split("_"))  # noqa: E731
        assert cls == f"{camel(model)}{camel(fw)}Frontend{camel(hw_file)}", cls
        pipe = ROOT / "flash_rt" / "models" / model / f"pipeline_{hw_file}.py"
        assert pipe.exists(), f"one compute file per (model, hardware): {pipe} missing"


FORK = re.compile(r"hasattr\(\s*(fvk|kernels|K)\b|get_device_capability|_has_sm\d+|\bif\s+.*arch\s*==")


def test_no_hardware_forks_outside_detection():
    offenders = []
    for pkg in ("flash_rt", "flash_rt_ros"):
        for f in (ROOT / pkg).rglob("*.py"):
            if f == ROOT / "flash_rt" / "hardware" / "__init__.py":
                continue
            for n, line in enumerate(f.read_text().splitlines(), 1):
                if FORK.search(line):
                    offenders.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_shared_primitives_are_model_agnostic():
    for f in (ROOT / "flash_rt" / "hardware").glob("*/shared_primitives.py"):
        text = f.read_text()
        assert not re.search(r"pi0|pi05|groot|adarms|action_", text, re.I), f"model-specific code in {f}"


def test_config_yaml_matches_code():
    y = yaml.safe_load((ROOT / "flash_rt" / "configs" / "pi05.yaml").read_text())
    flat = {k: v for section in y.values() if isinstance(section, dict) for k, v in section.items()}
    code = Pi05Config()
    for k, v in flat.items():
        assert getattr(code, k) == v, f"configs/pi05.yaml {k}={v} but Pi05Config().{k}={getattr(code, k)}"
    assert set(flat) >= {"vis_width", "vis_layers", "width", "layers", "heads", "kv_heads", "head_dim",
                         "mlp", "ex_width", "ex_mlp", "vocab", "action_dim"}


def test_flash_rt_has_no_ros_imports():
    for f in (ROOT / "flash_rt").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+(rclpy|sensor_msgs|std_msgs)", f.read_text(), re.M), f


def test_ros_package_imports_only_the_api():
    allowed = re.compile(r"flash_rt\.(api|errors|noise|io\.images|testing)\b|flash_rt$")
    for f in (ROOT / "flash_rt_ros").rglob("*.py"):
        for m in re.finditer(r"^\s*(?:from|import)\s+(flash_rt(?:\.[\w.]+)?)", f.read_text(), re.M):
            assert allowed.match(m.group(1)), f"{f.relative_to(ROOT)} imports {m.group(1)}"
