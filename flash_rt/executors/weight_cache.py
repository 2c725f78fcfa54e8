"""On-disk cache of *transformed* weights (fused, transposed, cast, FP8-quantised), keyed by checkpoint + spec.

Why: turning a 7 GB bf16 checkpoint into kernel layouts (norm folds, RoPE interleave, FP8 quantisation of
every decoder matrix) costs seconds to tens of seconds per start; a robot restarts often. The cache stores the
loader's output tensors as flat blobs that load with one sequential read.

Key schema (also in docs/weight_cache.md)
-----------------------------------------
File name: ``<root>/<ckpt_hash>_<spec_tag>_nv<num_views>.bin``

* ``root``: the ``root`` argument, else ``$FLASH_RT_CACHE_DIR``, else ``~/.flash_rt/weights``.
* ``ckpt_hash``: `checkpoint_hash(path, index_root)` (executors/checkpoint_hash.py) -- 32 hex chars of BLAKE2b
  over every byte of every shard, each shard's digest remembered per file identity (path, size, mtime_ns,
  ctime_ns, inode) in ``<root>/checkpoint_hashes.json``, so only the first start with a checkpoint reads it all.
* ``spec_tag``: chosen by the frontend; names the spec and anything that changes its output (e.g.
  ``pi05-hopper-fp8-v1``). Must match ``[A-Za-z0-9.+-]+``. Bump it whenever the spec's math changes.
* ``num_views``: camera slots, for layouts that depend on it.

Binary format (little-endian)::

    b"FRTW" | u32 version | u64 header_len | header JSON (space-padded) | data region

The data region starts at a multiple of 64 bytes; blob offsets are relative to it and 64-byte aligned.
Header JSON: ``{version, ckpt_hash, spec_tag, num_views, <extra meta...>, checksum: "crc32",
entries: [{name, dtype, shape, offset, nbytes, crc32}], total_bytes}`` where ``dtype`` is the torch dtype name
(``bfloat16``, ``float8_e4m3fn``...), ``crc32`` is zlib.crc32 of the blob as 8 hex digits and ``total_bytes``
is the length of the data region; a valid file is exactly ``16 + header_len + total_bytes`` bytes.

Validation on load (`load_cache`) -- any failure raises `CacheError` saying what was wrong: magic, version,
header JSON, every key of ``expected_meta``, file size, entry bounds / sizes / dtypes, every entry's crc32.
`WeightCache.get_or_build` turns a `CacheError` into a warning + log line, deletes the file, rebuilds and
reports ``status == "rebuilt"``. Writes go to a temp file in the same directory and ``os.replace`` into place,
so readers never see a half-written cache.
"""
from __future__ import annotations

import json
import logging
import os
import re
import struct
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from flash_rt.errors import CacheError
from flash_rt.executors.checkpoint_hash import checkpoint_hash  # noqa: F401 (the cache key; re-exported)

log = logging.getLogger("flash_rt.weight_cache")

MAGIC = b"FRTW"
VERSION = 1
ALIGN = 64
_PREAMBLE = struct.Struct("<4sIQ")  # magic, version, header_len -> 16 bytes
ENV_CACHE_DIR = "FLASH_RT_CACHE_DIR"
REQUIRED_META = ("ckpt_hash", "spec_tag", "num_views")
_RESERVED = ("version", "checksum", "entries", "total_bytes")
_TAG_RX = re.compile(r"[A-Za-z0-9.+-]+")
MAX_HEADER_BYTES = 64 * 1024 * 1024


class WeightCacheWarning(UserWarning):
    """A cache file was unusable (corrupt, truncated, stale) and was rebuilt, or could not be written."""


# --------------------------------------------------------------------------------------------------------------
# key schema
# --------------------------------------------------------------------------------------------------------------
def cache_root(root: str | os.PathLike | None = None) -> Path:
    """`root`, else $FLASH_RT_CACHE_DIR, else ~/.flash_rt/weights."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".flash_rt" / "weights"


def _check_meta(meta: Mapping[str, Any]) -> dict:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"weight cache meta lacks {missing}; required: {list(REQUIRED_META)}")
    bad = [k for k in _RESERVED if k in meta]
    if bad:
        raise ValueError(f"weight cache meta uses reserved header field(s) {bad}")
    if not isinstance(meta["ckpt_hash"], str) or not _TAG_RX.fullmatch(meta["ckpt_hash"]):
        raise ValueError(f"ckpt_hash must match {_TAG_RX.pattern}, got {meta['ckpt_hash']!r}")
    if not isinstance(meta["spec_tag"], str) or not _TAG_RX.fullmatch(meta["spec_tag"]):
        raise ValueError(f"spec_tag must match {_TAG_RX.pattern} (it is part of a file name), "
                         f"got {meta['spec_tag']!r}")
    if not isinstance(meta["num_views"], int) or isinstance(meta["num_views"], bool) or meta["num_views"] < 0:
        raise ValueError(f"num_views must be an int >= 0, got {meta['num_views']!r}")
    out = dict(meta)
    try:
        json.dumps(out)
    except TypeError as e:
        raise ValueError(f"weight cache meta must be JSON-serialisable: {e}") from None
    return out


def cache_filename(meta: Mapping[str, Any]) -> str:
    m = _check_meta(meta)
    return f"{m['ckpt_hash']}_{m['spec_tag']}_nv{m['num_views']}.bin"


# --------------------------------------------------------------------------------------------------------------
# file format
# --------------------------------------------------------------------------------------------------------------
def _dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


def _parse_dtype(name: str, where: str) -> torch.dtype:
    dt = getattr(torch, name, None) if isinstance(name, str) else None
    if not isinstance(dt, torch.dtype):
        raise CacheError(f"{where}: unknown dtype {name!r}")
    return dt


def _blob(t: torch.Tensor):
    """The tensor's bytes as a numpy uint8 array (CPU, contiguous)."""
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def save_cache(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Path:
    """Write `tensors` + `meta` atomically to `path` (temp file in the same dir, fsync, os.replace)."""
    path = Path(path)
    m = _check_meta(meta)
    entries, off = [], 0
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise TypeError(f"weight cache entries must be str -> torch.Tensor, got {name!r}: {type(t).__name__}")
        nbytes = t.numel() * t.element_size()
        entries.append({"name": name, "dtype": _dtype_name(t.dtype), "shape": list(t.shape), "offset": off,
                        "nbytes": nbytes, "crc32": "00000000"})
        off = _align(off + nbytes)
    total = off

    def header_bytes() -> bytes:
        hdr = {"version": VERSION, **m, "checksum": "crc32", "entries": entries, "total_bytes": total}
        js = json.dumps(hdr, separators=(",", ":")).encode()
        return js + b" " * (-(_PREAMBLE.size + len(js)) % ALIGN)

    hb = header_bytes()  # crc32 is fixed-width hex, so the real header has exactly this length
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_PREAMBLE.pack(MAGIC, VERSION, len(hb)))
            f.write(hb)
            pos = 0
            for e, t in zip(entries, tensors.values()):
                if e["offset"] > pos:
                    f.write(b"\0" * (e["offset"] - pos))
                b = _blob(t)
                f.write(memoryview(b))
                e["crc32"] = f"{zlib.crc32(memoryview(b)) & 0xFFFFFFFF:08x}"
                pos = e["offset"] + e["nbytes"]
            if total > pos:
                f.write(b"\0" * (total - pos))
            hb2 = header_bytes()
            assert len(hb2) == len(hb)
            f.seek(_PREAMBLE.size)
            f.write(hb2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def read_cache_header(path: str | os.PathLike) -> dict:
    """Parse and check preamble + header of a cache file (no blob reads). Raises CacheError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            pre = f.read(_PREAMBLE.size)
            if len(pre) < _PREAMBLE.size:
                raise CacheError(f"weight cache '{path}' is truncated: {size} bytes, shorter than the "
                                 f"{_PREAMBLE.size}-byte preamble")
            magic, version, hlen = _PREAMBLE.unpack(pre)
            if magic != MAGIC:
                raise CacheError(f"weight cache '{path}' has bad magic {magic!r}, expected {MAGIC!r}")
            if version != VERSION:
                raise CacheError(f"weight cache '{path}' is format version {version}, this flash_rt reads "
                                 f"version {VERSION}")
            if hlen > MAX_HEADER_BYTES or _PREAMBLE.size + hlen > size:
                raise CacheError(f"weight cache '{path}' is truncated/corrupt: header length {hlen} bytes but "
                                 f"the file has {size - _PREAMBLE.size} bytes after the preamble")
            raw = f.read(hlen)
    except FileNotFoundError:
        raise CacheError(f"weight cache '{path}' does not exist") from None
    try:
        hdr = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CacheError(f"weight cache '{path}' has a corrupt JSON header ({e})") from None
    if not isinstance(hdr, dict) or not isinstance(hdr.get("entries"), list) \
            or not isinstance(hdr.get("total_bytes"), int):
        raise CacheError(f"weight cache '{path}' header lacks entries / total_bytes")
    if hdr.get("version") != VERSION:
        raise CacheError(f"weight cache '{path}' header says version {hdr.get('version')!r}, expected {VERSION}")
    want = _PREAMBLE.size + hlen + hdr["total_bytes"]
    if size != want:
        raise CacheError(f"weight cache '{path}' is {'truncated' if size < want else 'oversized'}: file is "
                         f"{size} bytes, its header says {want} ({_PREAMBLE.size} + header {hlen} + data "
                         f"{hdr['total_bytes']})")
    hdr["_data_start"] = _PREAMBLE.size + hlen
    return hdr


def load_cache(path: str | os.PathLike, expected_meta: Mapping[str, Any], device: str | None = None
               ) -> dict[str, torch.Tensor]:
    """Load a cache file, validating everything (see module docstring). Tensors are CPU unless `device`."""
    path = Path(path)
    hdr = read_cache_header(path)
    for k, v in expected_meta.items():
        if k not in hdr:
            raise CacheError(f"weight cache '{path}' header has no '{k}' (expected {v!r})")
        if hdr[k] != v:
            raise CacheError(f"weight cache '{path}' is stale: {k} is {hdr[k]!r}, expected {v!r}")
    total, start = hdr["total_bytes"], hdr["_data_start"]
    out: dict[str, torch.Tensor] = {}
    with open(path, "rb") as f:
        for e in hdr["entries"]:
            try:
                name, dname, shape, off, nbytes, crc = (e["name"], e["dtype"], tuple(e["shape"]), e["offset"],
                                                        e["nbytes"], e["crc32"])
            except (TypeError, KeyError) as ex:
                raise CacheError(f"weight cache '{path}' has a malformed entry {e!r} ({ex})") from None
            where = f"weight cache '{path}' entry '{name}'"
            dt = _parse_dtype(dname, where)
            numel = 1
            for d in shape:
                numel *= d
            if nbytes != numel * dt.itemsize:
                raise CacheError(f"{where}: {nbytes} bytes but {dname}{list(shape)} needs {numel * dt.itemsize}")
            if not (isinstance(off, int) and 0 <= off and off + nbytes <= total):
                raise CacheError(f"{where}: bytes [{off}, {off + nbytes}) lie outside the {total}-byte data region")
            if name in out:
                raise CacheError(f"{where}: duplicate entry name")
            buf = torch.empty(nbytes, dtype=torch.uint8)
            arr = buf.numpy()
            f.seek(start + off)
            got = f.readinto(memoryview(arr))
            if got != nbytes:
                raise CacheError(f"{where}: short read, {got} of {nbytes} bytes")
            have = f"{zlib.crc32(memoryview(arr)) & 0xFFFFFFFF:08x}"
            if have != crc:
                raise CacheError(f"{where}: checksum mismatch (stored crc32 {crc}, computed {have}); "
                                 f"the file is corrupt")
            t = buf.view(dt).reshape(shape)
            out[name] = t.to(device) if device is not None else t
    return out


# --------------------------------------------------------------------------------------------------------------
# get-or-build
# --------------------------------------------------------------------------------------------------------------
class WeightCache:
    """`get_or_build(key_meta, build_fn) -> (tensors, status)`, status in {"hit", "miss", "rebuilt"}.

    "hit": loaded from a valid file. "miss": no file; built and saved. "rebuilt": a file existed but was
    invalid (reason in `last_reason`, also warned as `WeightCacheWarning` and logged); it was deleted, rebuilt
    and saved. `device`, when given, moves the returned tensors there (hits load on CPU first). A failure to
    *write* the cache (read-only disk, full disk) only warns: the built tensors are
    still returned, because a missing cache must never stop a robot from starting.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = cache_root(root)
        self.last_status: str | None = None
        self.last_reason: str | None = None
        self.last_path: Path | None = None

    def path_for(self, key_meta: Mapping[str, Any]) -> Path:
        return self.root / cache_filename(key_meta)

    def get_or_build(self, key_meta: Mapping[str, Any], build_fn: Callable[[], Mapping[str, torch.Tensor]],
                     device: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
        path = self.path_for(key_meta)
        self.last_path, self.last_reason = path, None
        status = "miss"
        if path.exists():
            try:
                tensors = load_cache(path, key_meta, device=device)
                self.last_status = "hit"
                log.info("weight cache hit: %s (%d tensors)", path, len(tensors))
                return tensors, "hit"
            except CacheError as e:
                status, self.last_reason = "rebuilt", str(e)
                msg = f"weight cache invalid, deleting and rebuilding: {e}"
                warnings.warn(msg, WeightCacheWarning, stacklevel=2)
                log.warning(msg)
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
        tensors = dict(build_fn())
        if device is not None:
            tensors = {k: v.to(device) for k, v in tensors.items()}
        try:
            save_cache(path, tensors, key_meta)
            log.info("weight cache %s: wrote %s", status, path)
        except OSError as e:
            msg = f"could not write weight cache '{path}': {e}; continuing without it"
            warnings.warn(msg, WeightCacheWarning, stacklevel=2)
            log.warning(msg)
        self.last_status = status
        return tensors, status
