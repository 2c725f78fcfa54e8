"""Hardware detection and the (model, framework, hardware) -> frontend map.

This is the ONLY place that looks at the device's capabilities (contract rule 1). Everything downstream is
chosen by the map: one file and one class per key, never two keys sharing a class (rule 4), so a stack
trace always names the hardware path it ran.

A model that lives outside this repository joins the map at run time (docs/plugin_model_template.md): by
`register_pipeline(config, framework, hardware, "pkg.module:Class")`, or by an entry point in the
`flash_rt.pipelines` group (name "<config>/<framework>/<hardware>", value "pkg.module:Class") that is read on the
first look-up the built-in map cannot answer. Either way the map stays one-to-one: a key that is taken, or a class
or module that already serves another key, raises instead of replacing anything.
"""
from __future__ import annotations

import importlib

from flash_rt.errors import HardwareError

SUPPORTED_HARDWARE = ("cpu", "hopper", "thor", "rtx_sm120", "rtx_sm89")

# compute capability (major, minor) -> hardware name
_CAPABILITY_MAP = {
    (9, 0): "hopper",      # H100 / H200
    (11, 0): "thor",       # Jetson AGX Thor
    (12, 0): "rtx_sm120",  # RTX 5090
    (8, 9): "rtx_sm89",    # RTX 4090 / L4 / L40S (Ada)
}

_PIPELINE_MAP: dict[tuple[str, str, str], tuple[str, str]] = {
    ("pi05", "torch", "cpu"): ("flash_rt.frontends.torch.pi05_cpu", "Pi05TorchFrontendCpu"),
    ("pi05", "torch", "hopper"): ("flash_rt.frontends.torch.pi05_hopper", "Pi05TorchFrontendHopper"),
    ("pi05", "torch", "thor"): ("flash_rt.frontends.torch.pi05_thor", "Pi05TorchFrontendThor"),
    ("pi05", "torch", "rtx_sm120"): ("flash_rt.frontends.torch.pi05_rtx", "Pi05TorchFrontendRtx"),
    ("pi05", "torch", "rtx_sm89"): ("flash_rt.frontends.torch.pi05_rtx_sm89", "Pi05TorchFrontendRtxSm89"),
    # openpi's JAX/Orbax checkpoints: the same cells with the Orbax weight source (frontends/jax/_orbax_cell.py)
    ("pi05", "jax", "cpu"): ("flash_rt.frontends.jax.pi05_cpu", "Pi05JaxFrontendCpu"),
    ("pi05", "jax", "hopper"): ("flash_rt.frontends.jax.pi05_hopper", "Pi05JaxFrontendHopper"),
    ("pi05", "jax", "thor"): ("flash_rt.frontends.jax.pi05_thor", "Pi05JaxFrontendThor"),
    ("pi05", "jax", "rtx_sm120"): ("flash_rt.frontends.jax.pi05_rtx", "Pi05JaxFrontendRtx"),
    ("pi05", "jax", "rtx_sm89"): ("flash_rt.frontends.jax.pi05_rtx_sm89", "Pi05JaxFrontendRtxSm89"),
    ("pi0", "torch", "cpu"): ("flash_rt.frontends.torch.pi0_cpu", "Pi0TorchFrontendCpu"),
    ("pi0", "torch", "hopper"): ("flash_rt.frontends.torch.pi0_hopper", "Pi0TorchFrontendHopper"),
    ("pi0", "torch", "thor"): ("flash_rt.frontends.torch.pi0_thor", "Pi0TorchFrontendThor"),
    ("pi0", "torch", "rtx_sm120"): ("flash_rt.frontends.torch.pi0_rtx", "Pi0TorchFrontendRtx"),
    ("pi0", "jax", "cpu"): ("flash_rt.frontends.jax.pi0_cpu", "Pi0JaxFrontendCpu"),
    ("pi0", "jax", "hopper"): ("flash_rt.frontends.jax.pi0_hopper", "Pi0JaxFrontendHopper"),
    ("pi0", "jax", "thor"): ("flash_rt.frontends.jax.pi0_thor", "Pi0JaxFrontendThor"),
    ("pi0", "jax", "rtx_sm120"): ("flash_rt.frontends.jax.pi0_rtx", "Pi0JaxFrontendRtx"),
}


def detect_hardware() -> str:
    """cpu when torch sees no CUDA device; otherwise the name for the device's compute capability."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    cap = tuple(torch.cuda.get_device_capability(0))
    name = _CAPABILITY_MAP.get(cap)
    if name is None:
        raise HardwareError(
            f"unsupported GPU {torch.cuda.get_device_name(0)!r} (compute capability {cap[0]}.{cap[1]}). "
            f"Supported: " + ", ".join(f"sm{a}{b} -> {n}" for (a, b), n in _CAPABILITY_MAP.items())
            + ". Pass hardware='cpu' (or another target from " + ", ".join(SUPPORTED_HARDWARE)
            + ") to load_model to override.")
    return name


def check_triton_for_device(hardware: str, tuning) -> None:
    """Refuse a target whose own GPU is present while the installed Triton cannot build for it (Triton 3.6 stops at
    "ptxas fatal: Value 'sm_110a' is not defined" on a Jetson Thor). A target run on another GPU by override (the
    thor cell on an H200) compiles for the GPU present and is not checked."""
    import torch
    import triton

    cap = tuple(torch.cuda.get_device_capability(0))
    if _CAPABILITY_MAP.get(cap) != hardware:
        return
    have = tuple(int(p) for p in triton.__version__.split(".")[:2])
    if have < tuple(tuning.min_triton):
        need = ".".join(map(str, tuning.min_triton))
        raise HardwareError(
            f"hardware={hardware!r} (sm{cap[0]}{cap[1]}) needs Triton >= {need} to build its kernels; this "
            f"environment has Triton {triton.__version__}. Install the pinned Triton (requirements.txt: triton==3.9.0), and on "
            "JetPack point Triton at the system ptxas if its bundled one cannot target this GPU: "
            "TRITON_PTXAS_PATH=/usr/local/cuda/bin/ptxas (docs/hardware.md)")


ENTRY_POINT_GROUP = "flash_rt.pipelines"
_BUILT_IN = frozenset(_PIPELINE_MAP)
_REGISTERED: dict[tuple[str, str, str], str] = {}   # plugin key -> who registered it (for error messages)
_entry_points_read = False


def _parse_target(target) -> tuple[str, str]:
    if isinstance(target, tuple) and len(target) == 2:
        module, cls = target
    elif isinstance(target, str) and target.count(":") == 1:
        module, cls = target.split(":")
    else:
        raise HardwareError(f"pipeline target {target!r}: expected 'pkg.module:ClassName' or (module, class)")
    if not (module and cls and all(p.isidentifier() for p in module.split(".")) and cls.isidentifier()):
        raise HardwareError(f"pipeline target {target!r}: expected 'pkg.module:ClassName' (dotted module path, "
                            "class name)")
    return module, cls


def register_pipeline(config: str, framework: str, hardware: str, target, *, origin: str = "register_pipeline"):
    """Add one (config, framework, hardware) cell whose frontend lives outside this repository. `target` is
    "pkg.module:Class" (imported on first use, like the built-in cells). Raises HardwareError for an unknown
    hardware name, a key that is already mapped, or a module/class that already serves another key (1:1)."""
    key = (config, framework, hardware)
    if not all(isinstance(k, str) and k for k in key):
        raise HardwareError(f"pipeline key {key!r}: config, framework and hardware must be non-empty strings")
    if hardware not in SUPPORTED_HARDWARE:
        raise HardwareError(f"pipeline key {key!r}: unknown hardware {hardware!r}; expected one of "
                            f"{SUPPORTED_HARDWARE}")
    module, cls = _parse_target(target)
    if key in _PIPELINE_MAP:
        by = _REGISTERED.get(key, "the built-in map")
        raise HardwareError(f"duplicate pipeline key {key!r} ({origin}): already maps to "
                            f"{':'.join(_PIPELINE_MAP[key])} (from {by}); _PIPELINE_MAP is one-to-one")
    for other, (m, c) in _PIPELINE_MAP.items():
        if m == module:
            raise HardwareError(f"pipeline {module}:{cls} for {key!r} ({origin}): module {module} already serves "
                                f"{other!r}; one file and one class per key (no runtime forks)")
    _PIPELINE_MAP[key] = (module, cls)
    _REGISTERED[key] = origin


def unregister_pipeline(config: str, framework: str, hardware: str) -> None:
    """Remove a registered plugin cell (tests, hot reload). Built-in cells cannot be removed."""
    key = (config, framework, hardware)
    if key in _BUILT_IN:
        raise HardwareError(f"{key!r} is a built-in cell and cannot be unregistered")
    if key not in _REGISTERED:
        raise HardwareError(f"{key!r} is not a registered plugin cell; registered: {sorted(_REGISTERED)}")
    del _PIPELINE_MAP[key], _REGISTERED[key]


def load_entry_points(entry_points=None) -> list[tuple[str, str, str]]:
    """Register every `flash_rt.pipelines` entry point not yet registered; returns the keys added. An entry
    point's name is "<config>/<framework>/<hardware>", its value "pkg.module:Class"; only metadata is read here,
    the module is imported on first use. The same entry point seen again is skipped; a different target for a
    key that is taken raises (one-to-one)."""
    if entry_points is None:
        from importlib.metadata import entry_points as _eps
        entry_points = _eps(group=ENTRY_POINT_GROUP)
    added = []
    for ep in entry_points:
        parts = tuple(ep.name.split("/"))
        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        origin = f"entry point {ep.name!r} = {ep.value!r} of distribution {dist!r}"
        if len(parts) != 3:
            raise HardwareError(f"{origin}: the name must be '<config>/<framework>/<hardware>'")
        if _PIPELINE_MAP.get(parts) == _parse_target(ep.value) and parts in _REGISTERED:
            continue
        register_pipeline(*parts, ep.value, origin=origin)
        added.append(parts)
    return added


def _read_entry_points_once() -> None:
    global _entry_points_read
    if not _entry_points_read:
        _entry_points_read = True
        load_entry_points()


def pipeline_keys() -> list[tuple[str, str, str]]:
    """Every key of the map, plugins' entry points included (read lazily, once)."""
    _read_entry_points_once()
    return sorted(_PIPELINE_MAP)


def resolve_frontend(model: str, framework: str, hardware: str):
    """Return the frontend class for the key, importing its module lazily."""
    key = (model, framework, hardware)
    if key not in _PIPELINE_MAP:
        _read_entry_points_once()
    if key not in _PIPELINE_MAP:
        have = sorted(k for k in _PIPELINE_MAP if k[0] == model)
        raise HardwareError(
            f"no frontend for model={model!r}, framework={framework!r}, hardware={hardware!r}. "
            f"Available for {model!r}: {have or 'none'}; all keys: {sorted(_PIPELINE_MAP)}")
    module, cls = _PIPELINE_MAP[key]
    return getattr(importlib.import_module(module), cls)
