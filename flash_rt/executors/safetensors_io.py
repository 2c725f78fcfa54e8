"""Checkpoint file access: find the safetensors file(s), vet them, and write big ones without big memory.

Why this exists instead of calling `safetensors.safe_open` directly:

* **Clear errors before mmap.** `safe_open` on a truncated download can succeed (it maps whatever is there)
  and then fail much later -- or fault -- when a tensor past the end is touched. `read_header()` parses the
  8-byte length + JSON header in pure Python and checks every `data_offsets` against the real file size
  first, so a half-downloaded 7 GB file becomes one `CheckpointError` that says "truncated/corrupt" and gives
  the byte counts.
* **One place that knows the layouts.** A checkpoint is a directory with `model.safetensors` (openpi and
  lerobot), or a sharded HF layout (`model.safetensors.index.json` + `model-0000k-of-0000n.safetensors`), or
  a file path. `resolve_checkpoint_files()` turns any of those into the ordered list of files, or a
  `CheckpointError` naming the path and what was expected there.
* **Streaming writer.** Building a full-size random Pi0.5 checkpoint (3.35 B params, ~7 GB bf16) for tests
  and benchmarks with `safetensors.torch.save_file` needs every tensor in memory at once.
  `StreamingSafetensorsWriter` writes the header first (offsets are known from shapes and dtypes) and then
  each tensor as it is produced -- optionally in chunks -- so peak memory is one tensor (or one chunk).

File format reminder (safetensors): `u64 little-endian N`, `N` bytes of JSON `{name: {dtype, shape,
data_offsets: [begin, end]}, "__metadata__": {str: str}}` (space-padded), then the data region; offsets are
relative to the data region, tensors tile it exactly (no gaps, no overlap, no trailing bytes).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from flash_rt.errors import CheckpointError

MODEL_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
_SHARD_RX = re.compile(r"model-(\d+)-of-(\d+)\.safetensors")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit; anything larger is garbage, not a header

# safetensors dtype string <-> (torch dtype, itemsize)
_ST_DTYPES: dict[str, tuple[torch.dtype, int]] = {
    "BOOL": (torch.bool, 1), "U8": (torch.uint8, 1), "I8": (torch.int8, 1),
    "F8_E4M3": (torch.float8_e4m3fn, 1), "F8_E5M2": (torch.float8_e5m2, 1),
    "I16": (torch.int16, 2), "U16": (torch.uint16, 2), "F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2),
    "I32": (torch.int32, 4), "U32": (torch.uint32, 4), "F32": (torch.float32, 4),
    "I64": (torch.int64, 8), "U64": (torch.uint64, 8), "F64": (torch.float64, 8),
}
_TORCH_TO_ST = {v[0]: k for k, v in _ST_DTYPES.items()}


def st_dtype(dtype: torch.dtype | str) -> str:
    """safetensors dtype string for a torch dtype (or pass a valid string through)."""
    if isinstance(dtype, str):
        if dtype not in _ST_DTYPES:
            raise ValueError(f"unknown safetensors dtype '{dtype}'; known: {sorted(_ST_DTYPES)}")
        return dtype
    try:
        return _TORCH_TO_ST[dtype]
    except KeyError:
        raise ValueError(f"torch dtype {dtype} has no safetensors equivalent") from None


def torch_dtype(st: str) -> torch.dtype:
    return _ST_DTYPES[st_dtype(st)][0]


def dtype_itemsize(dtype: torch.dtype | str) -> int:
    return _ST_DTYPES[st_dtype(dtype)][1]


# --------------------------------------------------------------------------------------------------------------
# header parsing and validation
# --------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TensorInfo:
    dtype: str            # safetensors dtype string, e.g. "BF16"
    shape: tuple
    begin: int            # offsets relative to the data region
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclasses.dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    file_size: int
    header_len: int
    tensors: dict          # name -> TensorInfo, in header order
    metadata: dict         # the __metadata__ dict ({} when absent)

    @property
    def data_start(self) -> int:
        return 8 + self.header_len


def _corrupt(path: Path, msg: str) -> CheckpointError:
    return CheckpointError(f"safetensors file '{path}' is truncated/corrupt: {msg}. Re-download or re-convert it.")


def read_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Parse and fully validate a safetensors header against the file size. Reads no tensor data."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _corrupt(path, f"file is {size} bytes, shorter than the 8-byte header length field")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise _corrupt(path, f"header length field says {n} bytes (limit {MAX_HEADER_BYTES}); "
                                     f"this is not a safetensors header")
            if 8 + n > size:
                raise _corrupt(path, f"header length field says {n} bytes but the file has only {size - 8} "
                                     f"bytes after it (file size {size} bytes)")
            raw = f.read(n)
    except FileNotFoundError:
        raise CheckpointError(f"safetensors file '{path}' does not exist") from None
    except IsADirectoryError:
        raise CheckpointError(f"'{path}' is a directory, expected a .safetensors file") from None
    try:
        hdr = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _corrupt(path, f"the {n}-byte JSON header does not parse ({e})") from None
    if not isinstance(hdr, dict):
        raise _corrupt(path, f"the JSON header is a {type(hdr).__name__}, expected an object")

    meta = hdr.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise _corrupt(path, "__metadata__ is not an object")
    data_len = size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for name, e in hdr.items():
        try:
            dt, shape, (b, end) = e["dtype"], tuple(e["shape"]), e["data_offsets"]
        except (TypeError, KeyError, ValueError) as ex:
            raise _corrupt(path, f"entry '{name}' is malformed ({type(ex).__name__}: {ex}): {e!r}") from None
        if dt not in _ST_DTYPES:
            raise _corrupt(path, f"entry '{name}' has unknown dtype '{dt}'")
        if not all(isinstance(d, int) and d >= 0 for d in shape) or not (
                isinstance(b, int) and isinstance(end, int) and 0 <= b <= end):
            raise _corrupt(path, f"entry '{name}' has invalid shape {list(shape)} or data_offsets {[b, end]}")
        numel = 1
        for d in shape:
            numel *= d
        want = numel * _ST_DTYPES[dt][1]
        if end - b != want:
            raise _corrupt(path, f"entry '{name}' spans {end - b} bytes but {dt}{list(shape)} needs {want}")
        if end > data_len:
            raise _corrupt(path, f"tensor '{name}' ends at byte {end} of the data region, but the file holds "
                                 f"only {data_len} data bytes (file size {size} bytes, expected at least "
                                 f"{8 + n + end})")
        tensors[name] = TensorInfo(dt, shape, b, end)

    # tensors must tile the data region exactly (safetensors' own rule; safe_open would reject it later)
    pos = 0
    for name, t in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if t.begin != pos:
            raise _corrupt(path, f"tensor '{name}' starts at data byte {t.begin}, expected {pos} "
                                 f"({'gap' if t.begin > pos else 'overlap'} in the data region)")
        pos = t.end
    if pos != data_len:
        raise _corrupt(path, f"the tensors cover {pos} data bytes but the file has {data_len} "
                             f"({data_len - pos} unexpected trailing bytes; file size {size} bytes)")
    return SafetensorsHeader(path=path, file_size=size, header_len=n, tensors=tensors, metadata=dict(meta))


# --------------------------------------------------------------------------------------------------------------
# locating the files of a checkpoint
# --------------------------------------------------------------------------------------------------------------
_EXPECTED = (f"a directory containing {MODEL_FILE} (openpi / lerobot), or {INDEX_FILE} with its "
             f"model-0000k-of-0000n.safetensors shards, or a path to a .safetensors / index .json file")


def _read_index(index: Path) -> dict[str, str]:
    try:
        data = json.loads(index.read_text())
        wm = data["weight_map"]
        if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
            raise TypeError("weight_map is not a {key: file} object")
    except FileNotFoundError:
        raise CheckpointError(f"shard index '{index}' does not exist") from None
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"shard index '{index}' is corrupt: {type(e).__name__}: {e}") from None
    return wm


def resolve_checkpoint_files(path: str | os.PathLike) -> tuple[list[Path], dict[str, str] | None]:
    """(safetensors files in shard order, index weight_map or None) for a checkpoint dir / file / index."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint path '{p}' does not exist; expected {_EXPECTED}")
    index: Path | None = None
    if p.is_dir():
        if (p / MODEL_FILE).is_file():
            return [p / MODEL_FILE], None
        if (p / INDEX_FILE).is_file():
            index = p / INDEX_FILE
        else:
            shards = sorted(q for q in p.glob("model-*-of-*.safetensors") if _SHARD_RX.fullmatch(q.name))
            if shards:
                n = int(_SHARD_RX.fullmatch(shards[0].name).group(2))
                have = {int(_SHARD_RX.fullmatch(q.name).group(1)) for q in shards}
                lacking = sorted(set(range(1, n + 1)) - have)
                if lacking:
                    raise CheckpointError(f"checkpoint '{p}' is sharded into {n} files but shard(s) {lacking} "
                                          f"are missing (found {[q.name for q in shards]})")
                return shards, None
            present = sorted(q.name for q in p.iterdir())
            shown = present[:12] + (["..."] if len(present) > 12 else [])
            raise CheckpointError(f"checkpoint directory '{p}' has no {MODEL_FILE}, {INDEX_FILE} or "
                                  f"model-*-of-*.safetensors shards; expected {_EXPECTED}. It contains: {shown}")
    elif p.suffix == ".json":
        index = p
    else:
        return [p], None

    wm = _read_index(index)
    names: list[str] = []
    for f in wm.values():
        if f not in names:
            names.append(f)
    names.sort()
    files = [index.parent / f for f in names]
    lacking = [str(f) for f in files if not f.is_file()]
    if lacking:
        raise CheckpointError(f"shard index '{index}' names {len(files)} shard file(s) but these are missing: "
                              f"{lacking}")
    return files, wm


def open_checkpoint(path: str | os.PathLike, device: str = "cpu", **kw):
    """A lazy `SafetensorsSource` over a checkpoint dir / file / shard index; every header is validated first.

    Extra keyword arguments go to `SafetensorsSource` (e.g. `strip_prefix`, `aliases`).
    """
    from flash_rt.executors.torch_weights import SafetensorsSource  # torch_weights imports this module
    files, wm = resolve_checkpoint_files(path)
    return SafetensorsSource(files, device=device, index=wm, **kw)


# --------------------------------------------------------------------------------------------------------------
# streaming writer
# --------------------------------------------------------------------------------------------------------------
def _tensor_bytes(t) -> memoryview:
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t)
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(t.view(torch.uint8).numpy())


class StreamingSafetensorsWriter:
    """Write a safetensors file one tensor at a time.

    Usage::

        with StreamingSafetensorsWriter(path, metadata={"format": "pt"}) as w:
            for name, dtype, shape in plan:
                w.add(name, dtype, shape)        # 1st pass: layout only, no data
            for name, ... in plan:
                w.write(name, make_tensor())     # 2nd pass: data, in add() order

    `write` also accepts an iterable of chunk tensors whose bytes concatenate to the tensor (e.g. rows of a
    1 GB embedding), so peak memory is one chunk. The file is written to `<path>.tmp` and renamed on `close()`,
    so a crash never leaves a plausible-looking truncated checkpoint behind.
    """

    def __init__(self, path: str | os.PathLike, metadata: Mapping[str, str] | None = None):
        if sys.byteorder != "little":
            raise RuntimeError("safetensors is little-endian; this writer only supports little-endian hosts")
        self.path = Path(path)
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self._plan: dict[str, TensorInfo] = {}
        self._order: list[str] = []
        self._next = 0
        self._f = None
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._closed = False

    def add(self, name: str, dtype: torch.dtype | str, shape: Sequence[int]) -> None:
        if self._f is not None:
            raise RuntimeError(f"add('{name}') after writing started; declare every tensor first")
        if name in self._plan or name == "__metadata__":
            raise ValueError(f"tensor name '{name}' is duplicated or reserved")
        dt = st_dtype(dtype)
        shape = tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"tensor '{name}' has a negative dimension: {list(shape)}")
        numel = 1
        for d in shape:
            numel *= d
        begin = self._plan[self._order[-1]].end if self._order else 0
        self._plan[name] = TensorInfo(dt, shape, begin, begin + numel * _ST_DTYPES[dt][1])
        self._order.append(name)

    def header_bytes(self) -> bytes:
        hdr: dict[str, Any] = {}
        if self.metadata:
            hdr["__metadata__"] = self.metadata
        for n in self._order:
            t = self._plan[n]
            hdr[n] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [t.begin, t.end]}
        js = json.dumps(hdr, separators=(",", ":")).encode("utf-8")
        js += b" " * (-len(js) % 8)  # 8-byte align the data region, as safetensors does
        return struct.pack("<Q", len(js)) + js

    @property
    def total_bytes(self) -> int:
        data = self._plan[self._order[-1]].end if self._order else 0
        return len(self.header_bytes()) + data

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self._tmp, "wb")
        self._f.write(self.header_bytes())

    def write(self, name: str, data) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        if self._f is None:
            self._start()
        if self._next >= len(self._order):
            raise ValueError(f"write('{name}'): every declared tensor was already written")
        want = self._order[self._next]
        if name != want:
            raise ValueError(f"write('{name}') out of order: the next declared tensor is '{want}'")
        info = self._plan[name]
        tdt = _ST_DTYPES[info.dtype][0]
        chunks = [data] if isinstance(data, torch.Tensor) else data
        written = 0
        for c in chunks:
            if not isinstance(c, torch.Tensor):
                c = torch.as_tensor(c)
            if c.dtype != tdt:
                raise TypeError(f"tensor '{name}' was declared {info.dtype} but got {c.dtype} data (no implicit "
                                f"casts: cast it yourself)")
            if isinstance(data, torch.Tensor) and tuple(c.shape) != info.shape:
                raise ValueError(f"tensor '{name}' was declared {list(info.shape)} but got {list(c.shape)}")
            mv = _tensor_bytes(c)
            if written + mv.nbytes > info.nbytes:
                raise ValueError(f"tensor '{name}': chunks exceed the declared {info.nbytes} bytes")
            self._f.write(mv)
            written += mv.nbytes
        if written != info.nbytes:
            raise ValueError(f"tensor '{name}': got {written} bytes, declared {info.dtype}{list(info.shape)} "
                             f"needs {info.nbytes}")
        self._next += 1

    def close(self) -> Path:
        """Check every tensor was written, flush, and atomically move the file into place."""
        if self._closed:
            return self.path
        if self._f is None:
            self._start()
        if self._next != len(self._order):
            missing = self._order[self._next:]
            self.abort()
            raise ValueError(f"close() before writing {len(missing)} declared tensor(s): {missing[:5]}")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._tmp, self.path)
        self._closed = True
        return self.path

    def abort(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_safetensors_streaming(path: str | os.PathLike,
                                items: Iterable[tuple[str, Sequence[int], torch.dtype | str, Callable[[], Any]]],
                                metadata: Mapping[str, str] | None = None) -> Path:
    """Write `(name, shape, dtype, fill_fn)` items; `fill_fn()` is called once per tensor, in order, and returns
    the tensor (or an iterable of chunk tensors). Peak memory: one tensor (or chunk). Returns the path."""
    items = list(items)  # layout only; the data comes from fill_fn later
    w = StreamingSafetensorsWriter(path, metadata=metadata)
    with w:
        for name, shape, dtype, _ in items:
            w.add(name, dtype, shape)
        for name, _, _, fill in items:
            w.write(name, fill())
    return w.path
