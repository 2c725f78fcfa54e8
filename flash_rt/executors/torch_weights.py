"""Torch implementations of the `weight_loader` protocols: sources, composite keys, transforms, sinks.

Sources
    `SafetensorsSource` reads lazily through `safetensors.safe_open`: each `get()` materialises exactly one
    tensor, so a 7 GB checkpoint never sits in host memory as a whole. It presents a *canonical* key view:
      * lerobot `save_pretrained` files prefix every key with `model.`; when the family sentinel
        (`paligemma_with_expert.`) occurs only in prefixed form, the prefix is stripped;
      * openpi converted files store the tied token embedding only as `paligemma.lm_head.weight`
        (`save_model` keeps one name of a tied pair); `...language_model.embed_tokens.weight` is exposed as an
        alias of it when absent, so specs can always name the embedding by its real role.
    Headers are validated (size / offsets, see `safetensors_io.read_header`) before anything is mapped, and
    `key_shapes()` answers from the headers without reading tensor data -- enough for `infer_config` and
    `validate_shapes`. Sharded checkpoints are one source; a key present in two shards is an error.
    `DictSource` wraps a plain dict (tests, converted trees).

Composite keys (fp32 math, result fp32; add `ToFp16()`/`ToBf16()` to choose the storage dtype)
    `Cat`, `FusedQKV`, `FusedGateUp`. The Gemma RMSNorm computes `x_hat * (1 + w)`; folding it into the next
    matmul (`W' = W * (1 + w)[None, :]`) saves a kernel. It is done in fp32 because in bf16 `1 + w` rounds to
    0 for w close to -1 and silently zeroes those input channels.

Transforms
    `tT` / `T` (identical math: `.t().contiguous()` vs `.T.contiguous()`; both names are kept so specs ported
    from the cuBLASLt and CUTLASS paths diff cleanly), `ToFp16` / `ToBf16` / `ToFp32`, `Mul(c)`, and `Quant`
    (per-tensor FP8 E4M3, see its docstring).

Sinks
    `Attr` (one tensor -> one attribute), `TensorList` (one entry per layer), `FlatCat` (all entries
    flattened into one buffer + an offsets table: one allocation / pointer for a whole decoder), `DictSink`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import torch

from flash_rt.errors import CheckpointError
from flash_rt.executors.safetensors_io import (SafetensorsHeader, read_header, resolve_checkpoint_files,
                                               torch_dtype)
from flash_rt.executors.weight_loader import PENDING_SCALE, LoaderContext

# openpi family conventions (pi05_spec.md 1g); the pi05 model package defines the same names.
FAMILY_SENTINELS = ("paligemma_with_expert.",)
LEROBOT_PREFIX = "model."
OPENPI_ALIASES = {
    # canonical key -> key that may hold it instead (tied weights saved under one name only)
    "paligemma_with_expert.paligemma.model.language_model.embed_tokens.weight":
        "paligemma_with_expert.paligemma.lm_head.weight",
}

FP8_E4M3_MAX = 448.0
FP8_MIN_SCALE = 1e-12


# --------------------------------------------------------------------------------------------------------------
# sources
# --------------------------------------------------------------------------------------------------------------
class SafetensorsSource:
    """Lazy, validated, canonical-key view over one or more safetensors files.

    `path_or_paths`: a `.safetensors` file, a shard index `.json`, a checkpoint directory, or a list of files.
    `index`: a shard index weight_map to cross-check against the shards (filled in when a .json/dir is given).
    `strip_prefix` / `sentinels` / `aliases`: the canonicalisation rules above (pass `None` / `{}` to disable).
    """

    def __init__(self, path_or_paths: str | os.PathLike | Sequence[str | os.PathLike], device: str = "cpu", *,
                 index: Mapping[str, str] | None = None, strip_prefix: str | None = LEROBOT_PREFIX,
                 sentinels: Sequence[str] = FAMILY_SENTINELS, aliases: Mapping[str, str] | None = None):
        if isinstance(path_or_paths, (str, os.PathLike)):
            files, wm = resolve_checkpoint_files(path_or_paths)
            index = index if index is not None else wm
        else:
            files = [Path(p) for p in path_or_paths]
            if not files:
                raise CheckpointError("SafetensorsSource got an empty list of files")
        self.files: list[Path] = files
        self.device = device
        self.headers: list[SafetensorsHeader] = [read_header(f) for f in files]

        raw: dict[str, tuple[int, Any]] = {}
        dups: list[str] = []
        for fi, h in enumerate(self.headers):
            for k, info in h.tensors.items():
                if k in raw:
                    dups.append(f"  {k}  in {self.files[raw[k][0]].name} and {self.files[fi].name}")
                else:
                    raw[k] = (fi, info)
        if dups:
            raise CheckpointError(f"{len(dups)} key(s) appear in more than one shard:\n" + "\n".join(dups))
        if index is not None:
            self._check_index(index, raw)

        # lerobot prefix: strip only when the family keys exist exclusively in prefixed form
        self.stripped_prefix = ""
        if strip_prefix and sentinels:
            bare = any(k.startswith(s) for k in raw for s in sentinels)
            pref = any(k.startswith(strip_prefix + s) for k in raw for s in sentinels)
            if pref and not bare:
                self.stripped_prefix = strip_prefix
        self._map: dict[str, str] = {}  # canonical -> raw
        p = self.stripped_prefix
        for k in raw:
            c = k[len(p):] if p and k.startswith(p) else k
            if c in self._map:
                raise CheckpointError(f"keys '{self._map[c]}' and '{k}' both map to '{c}' after stripping the "
                                      f"'{p}' prefix")
            self._map[c] = k
        self._raw = raw

        self.aliased: dict[str, str] = {}  # canonical alias -> canonical key it resolves to
        for canon, other in (OPENPI_ALIASES if aliases is None else aliases).items():
            if canon not in self._map and other in self._map:
                self.aliased[canon] = other
        self._handles: dict[int, Any] = {}

    def _check_index(self, index: Mapping[str, str], raw: Mapping[str, tuple[int, Any]]) -> None:
        problems = []
        for k, fname in index.items():
            if k not in raw:
                problems.append(f"  {k}: listed in the index (file {fname}) but in no shard")
            elif self.files[raw[k][0]].name != Path(fname).name:
                problems.append(f"  {k}: index says {fname}, found in {self.files[raw[k][0]].name}")
        if problems:
            raise CheckpointError(f"shard index disagrees with the shards ({len(problems)} problem(s)):\n"
                                  + "\n".join(problems[:50]))

    def _raw_key(self, key: str) -> str:
        key = self.aliased.get(key, key)
        try:
            return self._map[key]
        except KeyError:
            raise KeyError(key) from None

    # -- WeightSource --------------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self._map or key in self.aliased

    def keys(self) -> list[str]:
        return list(self._map) + list(self.aliased)

    def get(self, key: str) -> torch.Tensor:
        rk = self._raw_key(key)
        fi = self._raw[rk][0]
        h = self._handles.get(fi)
        if h is None:
            from safetensors import safe_open
            h = self._handles[fi] = safe_open(str(self.files[fi]), framework="pt", device=self.device)
        return h.get_tensor(rk)

    # -- metadata without tensor reads ---------------------------------------------------------------------------
    def key_shapes(self) -> dict[str, tuple]:
        """canonical key (aliases included) -> shape, from the headers only."""
        out = {c: tuple(self._raw[r][1].shape) for c, r in self._map.items()}
        for a, c in self.aliased.items():
            out[a] = out[c]
        return out

    def key_dtypes(self) -> dict[str, torch.dtype]:
        out = {c: torch_dtype(self._raw[r][1].dtype) for c, r in self._map.items()}
        for a, c in self.aliased.items():
            out[a] = out[c]
        return out

    @property
    def metadata(self) -> dict:
        return dict(self.headers[0].metadata)

    def raw_key(self, key: str) -> str:
        """The key as stored in the file (for error messages / debugging)."""
        return self._raw_key(key)

    def __contains__(self, key: str) -> bool:
        return self.has(key)

    def __len__(self) -> int:
        return len(self._map) + len(self.aliased)

    def close(self) -> None:
        self._handles.clear()  # safe_open handles unmap when released

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return (f"SafetensorsSource({[f.name for f in self.files]}, keys={len(self)}, "
                f"stripped_prefix={self.stripped_prefix!r}, aliased={list(self.aliased)})")


class DictSource:
    """A dict of tensors as a WeightSource (tests, pre-converted trees). `get` returns the stored object."""

    def __init__(self, d: Mapping[str, torch.Tensor]):
        self._d = dict(d)

    def get(self, key: str) -> torch.Tensor:
        return self._d[key]

    def has(self, key: str) -> bool:
        return key in self._d

    def keys(self) -> list[str]:
        return list(self._d)

    def key_shapes(self) -> dict[str, tuple]:
        return {k: tuple(v.shape) for k, v in self._d.items()}


# --------------------------------------------------------------------------------------------------------------
# composite keys
# --------------------------------------------------------------------------------------------------------------
def rope_interleave_rows(w: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Permute the rows of a Q or K projection from half-split to pair-interleaved RoPE order, per head.

    HF/openpi Gemma rotates pairs (r, r + H/2) of each head ("rotate_half"); fused RoPE kernels want the pair
    adjacent. Within each head of H rows the new order is [0, H/2, 1, H/2+1, ..., H/2-1, H-1]:
    new row 2j <- old row j, new row 2j+1 <- old row H/2 + j. Rows only (an output permutation), so the result
    of `x @ W'.T` is the same per-head vector with its features permuted -- which the interleaved-RoPE kernel
    undoes implicitly; q.k dot products are unchanged because Q and K get the same permutation.
    """
    rows = w.shape[0]
    if num_heads <= 0 or rows % num_heads:
        raise ValueError(f"cannot split {rows} rows into {num_heads} heads")
    hd = rows // num_heads
    if hd % 2:
        raise ValueError(f"head_dim {hd} is odd; RoPE pairs need an even head_dim")
    rest = w.shape[1:]
    return w.reshape(num_heads, 2, hd // 2, *rest).transpose(1, 2).reshape(rows, *rest).contiguous()


def _fold_norm(w: torch.Tensor, norm: torch.Tensor | None, what: str) -> torch.Tensor:
    w = w.float()
    if norm is None:
        return w
    if norm.dim() != 1 or norm.shape[0] != w.shape[1]:
        raise CheckpointError(f"{what}: norm weight shape {list(norm.shape)} does not match the "
                              f"{w.shape[1]} input columns of {list(w.shape)}")
    return w * (1.0 + norm.float())[None, :]


class Cat:
    """`torch.cat([source[k] for k in keys], dim)`. Inputs must share a dtype (no silent promotion)."""

    def __init__(self, keys: Sequence[str], dim: int = 0):
        if isinstance(keys, str) or not keys:
            raise ValueError("Cat needs a non-empty sequence of key templates")
        self.keys, self.dim = tuple(keys), dim

    def required_keys(self, ctx: LoaderContext) -> list[str]:
        return [ctx.format_key(k) for k in self.keys]

    def resolve(self, source, ctx: LoaderContext) -> torch.Tensor:
        ks = self.required_keys(ctx)
        ts = [source.get(k) for k in ks]
        dts = {t.dtype for t in ts}
        if len(dts) > 1:
            raise CheckpointError(f"Cat of {ks}: mixed dtypes {sorted(map(str, dts))}")
        return torch.cat(ts, dim=self.dim)

    def __repr__(self):
        return f"Cat({list(self.keys)}, dim={self.dim})"


class FusedQKV:
    """`[q; k; v]` on dim 0, in fp32, with an optional Gemma RMSNorm fold and RoPE pair interleave.

    Steps: each of q/k/v -> fp32; if `norm_fuse` (a key template of the pre-attention norm weight, 1-D over the
    input columns): W' = W * (1 + w)[None, :]; if `interleave_q_heads` / `interleave_k_heads`: permute the rows
    of q / k with `rope_interleave_rows` (v is never permuted); then cat. `head_dim`, when given, is checked
    against the row counts (a multiple of it; exactly heads x head_dim where a head count is given). The
    result is fp32.
    """

    def __init__(self, q: str, k: str, v: str, norm_fuse: str | None = None, interleave_q_heads: int | None = None,
                 interleave_k_heads: int | None = None, head_dim: int | None = None):
        self.q, self.k, self.v, self.norm_fuse = q, k, v, norm_fuse
        self.interleave_q_heads, self.interleave_k_heads, self.head_dim = (interleave_q_heads,
                                                                           interleave_k_heads, head_dim)

    def required_keys(self, ctx: LoaderContext) -> list[str]:
        ks = [self.q, self.k, self.v] + ([self.norm_fuse] if self.norm_fuse else [])
        return [ctx.format_key(k) for k in ks]

    def resolve(self, source, ctx: LoaderContext) -> torch.Tensor:
        ks = self.required_keys(ctx)
        norm = source.get(ks[3]) if self.norm_fuse else None
        q, k, v = (_fold_norm(source.get(x), norm, x) for x in ks[:3])
        if not (q.shape[1:] == k.shape[1:] == v.shape[1:]):
            raise CheckpointError(f"FusedQKV: q/k/v input dims differ: {list(q.shape)}, {list(k.shape)}, "
                                  f"{list(v.shape)} ({ks[:3]})")
        if self.head_dim is not None:
            for t, heads, key in ((q, self.interleave_q_heads, ks[0]), (k, self.interleave_k_heads, ks[1]),
                                  (v, None, ks[2])):
                if t.shape[0] % self.head_dim or (heads is not None and t.shape[0] != heads * self.head_dim):
                    raise CheckpointError(f"FusedQKV: '{key}' has {t.shape[0]} rows, expected "
                                          f"{heads if heads is not None else 'a whole number of'} heads x "
                                          f"head_dim {self.head_dim}")
        if self.interleave_q_heads:
            q = rope_interleave_rows(q, self.interleave_q_heads)
        if self.interleave_k_heads:
            k = rope_interleave_rows(k, self.interleave_k_heads)
        return torch.cat([q, k, v], dim=0)

    def __repr__(self):
        return (f"FusedQKV({self.q!r}, {self.k!r}, {self.v!r}, norm_fuse={self.norm_fuse!r}, "
                f"interleave_q_heads={self.interleave_q_heads}, interleave_k_heads={self.interleave_k_heads}, "
                f"head_dim={self.head_dim})")


class FusedGateUp:
    """`[gate; up]` on dim 0 in fp32 (GeGLU input projection), with the same optional norm fold."""

    def __init__(self, gate: str, up: str, norm_fuse: str | None = None):
        self.gate, self.up, self.norm_fuse = gate, up, norm_fuse

    def required_keys(self, ctx: LoaderContext) -> list[str]:
        ks = [self.gate, self.up] + ([self.norm_fuse] if self.norm_fuse else [])
        return [ctx.format_key(k) for k in ks]

    def resolve(self, source, ctx: LoaderContext) -> torch.Tensor:
        ks = self.required_keys(ctx)
        norm = source.get(ks[2]) if self.norm_fuse else None
        g, u = (_fold_norm(source.get(x), norm, x) for x in ks[:2])
        if g.shape != u.shape:
            raise CheckpointError(f"FusedGateUp: gate {list(g.shape)} and up {list(u.shape)} differ ({ks[:2]})")
        return torch.cat([g, u], dim=0)

    def __repr__(self):
        return f"FusedGateUp({self.gate!r}, {self.up!r}, norm_fuse={self.norm_fuse!r})"


# --------------------------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------------------------
class _Simple:
    def __repr__(self):
        return f"{type(self).__name__}()"

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self).__name__, tuple(sorted(vars(self).items()))))


class tT(_Simple):  # noqa: N801 -- name kept from the cuBLASLt-path specs
    """`x.t().contiguous()`: [out, in] -> [in, out] for kernels that want K-major weights."""

    def apply(self, x, ctx):
        return x.t().contiguous()


class T(_Simple):
    """`x.T.contiguous()`: same math as `tT`; a separate name only so CUTLASS-path specs diff cleanly."""

    def apply(self, x, ctx):
        if x.dim() != 2:
            raise ValueError(f"T expects a 2-D weight, got shape {list(x.shape)}")
        return x.T.contiguous()


class ToFp16(_Simple):
    def apply(self, x, ctx):
        return x.to(torch.float16)


class ToBf16(_Simple):
    def apply(self, x, ctx):
        return x.to(torch.bfloat16)


class ToFp32(_Simple):
    def apply(self, x, ctx):
        return x.to(torch.float32)


class Mul(_Simple):
    """`x * c` (keeps x's dtype), e.g. folding sqrt(width) into an embedding."""

    def __init__(self, c: float):
        self.c = c

    def apply(self, x, ctx):
        return x * self.c

    def __repr__(self):
        return f"Mul({self.c!r})"


class Quant(_Simple):
    """Per-tensor FP8 E4M3 quantisation, fp32 math.

    amax = max|x| (in fp32); scale = max(amax / 448, 1e-12) (a 0-d fp32 tensor; the floor keeps an all-zero
    tensor finite); q = clamp(x_fp32 / scale, -448, 448) -> float8_e4m3fn (round to nearest even).
    Dequantised: x ~= q.float() * scale. The scale goes to `ctx.scratch["_pending_scale"]`; the loader moves it
    to `ctx.scales[item.scale_into]` and publishes the list on the target. Non-finite weights raise: they
    would poison the scale of the whole tensor without any visible error.
    """

    def apply(self, x, ctx):
        xf = x.float()
        amax = xf.abs().amax() if xf.numel() else torch.zeros((), dtype=torch.float32, device=xf.device)
        if not bool(torch.isfinite(amax)):
            where = ctx.item.name if ctx is not None and ctx.item is not None else "tensor"
            raise CheckpointError(f"Quant: non-finite values (amax={float(amax)}) in '{where}'"
                                  + (f" layer {ctx.layer_idx}" if ctx is not None and ctx.layer_idx is not None
                                     else ""))
        scale = torch.clamp(amax / FP8_E4M3_MAX, min=FP8_MIN_SCALE).to(torch.float32)
        q = (xf / scale).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
        if ctx is not None:
            ctx.scratch[PENDING_SCALE] = scale
        return q


# --------------------------------------------------------------------------------------------------------------
# sinks
# --------------------------------------------------------------------------------------------------------------
_UNSET = object()


class Attr:
    """`setattr(target, name, x)` at finalize. One store per run: a second store is a spec bug and raises."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self._value, self._from = _UNSET, None

    def store(self, name: str, x, ctx) -> None:
        if self._value is not _UNSET:
            raise ValueError(f"Attr('{self.name}') stored twice: first by '{self._from}', then by '{name}'")
        self._value, self._from = x, name

    def finalize(self, target) -> None:
        if self._value is not _UNSET:
            setattr(target, self.name, self._value)

    def __repr__(self):
        return f"Attr({self.name!r})"


class TensorList:
    """`target.<name> = [x, ...]` in load order, i.e. layer order within a block (one entry per store)."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self._items: list = []

    def store(self, name: str, x, ctx) -> None:
        self._items.append(x)

    def finalize(self, target) -> None:
        setattr(target, self.name, list(self._items))

    def __repr__(self):
        return f"TensorList({self.name!r})"


class FlatEntry(NamedTuple):
    offset: int   # in elements of the flat buffer
    numel: int
    shape: tuple


class FlatCat:
    """Flatten every stored tensor and concatenate them (load order) into `target.<name>`, a 1-D tensor; record
    `target.<name>_offsets = {item name: FlatEntry(offset, numel, shape)}` (offsets in elements).

    Why: a decoder's weights as one allocation give kernels a single base pointer + constant offsets, which
    is what whole-forward CUDA-graph capture wants. All entries must share dtype and device. Item names must
    be unique per run (include `{i}` in a block item's name).
    """

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self._items: list[tuple[str, torch.Tensor]] = []
        self._names: set[str] = set()

    def store(self, name: str, x, ctx) -> None:
        if name in self._names:
            raise ValueError(f"FlatCat('{self.name}'): item name '{name}' stored twice; put {{i}} in the name of "
                             f"items inside a LayerBlock")
        if self._items:
            x0 = self._items[0][1]
            if x.dtype != x0.dtype or x.device != x0.device:
                raise ValueError(f"FlatCat('{self.name}'): '{name}' is {x.dtype} on {x.device}, but "
                                 f"'{self._items[0][0]}' is {x0.dtype} on {x0.device}; cast before storing")
        self._names.add(name)
        self._items.append((name, x))

    def finalize(self, target) -> None:
        if not self._items:
            return
        offsets: dict[str, FlatEntry] = {}
        pos = 0
        for n, x in self._items:
            offsets[n] = FlatEntry(pos, x.numel(), tuple(x.shape))
            pos += x.numel()
        flat = torch.cat([x.reshape(-1) for _, x in self._items])
        self._items = []  # drop the per-item references so their memory can go
        setattr(target, self.name, flat)
        setattr(target, self.name + "_offsets", offsets)

    def __repr__(self):
        return f"FlatCat({self.name!r})"


class DictSink:
    """`getattr(target, dict_attr)[item name] = x` at finalize (the dict is created if the attribute is
    missing; other entries already in it are kept). A name stored twice in one run raises."""

    def __init__(self, dict_attr: str):
        self.dict_attr = dict_attr
        self.reset()

    def reset(self) -> None:
        self._pending: dict[str, Any] = {}

    def store(self, name: str, x, ctx) -> None:
        if name in self._pending:
            raise ValueError(f"DictSink('{self.dict_attr}'): key '{name}' stored twice; put {{i}} in the item "
                             f"name")
        self._pending[name] = x

    def finalize(self, target) -> None:
        d = getattr(target, self.dict_attr, None)
        if d is None:
            d = {}
            setattr(target, self.dict_attr, d)
        d.update(self._pending)

    def __repr__(self):
        return f"DictSink({self.dict_attr!r})"

