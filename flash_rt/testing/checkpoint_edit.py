"""Edit test checkpoints the way a fine-tune does: new values in place, same file size, same header.

Why: the cache-key tests need two checkpoints that differ only inside one tensor in the middle of a file (or of a
later shard) -- the case a size + head/tail key cannot see -- and a sharded copy of a checkpoint to put it in.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from flash_rt.executors.safetensors_io import resolve_checkpoint_files


def tensor_byte_range(file: str | Path, key: str) -> tuple[int, int]:
    """[start, end) of tensor `key`'s bytes in a safetensors file."""
    with open(file, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    if key not in hdr:
        raise KeyError(f"{key!r} is not in {file}")
    a, b = hdr[key]["data_offsets"]
    return 8 + n + a, 8 + n + b


def find_tensor(checkpoint: str | Path, key: str) -> Path:
    """The file (shard) of a checkpoint that holds `key`."""
    files, wmap = resolve_checkpoint_files(checkpoint)
    if wmap is not None:
        return files[0].parent / wmap[key]
    for f in files:
        try:
            tensor_byte_range(f, key)
            return f
        except KeyError:
            continue
    raise KeyError(f"{key!r} is in no file of {checkpoint}")


def overwrite_tensor(checkpoint: str | Path, key: str, value: torch.Tensor) -> Path:
    """Write `value` over tensor `key` in place (same dtype and shape, so the size and header stay the same).
    Returns the file it changed."""
    f = find_tensor(checkpoint, key)
    a, b = tensor_byte_range(f, key)
    raw = value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    if len(raw) != b - a:
        raise ValueError(f"{key}: {len(raw)} bytes given, the file holds {b - a}")
    with open(f, "r+b") as fh:
        fh.seek(a)
        fh.write(raw)
    return f


def shard_checkpoint(src_dir: str | Path, dst_dir: str | Path, num_shards: int = 2) -> Path:
    """Copy a single-file checkpoint directory into `num_shards` shards + model.safetensors.index.json, keys in
    file order (the config, assets and tokenizer are copied too)."""
    import shutil
    src, dst = Path(src_dir), Path(dst_dir)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    sd = load_file(str(src / "model.safetensors"))
    keys = list(sd)
    per = -(-len(keys) // num_shards)
    wmap = {}
    for i in range(num_shards):
        name = f"model-{i + 1:05d}-of-{num_shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[i * per:(i + 1) * per]}
        save_file(part, str(dst / name), metadata={"format": "pt"})
        wmap.update({k: name for k in part})
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    return dst
