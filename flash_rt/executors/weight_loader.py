"""Declarative weight loading: a model says *what* it reads, one runner does the reading.

Why declarative: every frontend (torch on Hopper/Thor/RTX, later others) needs the same checkpoint walked the
same way -- hundreds of per-layer tensors, each fused, transposed, cast and maybe FP8-quantised, then parked in
the layout its kernels want. Written by hand that is a few hundred lines of loops per frontend that drift apart.
Here a frontend writes a `ModelWeightSpec` (a table of `Item`s) and `WeightLoader.run()` executes it. The spec
is data, so it can be diffed between frontends, validated before any byte is read, and hashed into a weight
cache key.

This module is framework-agnostic: it knows nothing of torch. Tensors are opaque values that flow from a
`WeightSource` through `Transform`s into a `WeightSink`. The torch implementations live in
`flash_rt.executors.torch_weights`.

Execution model of `WeightLoader(spec, source).run(target)`:

1. type-check `source` / `spec`; reset every sink (so a rerun on the same spec is idempotent);
2. resolve every key the spec will read (all singletons, every block x layer x item, including the keys
   inside composites) and check them with `source.has()`. If any is missing, raise ONE `CheckpointError`
   listing all of them, before anything is loaded -- fixing a converter one key per run is miserable;
3. load the singletons, then each block layer by layer, item by item: resolve the key (template string ->
   `source.get`, composite -> `key.resolve(source, ctx)`), apply the item's transforms in order, hand the
   result to its sink (or to `ctx.outputs` when the item has no sink);
4. a `Quant`-like transform leaves its scale in `ctx.scratch["_pending_scale"]`; the runner moves it to
   `ctx.scales[item.scale_into]` (layer-major order). A quant without `scale_into`, or `scale_into` without a
   quant, is a spec bug and raises;
5. finalize each distinct sink once (dedup by identity) -- sinks buffer until then, so a failed load leaves
   the target untouched by sinks that had not finalized;
6. publish each scale list as `setattr(target, name, scales)` -- a float32 torch tensor for
   `framework == "torch"`, a float32 numpy array otherwise.

Key templates: `{i}` is the layer index, `{prefix}` the block's `prefix_fmt.format(i=i)`. Singletons have no
layer: a singleton key containing `{i}` is a spec error.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence, runtime_checkable

from flash_rt.errors import CheckpointError

PENDING_SCALE = "_pending_scale"


# --------------------------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------------------------
@runtime_checkable
class WeightSource(Protocol):
    """Where raw tensors come from (a safetensors file, a dict, an Orbax tree...). Keys are canonical names."""

    def get(self, key: str) -> Any: ...

    def has(self, key: str) -> bool: ...

    def keys(self) -> Iterable[str]: ...


@runtime_checkable
class Transform(Protocol):
    """A pure step `x -> x'` (transpose, cast, quantise). May write to `ctx.scratch` (e.g. a pending scale)."""

    def apply(self, x: Any, ctx: "LoaderContext") -> Any: ...


@runtime_checkable
class WeightSink(Protocol):
    """Where a loaded tensor ends up. `store` may buffer; `finalize(target)` publishes onto the target.

    Sinks may also define `reset()`; the loader calls it at the start of every run so reruns are idempotent.
    """

    def store(self, name: str, x: Any, ctx: "LoaderContext") -> None: ...

    def finalize(self, target: Any) -> None: ...


@runtime_checkable
class CompositeKey(Protocol):
    """A key built from several checkpoint tensors (e.g. fused QKV). `required_keys` enables the up-front
    missing-key check; `resolve` produces the tensor."""

    def resolve(self, source: WeightSource, ctx: "LoaderContext") -> Any: ...

    def required_keys(self, ctx: "LoaderContext") -> Iterable[str]: ...


# --------------------------------------------------------------------------------------------------------------
# spec dataclasses
# --------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Item:
    """One output tensor. `key` is a template str (`{i}`, `{prefix}`) or a composite with `.resolve()`.

    `name` is formatted with `i` (and `prefix`) and passed to the sink (`DictSink` / `FlatCat` key by it).
    `scale_into` names the target attribute collecting the scale of a `Quant` transform in `transforms`.
    """

    name: str
    key: Any
    transforms: Sequence[Transform] = ()
    sink: WeightSink | None = None
    scale_into: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "transforms", tuple(self.transforms))


@dataclasses.dataclass(frozen=True)
class LayerBlock:
    """`items` repeated for layers 0..num_layers-1; `prefix_fmt.format(i=i)` fills `{prefix}` in keys."""

    name: str
    num_layers: int
    items: Sequence[Item]
    prefix_fmt: str = ""

    def __post_init__(self):
        object.__setattr__(self, "items", tuple(self.items))
        if not isinstance(self.num_layers, int) or self.num_layers < 0:
            raise ValueError(f"LayerBlock '{self.name}': num_layers must be an int >= 0, got {self.num_layers!r}")


@dataclasses.dataclass(frozen=True)
class ModelWeightSpec:
    """The whole table: `singletons` (no layer index) then `blocks`. `framework` picks how scales publish."""

    framework: str
    blocks: Sequence[LayerBlock] = ()
    singletons: Sequence[Item] = ()

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "singletons", tuple(self.singletons))

    def sinks(self) -> list[WeightSink]:
        """Distinct sinks (by identity) in first-use order."""
        seen: dict[int, WeightSink] = {}
        for it in self.iter_items():
            if it.sink is not None and id(it.sink) not in seen:
                seen[id(it.sink)] = it.sink
        return list(seen.values())

    def iter_items(self) -> Iterator[Item]:
        yield from self.singletons
        for b in self.blocks:
            yield from b.items


@dataclasses.dataclass
class LoaderContext:
    """State visible to composites, transforms and sinks while one item loads.

    `scratch` is cleared of `_pending_scale` before every item; anything else in it is shared for the run.
    `outputs` receives the values of items without a sink (name -> value).
    """

    source: WeightSource
    target: Any
    layer_idx: int | None = None
    scales: dict[str, list] = dataclasses.field(default_factory=dict)
    scratch: dict[str, Any] = dataclasses.field(default_factory=dict)
    prefix: str = ""
    block: str | None = None
    item: Item | None = None
    outputs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def format_key(self, template: str) -> str:
        """Fill `{i}` / `{prefix}` for the current layer. `{i}` outside a layer block is a spec error."""
        return _format(template, self.layer_idx, self.prefix, what="key")

    def format_name(self, template: str) -> str:
        return _format(template, self.layer_idx, self.prefix, what="item name")


def _format(template: str, layer_idx: int | None, prefix: str, what: str) -> str:
    if not isinstance(template, str):
        raise TypeError(f"{what} template must be a str, got {type(template).__name__}: {template!r}")
    if layer_idx is None and "{i}" in template:
        raise ValueError(f"{what} '{template}' uses {{i}} but is loaded as a singleton (no layer index)")
    try:
        return template.format(i=layer_idx, prefix=prefix)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"{what} template '{template}' is malformed: only {{i}} and {{prefix}} are "
                         f"available ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------------------------------------------
# runner
# --------------------------------------------------------------------------------------------------------------
def _item_required_keys(item: Item, ctx: LoaderContext) -> list[str]:
    k = item.key
    if isinstance(k, str):
        return [ctx.format_key(k)]
    req = getattr(k, "required_keys", None)
    if req is None:  # a composite that cannot list its keys is only checked when it resolves
        return []
    return list(req(ctx))


class WeightLoader:
    """Runs a `ModelWeightSpec` against a `WeightSource`. See the module docstring for the exact order."""

    def __init__(self, spec: ModelWeightSpec, source: WeightSource,
                 scale_publisher: Callable[[str, list], Any] | None = None):
        if not isinstance(spec, ModelWeightSpec):
            raise TypeError(f"spec must be a ModelWeightSpec, got {type(spec).__name__}")
        if not isinstance(source, WeightSource):
            raise TypeError(f"source must implement WeightSource (get/has/keys), got {type(source).__name__}")
        for it in spec.iter_items():
            if not isinstance(it, Item):
                raise TypeError(f"spec entries must be Item, got {type(it).__name__}: {it!r}")
            if not isinstance(it.key, str) and not callable(getattr(it.key, "resolve", None)):
                raise TypeError(f"Item '{it.name}': key must be a template str or a composite with "
                                f".resolve(source, ctx), got {type(it.key).__name__}")
            for t in it.transforms:
                if not isinstance(t, Transform):
                    raise TypeError(f"Item '{it.name}': transform {t!r} has no apply(x, ctx)")
            if it.sink is not None and not isinstance(it.sink, WeightSink):
                raise TypeError(f"Item '{it.name}': sink {it.sink!r} has no store(name, x, ctx)/finalize(target)")
        self.spec = spec
        self.source = source
        self._publish = scale_publisher or _default_publisher(spec.framework)

    # -- walking ------------------------------------------------------------------------------------------------
    def _walk(self, ctx: LoaderContext) -> Iterator[Item]:
        """Yield items in load order, with ctx.layer_idx / prefix / block set for each."""
        ctx.layer_idx, ctx.prefix, ctx.block = None, "", None
        for it in self.spec.singletons:
            ctx.item = it
            yield it
        for b in self.spec.blocks:
            for i in range(b.num_layers):
                ctx.layer_idx, ctx.block = i, b.name
                ctx.prefix = _format(b.prefix_fmt, i, "", what=f"block '{b.name}' prefix_fmt")
                for it in b.items:
                    ctx.item = it
                    yield it
        ctx.layer_idx, ctx.prefix, ctx.block, ctx.item = None, "", None, None

    def missing_keys(self, ctx: LoaderContext | None = None) -> list[tuple[str, str]]:
        """(where, key) for every key the spec reads that the source lacks, in load order, deduplicated."""
        ctx = ctx or LoaderContext(source=self.source, target=None)
        missing: list[tuple[str, str]] = []
        seen: set[str] = set()
        for it in self._walk(ctx):
            for k in _item_required_keys(it, ctx):
                if k not in seen and not self.source.has(k):
                    where = it.name if ctx.block is None else f"{ctx.block}[{ctx.layer_idx}].{it.name}"
                    missing.append((where, k))
                seen.add(k)
        return missing

    def run(self, target: Any) -> LoaderContext:
        ctx = LoaderContext(source=self.source, target=target)
        sinks = self.spec.sinks()
        for s in sinks:
            reset = getattr(s, "reset", None)
            if reset is not None:
                reset()

        missing = self.missing_keys(ctx)
        if missing:
            lines = "\n".join(f"  {k}   (for {w})" for w, k in missing)
            raise CheckpointError(
                f"checkpoint is missing {len(missing)} key(s) required by the {self.spec.framework} weight spec:\n"
                f"{lines}")

        for it in self._walk(ctx):
            self._load_item(it, ctx)

        for s in sinks:
            s.finalize(target)
        for name, vals in ctx.scales.items():
            setattr(target, name, self._publish(name, vals))
        return ctx

    def _load_item(self, it: Item, ctx: LoaderContext) -> None:
        ctx.scratch.pop(PENDING_SCALE, None)
        where = it.name if ctx.block is None else f"{ctx.block}[{ctx.layer_idx}].{it.name}"
        if isinstance(it.key, str):
            key = ctx.format_key(it.key)
            try:
                x = self.source.get(key)
            except KeyError:
                raise CheckpointError(f"checkpoint has no key '{key}' (for {where})") from None
        else:
            try:
                x = it.key.resolve(self.source, ctx)
            except KeyError as e:
                raise CheckpointError(f"checkpoint has no key {e} (composite for {where})") from None
        for t in it.transforms:
            x = t.apply(x, ctx)

        pending = ctx.scratch.pop(PENDING_SCALE, None)
        if pending is not None and it.scale_into is None:
            raise ValueError(f"spec error in {where}: a Quant transform produced a scale but the Item has no "
                             f"scale_into to collect it")
        if pending is None and it.scale_into is not None:
            raise ValueError(f"spec error in {where}: scale_into='{it.scale_into}' but no Quant transform ran")
        if pending is not None:
            ctx.scales.setdefault(it.scale_into, []).append(pending)

        name = ctx.format_name(it.name)
        if it.sink is None:
            if name in ctx.outputs:
                raise ValueError(f"spec error: two sink-less items produce '{name}'")
            ctx.outputs[name] = x
        else:
            it.sink.store(name, x, ctx)


def _default_publisher(framework: str) -> Callable[[str, list], Any]:
    if framework == "torch":
        def pub(name: str, vals: list):
            import torch
            # keep the scales' device: GPU kernels take the scale tensor's pointer directly
            return torch.stack([torch.as_tensor(v).detach().to(torch.float32).reshape(()) for v in vals])
        return pub

    def pub_np(name: str, vals: list):
        import numpy as np
        return np.asarray([float(np.asarray(v)) for v in vals], dtype=np.float32)
    return pub_np
