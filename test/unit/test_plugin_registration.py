"""The seams a new model plugs into: model-agnostic load_model options, the frontend's own oracle, and run-time
registration of cells that live outside this repo (register_pipeline and the `flash_rt.pipelines` entry points),
with _PIPELINE_MAP staying one-to-one. The plugin here is a real module written to a temp dir and imported by
flash_rt, running on a real tiny checkpoint."""
import ast
from pathlib import Path

import numpy as np
import pytest

import flash_rt
from flash_rt import api, hardware
from flash_rt.errors import HardwareError
from flash_rt.testing import TINY_STATE_DIM

ROOT = Path(__file__).resolve().parents[2]

PLUGIN = '''
"""A plugin cell for the tests: Pi0.5's CPU frontend under another model name, taking fewer options."""
from flash_rt.frontends.torch.pi05_cpu import Pi05TorchFrontendCpu


class Pi05xTorchFrontendCpu(Pi05TorchFrontendCpu):
    def __init__(self, checkpoint, *, num_views=None, seed=None, num_steps=None):
        super().__init__(checkpoint, num_views=num_views, seed=seed, num_steps=num_steps)
'''

NO_ORACLE = PLUGIN + '''
    reference_oracle = None   # a frontend that brings no FP32 oracle
'''


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    pkg = tmp_path / "fr_plugin_x"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "cell_cpu.py").write_text(PLUGIN)
    (pkg / "cell_other.py").write_text(PLUGIN)
    (pkg / "cell_no_oracle.py").write_text(NO_ORACLE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for key in list(hardware._REGISTERED):
        hardware.unregister_pipeline(*key)


def _run_once(pol):
    pol.write_image(0, np.zeros((224, 224, 3), np.uint8))
    pol.write_state(np.zeros(TINY_STATE_DIM))
    pol.set_prompt("pick up the cube")
    return pol.step(noise=np.zeros((pol.action_horizon, 32), np.float32))


def test_register_pipeline_serves_load_model_and_is_one_to_one(plugin_dir, tiny_openpi):
    flash_rt.register_pipeline("pi05x", "torch", "cpu", "fr_plugin_x.cell_cpu:Pi05xTorchFrontendCpu")
    assert "pi05x" in api.supported_configs()
    pol = flash_rt.load_model(tiny_openpi, config="pi05x", hardware="cpu", num_steps=2)
    assert type(pol.frontend).__name__ == "Pi05xTorchFrontendCpu" and pol.config_name == "pi05x"
    assert np.isfinite(_run_once(pol)).all()
    # one-to-one: a taken key, or a module already serving another key, is refused by name
    with pytest.raises(HardwareError, match="duplicate pipeline key.*pi05x"):
        flash_rt.register_pipeline("pi05x", "torch", "cpu", "fr_plugin_x.cell_other:Pi05xTorchFrontendCpu")
    with pytest.raises(HardwareError, match="duplicate pipeline key.*built-in"):
        flash_rt.register_pipeline("pi05", "torch", "cpu", "fr_plugin_x.cell_other:Pi05xTorchFrontendCpu")
    with pytest.raises(HardwareError, match="already serves"):
        flash_rt.register_pipeline("pi05x", "torch", "hopper", "fr_plugin_x.cell_cpu:Pi05xTorchFrontendCpu")
    with pytest.raises(HardwareError, match="unknown hardware 'tpu'"):
        flash_rt.register_pipeline("pi05x", "torch", "tpu", "fr_plugin_x.cell_other:Pi05xTorchFrontendCpu")
    with pytest.raises(HardwareError, match="pkg.module:ClassName"):
        flash_rt.register_pipeline("pi05x", "torch", "hopper", "fr_plugin_x.cell_other.Pi05xTorchFrontendCpu")
    with pytest.raises(HardwareError, match="built-in cell"):
        hardware.unregister_pipeline("pi05", "torch", "cpu")
    hardware.unregister_pipeline("pi05x", "torch", "cpu")
    assert "pi05x" not in api.supported_configs()
    with pytest.raises(HardwareError, match="not supported"):
        flash_rt.load_model(tiny_openpi, config="pi05x", hardware="cpu")


def test_an_option_the_frontend_does_not_take_raises_typeerror_naming_it(plugin_dir, tiny_openpi):
    """The facade passes only what the caller gave; the frontend's __init__ declares what it takes."""
    flash_rt.register_pipeline("pi05x", "torch", "cpu", "fr_plugin_x.cell_cpu:Pi05xTorchFrontendCpu")
    cls = hardware.resolve_frontend("pi05x", "torch", "cpu")
    assert api.frontend_options(cls) == {"num_views", "seed", "num_steps"}
    with pytest.raises(TypeError, match=r"Pi05xTorchFrontendCpu does not take option\(s\) \['max_token_len'\]"):
        flash_rt.load_model(tiny_openpi, config="pi05x", hardware="cpu", max_token_len=48)
    with pytest.raises(TypeError, match=r"\['bogus'\]"):
        flash_rt.load_model(tiny_openpi, hardware="cpu", bogus=1)


def test_reference_chunk_is_the_frontends_oracle(plugin_dir, tiny_openpi):
    """Policy.reference_chunk asks the frontend (the facade imports no model); one without an oracle says so."""
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", num_steps=2)
    out = _run_once(pol).copy()
    assert np.abs(out - pol.reference_chunk()).max() <= 1e-4
    flash_rt.register_pipeline("pi05x", "torch", "cpu", "fr_plugin_x.cell_no_oracle:Pi05xTorchFrontendCpu")
    pol = flash_rt.load_model(tiny_openpi, config="pi05x", hardware="cpu", num_steps=2)
    _run_once(pol)
    with pytest.raises(NotImplementedError, match="Pi05xTorchFrontendCpu provides no reference oracle"):
        pol.reference_chunk()


def test_every_built_in_frontend_takes_the_loader_options():
    """LOADER_OPTIONS are what a caller (the ROS node) may pass to any cell; each frontend declares its own."""
    for key in hardware._BUILT_IN:
        try:
            cls = hardware.resolve_frontend(*key)
        except ImportError as e:   # a GPU cell whose runtime needs a package this machine lacks
            pytest.skip(f"{key}: {e}")
        opts = api.frontend_options(cls)
        assert opts is not None and set(api.LOADER_OPTIONS) <= opts, (key, set(api.LOADER_OPTIONS) - set(opts or ()))
    cpu = api.frontend_options(hardware.resolve_frontend("pi05", "torch", "cpu"))
    assert {"num_threads", "max_token_len", "discrete_state_input"} <= cpu


def _write_dist(site: Path, dist: str, entries: dict) -> None:
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = [f"[{hardware.ENTRY_POINT_GROUP}]"] + [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_entry_points_are_read_lazily_and_duplicates_raise(plugin_dir, tiny_openpi, monkeypatch):
    from importlib.metadata import EntryPoint, distributions, entry_points
    _write_dist(plugin_dir, "fr_plugin_x", {"pi05x/torch/cpu": "fr_plugin_x.cell_cpu:Pi05xTorchFrontendCpu"})
    monkeypatch.setattr(hardware, "_entry_points_read", False)
    assert ("pi05x", "torch", "cpu") not in hardware._PIPELINE_MAP       # nothing read at import
    assert "pi05x" in api.supported_configs()                           # the first look-up reads the group
    assert "fr_plugin_x" in hardware._REGISTERED[("pi05x", "torch", "cpu")]
    assert hardware.load_entry_points() == []                           # the same entry point again: skipped
    pol = flash_rt.load_model(tiny_openpi, config="pi05x", hardware="cpu", num_steps=2)
    assert np.isfinite(_run_once(pol)).all()
    # a second distribution claiming the same key is refused, naming both
    other = plugin_dir / "other_site"
    other.mkdir()
    _write_dist(other, "fr_plugin_y", {"pi05x/torch/cpu": "fr_plugin_x.cell_other:Pi05xTorchFrontendCpu"})
    eps = list(entry_points(group=hardware.ENTRY_POINT_GROUP)) + list(next(distributions(path=[str(other)])).entry_points)
    with pytest.raises(HardwareError, match=r"duplicate pipeline key.*fr_plugin_y.*fr_plugin_x"):
        hardware.load_entry_points(eps)
    bad = [EntryPoint("pi05x-torch-cpu", "a.b:C", hardware.ENTRY_POINT_GROUP)]
    with pytest.raises(HardwareError, match="<config>/<framework>/<hardware>"):
        hardware.load_entry_points(bad)


def test_facade_and_shared_rooms_import_no_model():
    """api.py picks frontends from the map only; hardware rooms and the GPU runtime hold no model's code (the
    attention-site tables live with each model: models/<m>/attention_sites.py)."""
    files = [ROOT / "flash_rt" / "api.py", *(ROOT / "flash_rt" / "hardware").rglob("*.py"),
             *(ROOT / "flash_rt" / "runtime").rglob("*.py")]
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for m in mods:
                assert not m.startswith(("flash_rt.models", "flash_rt.frontends")), f"{f.relative_to(ROOT)} imports {m}"
    tree = ast.parse((ROOT / "flash_rt" / "api.py").read_text())
    load = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "load_model")
    body = "\n".join(ast.unparse(n) for n in load.body[1:])   # after the docstring
    assert "pi05" not in body and "max_token_len" not in body, "load_model's body names a model or its options"
