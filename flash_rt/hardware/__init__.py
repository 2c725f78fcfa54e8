"""Hardware detection and the (model, framework, hardware) -> frontend map.

This is the ONLY place that looks at the device's capabilities (contract rule 1). Everything downstream is
chosen by the map: one file and one class per key, never two keys sharing a class (rule 4), so a stack
trace always names the hardware path it ran.
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


def resolve_frontend(model: str, framework: str, hardware: str):
    """Return the frontend class for the key, importing its module lazily."""
    key = (model, framework, hardware)
    if key not in _PIPELINE_MAP:
        have = sorted(k for k in _PIPELINE_MAP if k[0] == model)
        raise HardwareError(
            f"no frontend for model={model!r}, framework={framework!r}, hardware={hardware!r}. "
            f"Available for {model!r}: {have or 'none'}; all keys: {sorted(_PIPELINE_MAP)}")
    module, cls = _PIPELINE_MAP[key]
    return getattr(importlib.import_module(module), cls)
