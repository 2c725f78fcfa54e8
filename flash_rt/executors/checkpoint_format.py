"""Which framework's checkpoint a directory holds: what `load_model(..., framework="auto")` decides from.

Why a module of its own: the answer is a property of files on disk, needed before any frontend is chosen, and the
two layouts are unambiguous -- a PyTorch checkpoint has `model.safetensors` (or its shards / index), an openpi JAX
checkpoint has a `params/` Orbax directory (`_METADATA`, `manifest.ocdbt`). openpi's own policy loader decides the
same way. A directory with neither, or with a half-written `params/`, gets an error naming what was found.
"""
from __future__ import annotations

import os
from pathlib import Path

from flash_rt.errors import CheckpointError

FRAMEWORKS = ("torch", "jax")
_TORCH_FILES = ("model.safetensors", "model.safetensors.index.json")
_ORBAX_FILES = ("_METADATA", "manifest.ocdbt")


def _is_torch(p: Path) -> bool:
    if p.is_file():
        return p.suffix in (".safetensors", ".json")
    return any((p / f).is_file() for f in _TORCH_FILES) or any(p.glob("model-*-of-*.safetensors"))


def _orbax_dir(p: Path) -> Path | None:
    """The params/ directory if `p` is (or holds) one with any Orbax file; None otherwise."""
    for d in (p / "params", p):
        if d.is_dir() and (any((d / f).exists() for f in _ORBAX_FILES) or (d / "ocdbt.process_0").is_dir()):
            return d
    return None


def _found(p: Path) -> dict[str, Path]:
    """{framework: what marks it} for the layouts present at `p` (both, one or none)."""
    found = {}
    if _is_torch(p):
        found["torch"] = p
    orbax = None if p.is_file() else _orbax_dir(p)
    if orbax is not None:
        found["jax"] = orbax
    return found


def detect_framework(checkpoint: str | os.PathLike) -> str:
    """"torch" or "jax" for the checkpoint at `checkpoint` (a directory or a .safetensors file)."""
    p = Path(checkpoint)
    if not p.exists():
        raise CheckpointError(f"checkpoint path '{p}' does not exist; expected a directory holding model.safetensors "
                              "(PyTorch: openpi or lerobot layout) or params/ (openpi's JAX/Orbax layout)")
    found = _found(p)
    if len(found) == 2:
        raise CheckpointError(f"'{p}' holds both a PyTorch checkpoint (model.safetensors) and an Orbax one "
                              f"({found['jax']}); pass framework='torch' or framework='jax' to choose")
    if "torch" in found:
        return "torch"
    if "jax" in found:
        orbax = found["jax"]
        missing = [f for f in _ORBAX_FILES if not (orbax / f).is_file()]
        if missing:
            raise CheckpointError(f"'{orbax}' looks like a partly written Orbax checkpoint: it lacks {missing}; a "
                                  "complete one has _METADATA, manifest.ocdbt and the ocdbt data files")
        return "jax"
    present = sorted(q.name for q in p.iterdir())[:12] if p.is_dir() else [p.name]
    raise CheckpointError(f"cannot tell the framework of '{p}': it holds {present}; expected model.safetensors "
                          "(PyTorch: openpi or lerobot layout) or params/ with _METADATA and manifest.ocdbt (openpi's "
                          "JAX/Orbax layout)")


def check_framework(checkpoint: str | os.PathLike, framework: str) -> None:
    """Raise a clear error when an explicit `framework` does not match what the directory holds (a directory with
    both layouts takes either; one with neither is left to the frontend's own, more specific error)."""
    p = Path(checkpoint)
    if not p.exists():
        return
    found = _found(p)
    if not found or framework in found:
        return
    what = {"torch": "a PyTorch checkpoint (model.safetensors)", "jax": "an openpi JAX/Orbax checkpoint (params/)"}
    other = next(iter(found))
    raise CheckpointError(f"framework={framework!r} expects {what[framework]}, but '{checkpoint}' holds "
                          f"{what[other]}; pass framework={other!r} or framework='auto'")
