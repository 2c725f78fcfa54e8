"""The framework-agnostic runner: order, key templates, missing-key report, scale plumbing, sink lifecycle.

Values here are plain Python / numpy objects on purpose: weight_loader must not need torch.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

from flash_rt.errors import CheckpointError
from flash_rt.executors.weight_loader import (PENDING_SCALE, Item, LayerBlock, LoaderContext, ModelWeightSpec,
                                              Transform, WeightLoader, WeightSink, WeightSource)


class RecSource:
    """dict source that records every get()."""

    def __init__(self, d):
        self.d, self.gets = dict(d), []

    def get(self, key):
        self.gets.append(key)
        return self.d[key]

    def has(self, key):
        return key in self.d

    def keys(self):
        return list(self.d)


class RecSink:
    def __init__(self):
        self.stored, self.finalized, self.resets = [], 0, 0

    def reset(self):
        self.stored, self.resets = [], self.resets + 1

    def store(self, name, x, ctx):
        self.stored.append((name, x, ctx.layer_idx, ctx.block))

    def finalize(self, target):
        self.finalized += 1
        target.rec = list(self.stored)


class AddOne:
    def apply(self, x, ctx):
        return x + 1


class Double:
    def apply(self, x, ctx):
        return x * 2


class FakeQuant:
    """Leaves a scale the way torch_weights.Quant does."""

    def apply(self, x, ctx):
        ctx.scratch[PENDING_SCALE] = float(x) / 10.0
        return -x


def target():
    return types.SimpleNamespace()


def test_protocols_are_runtime_checkable():
    assert isinstance(RecSource({}), WeightSource)
    assert isinstance(RecSink(), WeightSink)
    assert isinstance(AddOne(), Transform)
    assert not isinstance(object(), WeightSource)
    assert not isinstance(object(), WeightSink)


def test_dataclasses_normalise_sequences():
    it = Item("a", "k", [AddOne()])
    assert isinstance(it.transforms, tuple)
    b = LayerBlock("blk", 2, [it], prefix_fmt="l.{i}.")
    assert b.items == (it,)
    spec = ModelWeightSpec("none", [b], [it])
    assert spec.blocks == (b,) and spec.singletons == (it,)
    with pytest.raises(ValueError):
        LayerBlock("bad", -1, [])


def test_rejects_bad_source_and_spec():
    spec = ModelWeightSpec("none")
    with pytest.raises(TypeError, match="WeightSource"):
        WeightLoader(spec, {"a": 1})
    with pytest.raises(TypeError, match="ModelWeightSpec"):
        WeightLoader({"singletons": []}, RecSource({}))
    with pytest.raises(TypeError, match="apply"):
        WeightLoader(ModelWeightSpec("none", singletons=[Item("a", "a", [object()])]), RecSource({"a": 1}))
    with pytest.raises(TypeError, match="key must be"):
        WeightLoader(ModelWeightSpec("none", singletons=[Item("a", 3)]), RecSource({"a": 1}))


def test_empty_spec_returns_clean_context():
    t = target()
    ctx = WeightLoader(ModelWeightSpec("none"), RecSource({})).run(t)
    assert isinstance(ctx, LoaderContext)
    assert ctx.scales == {} and ctx.outputs == {} and ctx.layer_idx is None
    assert vars(t) == {}


def test_order_templates_and_transforms():
    src = RecSource({"emb": 1, "l.0.w": 10, "l.1.w": 20, "l.0.b": 100, "l.1.b": 200})
    sink = RecSink()
    spec = ModelWeightSpec(
        "none",
        blocks=[LayerBlock("dec", 2, [Item("w{i}", "{prefix}w", [AddOne(), Double()], sink),
                                      Item("b{i}", "l.{i}.b", [Double(), AddOne()], sink)], prefix_fmt="l.{i}.")],
        singletons=[Item("emb", "emb", (), sink)])
    t = target()
    WeightLoader(spec, src).run(t)
    # singletons first, then layer-major, item order within a layer; transforms in order
    assert src.gets == ["emb", "l.0.w", "l.0.b", "l.1.w", "l.1.b"]
    assert t.rec == [("emb", 1, None, None), ("w0", 22, 0, "dec"), ("b0", 201, 0, "dec"),
                     ("w1", 42, 1, "dec"), ("b1", 401, 1, "dec")]
    assert sink.finalized == 1  # shared sink finalized once


def test_all_missing_keys_in_one_error_before_any_read():
    src = RecSource({"l.0.w": 1, "emb": 0})
    spec = ModelWeightSpec(
        "none",
        blocks=[LayerBlock("dec", 3, [Item("w{i}", "l.{i}.w", sink=RecSink()),
                                      Item("b{i}", "l.{i}.b", sink=RecSink())])],
        singletons=[Item("emb", "emb", sink=RecSink()), Item("head", "head.w", sink=RecSink())])
    with pytest.raises(CheckpointError) as ei:
        WeightLoader(spec, src).run(target())
    msg = str(ei.value)
    for k in ["head.w", "l.1.w", "l.2.w", "l.0.b", "l.1.b", "l.2.b"]:
        assert k in msg
    assert "6 key(s)" in msg
    assert "dec[2].b{i}" in msg  # says which item needed it
    assert src.gets == []  # nothing was loaded


def test_missing_keys_inside_composites_are_reported():
    class Pair:
        def __init__(self, a, b):
            self.a, self.b = a, b

        def required_keys(self, ctx):
            return [ctx.format_key(self.a), ctx.format_key(self.b)]

        def resolve(self, source, ctx):
            return source.get(ctx.format_key(self.a)) + source.get(ctx.format_key(self.b))

    src = RecSource({"a.0": 1, "b.0": 2, "a.1": 3})
    spec = ModelWeightSpec("none", blocks=[LayerBlock("x", 2, [Item("p{i}", Pair("a.{i}", "b.{i}"),
                                                                    sink=RecSink())])])
    with pytest.raises(CheckpointError, match=r"b\.1"):
        WeightLoader(spec, src).run(target())
    src.d["b.1"] = 4
    t = target()
    WeightLoader(spec, src).run(t)
    assert [r[1] for r in t.rec] == [3, 7]


def test_singleton_with_layer_index_is_a_spec_error():
    spec = ModelWeightSpec("none", singletons=[Item("x", "l.{i}.w", sink=RecSink())])
    with pytest.raises(ValueError, match="singleton"):
        WeightLoader(spec, RecSource({"l.0.w": 1})).run(target())


def test_scale_into_collects_and_publishes_numpy_for_non_torch():
    src = RecSource({f"l.{i}.w": float(i + 1) for i in range(3)})
    spec = ModelWeightSpec("none", blocks=[LayerBlock("dec", 3, [
        Item("w{i}", "l.{i}.w", [FakeQuant()], RecSink(), scale_into="w_scales")])])
    t = target()
    ctx = WeightLoader(spec, src).run(t)
    assert ctx.scales == {"w_scales": [0.1, 0.2, 0.3]}
    assert isinstance(t.w_scales, np.ndarray) and t.w_scales.dtype == np.float32
    np.testing.assert_array_equal(t.w_scales, np.array([0.1, 0.2, 0.3], dtype=np.float32))
    assert PENDING_SCALE not in ctx.scratch


def test_quant_without_scale_into_and_scale_into_without_quant_raise():
    src = RecSource({"w": 1.0})
    with pytest.raises(ValueError, match="no scale_into"):
        WeightLoader(ModelWeightSpec("none", singletons=[Item("w", "w", [FakeQuant()], RecSink())]),
                     src).run(target())
    with pytest.raises(ValueError, match="no Quant"):
        WeightLoader(ModelWeightSpec("none", singletons=[Item("w", "w", [], RecSink(), scale_into="s")]),
                     src).run(target())


def test_rerun_is_idempotent():
    sink = RecSink()
    src = RecSource({f"l.{i}.w": float(i) for i in range(2)})
    spec = ModelWeightSpec("none", blocks=[LayerBlock("dec", 2, [
        Item("w{i}", "l.{i}.w", [FakeQuant()], sink, scale_into="s")])])
    loader = WeightLoader(spec, src)
    t = target()
    loader.run(t)
    first = (list(t.rec), t.s.copy())
    ctx = loader.run(t)
    assert sink.resets == 2 and sink.finalized == 2
    assert t.rec == first[0] and len(t.rec) == 2
    np.testing.assert_array_equal(t.s, first[1])
    assert len(ctx.scales["s"]) == 2


def test_sinkless_items_land_in_outputs():
    src = RecSource({"a": 1, "l.0.b": 2, "l.1.b": 3})
    spec = ModelWeightSpec("none", blocks=[LayerBlock("x", 2, [Item("b{i}", "l.{i}.b")])],
                           singletons=[Item("a", "a", [AddOne()])])
    ctx = WeightLoader(spec, src).run(target())
    assert ctx.outputs == {"a": 2, "b0": 2, "b1": 3}


def test_source_keyerror_at_load_becomes_checkpoint_error():
    class Liar(RecSource):
        def has(self, key):
            return True

    spec = ModelWeightSpec("none", singletons=[Item("a", "a", sink=RecSink())])
    with pytest.raises(CheckpointError, match="'a'"):
        WeightLoader(spec, Liar({})).run(target())


def test_malformed_template_is_reported():
    spec = ModelWeightSpec("none", blocks=[LayerBlock("x", 1, [Item("a", "l.{j}.w", sink=RecSink())])])
    with pytest.raises(ValueError, match="malformed"):
        WeightLoader(spec, RecSource({})).run(target())
