"""Bit-exact checks of every torch transform, composite and sink, plus SafetensorsSource key canonicalisation.

Expected values are computed independently (numpy float32 loops, hand-written permutations and bit patterns),
never by calling the code under test a second time.
"""
from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from flash_rt.errors import CheckpointError
from flash_rt.executors.torch_weights import (OPENPI_ALIASES, Attr, Cat, DictSink, DictSource, FlatCat, FlatEntry,
                                              FusedGateUp, FusedQKV, Mul, Quant, SafetensorsSource, T, TensorList,
                                              ToBf16, ToFp16, ToFp32, rope_interleave_rows, tT)
from flash_rt.executors.weight_loader import (PENDING_SCALE, Item, LayerBlock, LoaderContext, ModelWeightSpec,
                                              WeightLoader, WeightSource)
from flash_rt.models.pi05.config import EMBED_LM_HEAD, EMBED_TOKENS


def ctx_for(source=None, layer=None):
    return LoaderContext(source=source or DictSource({}), target=types.SimpleNamespace(), layer_idx=layer)


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().reshape(-1).view(torch.uint8)


def assert_bits_equal(a: torch.Tensor, b: torch.Tensor):
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    assert torch.equal(bits(a), bits(b))


def randn(*shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).to(dtype)


# --------------------------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------------------------
def test_tT_and_T_identical_and_correct():
    x = randn(3, 5, dtype=torch.bfloat16)
    a, b = tT().apply(x, None), T().apply(x, None)
    assert a.is_contiguous() and b.is_contiguous()
    assert_bits_equal(a, b)
    assert a.shape == (5, 3)
    for i in range(3):
        for j in range(5):
            assert bits(a[j, i]).tolist() == bits(x[i, j]).tolist()
    with pytest.raises(ValueError):
        T().apply(torch.zeros(2, 2, 2), None)


def test_to_fp16_bits_match_numpy_and_hand_values():
    vals = np.array([1.0, -2.0, 1 / 3, 65504.0, 65520.0, 1e-8, 6e-5, 0.1], dtype=np.float32)
    out = ToFp16().apply(torch.from_numpy(vals), None)
    assert out.dtype == torch.float16
    with np.errstate(over="ignore"):  # 65520 overflows to inf on purpose
        ref = vals.astype(np.float16).view(np.uint16)
    assert out.view(torch.int16).numpy().view(np.uint16).tolist() == ref.tolist()
    # a few by hand: 1.0 = 0x3C00, -2 = 0xC000, 1/3 = 0x3555, 65504 = 0x7BFF, 65520 rounds to inf 0x7C00
    assert ref[:5].tolist() == [0x3C00, 0xC000, 0x3555, 0x7BFF, 0x7C00]


def test_to_bf16_round_nearest_even_bits():
    vals = np.array([1.0, 1 / 3, -3.14159, 1e-30, 3e38, 1.00390625, 1.01171875, -0.0], dtype=np.float32)
    out = ToBf16().apply(torch.from_numpy(vals), None)
    assert out.dtype == torch.bfloat16
    u = vals.view(np.uint32).astype(np.uint64)
    ref = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # RNE on the fp32 bit pattern
    assert out.view(torch.int16).numpy().view(np.uint16).tolist() == ref.tolist()
    # 1.0 -> 0x3F80; 1/3 (0x3EAAAAAB) -> 0x3EAB; 1.00390625 is a tie (0x3F808000) -> even 0x3F80;
    # 1.01171875 (0x3F818000) is a tie -> even 0x3F82
    assert [int(v) for v in (ref[0], ref[1], ref[5], ref[6])] == [0x3F80, 0x3EAB, 0x3F80, 0x3F82]


def test_to_fp32_is_exact_widening():
    x = randn(17, dtype=torch.bfloat16)
    y = ToFp32().apply(x, None)
    assert y.dtype == torch.float32
    # bf16 -> fp32 appends 16 zero bits
    want = (x.view(torch.int16).numpy().view(np.uint16).astype(np.uint32) << 16)
    assert y.numpy().view(np.uint32).tolist() == want.tolist()


def test_mul_keeps_dtype_and_is_exact():
    x = torch.tensor([1.5, -2.25, 3.0], dtype=torch.float16)
    y = Mul(2.0).apply(x, None)
    assert y.dtype == torch.float16
    assert y.tolist() == [3.0, -4.5, 6.0]


def test_quant_bytes_and_scale_by_hand():
    # amax 896 -> scale exactly 2.0; x/scale = [448, -1, .5, .25, 0, 1.625, -3.3/2...]
    x = torch.tensor([896.0, -2.0, 1.0, 0.5, 0.0, 3.25, -6.5], dtype=torch.float32)
    ctx = ctx_for()
    q = Quant().apply(x, ctx)
    assert q.dtype == torch.float8_e4m3fn
    s = ctx.scratch[PENDING_SCALE]
    assert s.dtype == torch.float32 and s.shape == () and s.item() == 2.0
    # E4M3 (bias 7): 448=0x7E, -1=0xB8, 0.5=0x30, 0.25=0x28, 0=0x00, 1.625=0x3D, -3.25=0xC5
    assert bits(q).tolist() == [0x7E, 0xB8, 0x30, 0x28, 0x00, 0x3D, 0xC5]


def test_quant_matches_independent_formula_on_random_bf16():
    x = randn(64, 48, dtype=torch.bfloat16, seed=3) * 7
    ctx = ctx_for()
    q = Quant().apply(x, ctx)
    xf = x.to(torch.float32)
    amax = torch.max(torch.abs(xf))
    scale = torch.maximum(amax / torch.tensor(448.0), torch.tensor(1e-12, dtype=torch.float32))
    ref = torch.clamp(xf / scale, -448.0, 448.0).to(torch.float8_e4m3fn)
    assert_bits_equal(q, ref)
    assert_bits_equal(ctx.scratch[PENDING_SCALE], scale)
    # dequantised values are within one E4M3 step (3 mantissa bits) of the input
    assert torch.all((q.float() * scale - xf).abs() <= xf.abs() / 8 + scale * 2 ** -9)


def test_quant_all_zero_and_nonfinite():
    ctx = ctx_for()
    q = Quant().apply(torch.zeros(4, dtype=torch.float16), ctx)
    assert bits(q).tolist() == [0, 0, 0, 0]
    assert ctx.scratch[PENDING_SCALE].item() == pytest.approx(1e-12, rel=1e-6)
    with pytest.raises(CheckpointError, match="non-finite"):
        Quant().apply(torch.tensor([1.0, float("nan")]), ctx_for())


# --------------------------------------------------------------------------------------------------------------
# composites
# --------------------------------------------------------------------------------------------------------------
def test_rope_interleave_permutation_by_hand():
    w = torch.arange(16, dtype=torch.float32).reshape(8, 2)  # 2 heads x head_dim 4
    out = rope_interleave_rows(w, 2)
    # per head of 4 rows: [0, 2, 1, 3]; second head offset 4
    assert torch.equal(out, w[[0, 2, 1, 3, 4, 6, 5, 7]])
    w6 = torch.arange(6, dtype=torch.float32)[:, None]  # 1 head, head_dim 6 -> [0, 3, 1, 4, 2, 5]
    assert rope_interleave_rows(w6, 1)[:, 0].tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ValueError):
        rope_interleave_rows(torch.zeros(6, 2), 2)  # head_dim 3 is odd


def _np_fold(w: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Reference fold with explicit float32 scalar ops."""
    out = np.empty(w.shape, dtype=np.float32)
    for r in range(w.shape[0]):
        for c in range(w.shape[1]):
            out[r, c] = np.float32(w[r, c]) * (np.float32(1.0) + np.float32(n[c]))
    return out


def test_fused_qkv_norm_fold_and_interleave_bit_exact():
    d_in, hd = 3, 4
    q = randn(2 * hd, d_in, dtype=torch.bfloat16, seed=1)  # 2 q heads
    k = randn(hd, d_in, dtype=torch.bfloat16, seed=2)      # 1 kv head
    v = randn(hd, d_in, dtype=torch.bfloat16, seed=3)
    n = torch.tensor([-0.99609375, 0.5, 2.0], dtype=torch.bfloat16)  # incl. w ~ -1 (bf16 fold would lose it)
    src = DictSource({"l.0.q": q, "l.0.k": k, "l.0.v": v, "l.0.n": n})
    comp = FusedQKV("l.{i}.q", "l.{i}.k", "l.{i}.v", norm_fuse="l.{i}.n", interleave_q_heads=2,
                    interleave_k_heads=1, head_dim=hd)
    ctx = ctx_for(src, layer=0)
    assert comp.required_keys(ctx) == ["l.0.q", "l.0.k", "l.0.v", "l.0.n"]
    out = comp.resolve(src, ctx)

    nn = n.float().numpy()
    fq = _np_fold(q.float().numpy(), nn)[[0, 2, 1, 3, 4, 6, 5, 7]]
    fk = _np_fold(k.float().numpy(), nn)[[0, 2, 1, 3]]
    fv = _np_fold(v.float().numpy(), nn)
    ref = torch.from_numpy(np.concatenate([fq, fk, fv], axis=0))
    assert_bits_equal(out, ref)
    assert out.shape == (4 * hd, d_in)


def test_fused_qkv_plain_is_cat_in_fp32():
    q, k, v = randn(4, 2, seed=4, dtype=torch.float16), randn(2, 2, seed=5, dtype=torch.float16), \
        randn(2, 2, seed=6, dtype=torch.float16)
    src = DictSource({"q": q, "k": k, "v": v})
    out = FusedQKV("q", "k", "v").resolve(src, ctx_for(src))
    assert_bits_equal(out, torch.cat([q.float(), k.float(), v.float()]))


def test_fused_qkv_checks_geometry():
    src = DictSource({"q": torch.zeros(8, 3), "k": torch.zeros(4, 3), "v": torch.zeros(4, 3),
                      "n": torch.zeros(5)})
    with pytest.raises(CheckpointError, match="head_dim"):
        FusedQKV("q", "k", "v", interleave_q_heads=4, head_dim=4).resolve(src, ctx_for(src))
    with pytest.raises(CheckpointError, match="whole number"):
        FusedQKV("q", "k", "v", head_dim=3).resolve(src, ctx_for(src))
    with pytest.raises(CheckpointError, match="norm weight"):
        FusedQKV("q", "k", "v", norm_fuse="n").resolve(src, ctx_for(src))


def test_fused_gate_up_bit_exact():
    g = randn(5, 3, dtype=torch.bfloat16, seed=7)
    u = randn(5, 3, dtype=torch.bfloat16, seed=8)
    n = randn(3, dtype=torch.bfloat16, seed=9)
    src = DictSource({"g": g, "u": u, "n": n})
    out = FusedGateUp("g", "u", norm_fuse="n").resolve(src, ctx_for(src))
    nn = n.float().numpy()
    ref = np.concatenate([_np_fold(g.float().numpy(), nn), _np_fold(u.float().numpy(), nn)])
    assert_bits_equal(out, torch.from_numpy(ref))
    out2 = FusedGateUp("g", "u").resolve(src, ctx_for(src))
    assert_bits_equal(out2, torch.cat([g.float(), u.float()]))


def test_cat_order_and_dtype_check():
    a, b = torch.tensor([[1, 2]], dtype=torch.int32), torch.tensor([[3, 4]], dtype=torch.int32)
    src = DictSource({"x.1.a": a, "x.1.b": b, "c": torch.zeros(1, 2)})
    ctx = ctx_for(src, layer=1)
    assert Cat(["x.{i}.b", "x.{i}.a"]).resolve(src, ctx).tolist() == [[3, 4], [1, 2]]
    assert Cat(["x.{i}.a", "x.{i}.b"], dim=1).resolve(src, ctx).tolist() == [[1, 2, 3, 4]]
    with pytest.raises(CheckpointError, match="mixed dtypes"):
        Cat(["x.{i}.a", "c"]).resolve(src, ctx)


# --------------------------------------------------------------------------------------------------------------
# sinks
# --------------------------------------------------------------------------------------------------------------
def test_attr_single_assignment():
    s, t, c = Attr("w"), types.SimpleNamespace(), ctx_for()
    s.store("a", torch.ones(1), c)
    with pytest.raises(ValueError, match="stored twice"):
        s.store("b", torch.ones(1), c)
    s.finalize(t)
    assert torch.equal(t.w, torch.ones(1))
    s.reset()
    s.store("a", torch.zeros(1), c)  # allowed again after reset


def test_tensorlist_layer_order_flatcat_offsets_dictsink():
    src = DictSource({f"l.{i}.{n}": torch.full((2, i + 1), float(10 * i + j), dtype=torch.float16)
                      for i in range(3) for j, n in enumerate("ab")})
    tl, fc, ds = TensorList("a_list"), FlatCat("flat"), DictSink("named")
    spec = ModelWeightSpec("torch", blocks=[LayerBlock("blk", 3, [
        Item("a{i}", "l.{i}.a", [], tl),
        Item("fa{i}", "l.{i}.a", [], fc),
        Item("fb{i}", "l.{i}.b", [tT()], fc),
        Item("l{i}.b", "l.{i}.b", [], ds),
    ])])
    t = types.SimpleNamespace(named={"keep": 1})
    WeightLoader(spec, src).run(t)
    assert [x[0, 0].item() for x in t.a_list] == [0.0, 10.0, 20.0]
    assert [x.shape[1] for x in t.a_list] == [1, 2, 3]
    # flat: fa0(2) fb0(2) fa1(4) fb1(4) fa2(6) fb2(6)
    assert t.flat.dtype == torch.float16 and t.flat.dim() == 1 and t.flat.numel() == 24
    assert t.flat_offsets == {"fa0": FlatEntry(0, 2, (2, 1)), "fb0": FlatEntry(2, 2, (1, 2)),
                              "fa1": FlatEntry(4, 4, (2, 2)), "fb1": FlatEntry(8, 4, (2, 2)),
                              "fa2": FlatEntry(12, 6, (2, 3)), "fb2": FlatEntry(18, 6, (3, 2))}
    for name, e in t.flat_offsets.items():
        i = int(name[-1])
        want = src.get(f"l.{i}.{name[1]}")
        want = want.t() if name.startswith("fb") else want
        assert torch.equal(t.flat[e.offset:e.offset + e.numel].reshape(e.shape), want)
    assert set(t.named) == {"keep", "l0.b", "l1.b", "l2.b"}
    assert torch.equal(t.named["l2.b"], src.get("l.2.b"))


def test_flatcat_rejects_mixed_dtype_and_duplicate_names():
    fc, c = FlatCat("f"), ctx_for()
    fc.store("a", torch.zeros(2, dtype=torch.float16), c)
    with pytest.raises(ValueError, match="cast before"):
        fc.store("b", torch.zeros(2, dtype=torch.float32), c)
    with pytest.raises(ValueError, match="stored twice"):
        fc.store("a", torch.zeros(2, dtype=torch.float16), c)


# --------------------------------------------------------------------------------------------------------------
# a decoder-like spec end to end: fused QKV -> tT -> Quant -> FlatCat with scale_into
# --------------------------------------------------------------------------------------------------------------
def _decoder_spec():
    fc = FlatCat("dec_flat")
    items = [
        Item("qkv{i}", FusedQKV("{prefix}q", "{prefix}k", "{prefix}v", norm_fuse="{prefix}n",
                                interleave_q_heads=2, interleave_k_heads=1),
             [ToFp16(), tT(), Quant()], fc, scale_into="dec_scales"),
        Item("o{i}", "{prefix}o", [ToFp16(), tT(), Quant()], fc, scale_into="dec_scales"),
    ]
    return ModelWeightSpec("torch", blocks=[LayerBlock("dec", 2, items, prefix_fmt="L.{i}.")],
                           singletons=[Item("emb", "emb", [ToFp16()], Attr("emb"))])


def _decoder_weights():
    d = {"emb": randn(6, 4, seed=20)}
    for i in range(2):
        p = f"L.{i}."
        d[p + "q"] = randn(8, 4, seed=30 + i, dtype=torch.bfloat16)
        d[p + "k"] = randn(4, 4, seed=40 + i, dtype=torch.bfloat16)
        d[p + "v"] = randn(4, 4, seed=50 + i, dtype=torch.bfloat16)
        d[p + "n"] = randn(4, seed=60 + i, dtype=torch.bfloat16) * 0.1
        d[p + "o"] = randn(4, 8, seed=70 + i, dtype=torch.bfloat16)
    return d


def _ref_quant(x):
    xf = x.float()
    scale = torch.clamp(xf.abs().max() / 448.0, min=1e-12)
    return (xf / scale).clamp(-448, 448).to(torch.float8_e4m3fn), scale


def test_decoder_spec_end_to_end_and_idempotent_rerun():
    d = _decoder_weights()
    spec = _decoder_spec()
    loader = WeightLoader(spec, DictSource(d))
    t = types.SimpleNamespace()
    loader.run(t)

    flat_parts, scales = [], []
    for i in range(2):
        p = f"L.{i}."
        nn = d[p + "n"].float().numpy()
        fq = _np_fold(d[p + "q"].float().numpy(), nn)[[0, 2, 1, 3, 4, 6, 5, 7]]
        fk = _np_fold(d[p + "k"].float().numpy(), nn)[[0, 2, 1, 3]]
        fv = _np_fold(d[p + "v"].float().numpy(), nn)
        qkv = torch.from_numpy(np.concatenate([fq, fk, fv])).half().t().contiguous()
        for w in (qkv, d[p + "o"].half().t().contiguous()):
            q, s = _ref_quant(w)
            flat_parts.append(q.reshape(-1))
            scales.append(s)
    assert_bits_equal(t.dec_flat, torch.cat(flat_parts))
    assert t.dec_scales.dtype == torch.float32 and t.dec_scales.shape == (4,)
    assert_bits_equal(t.dec_scales, torch.stack(scales))
    assert list(t.dec_flat_offsets) == ["qkv0", "o0", "qkv1", "o1"]
    assert t.dec_flat_offsets["qkv0"].shape == (4, 16)
    assert_bits_equal(t.emb, d["emb"].half())

    before = (t.dec_flat.clone(), t.dec_scales.clone(), dict(t.dec_flat_offsets))
    loader.run(t)
    assert_bits_equal(t.dec_flat, before[0])
    assert_bits_equal(t.dec_scales, before[1])
    assert t.dec_flat_offsets == before[2]


def test_decoder_spec_missing_keys_listed_together():
    d = _decoder_weights()
    del d["L.0.n"], d["L.1.k"], d["emb"]
    with pytest.raises(CheckpointError) as ei:
        WeightLoader(_decoder_spec(), DictSource(d)).run(types.SimpleNamespace())
    for k in ("L.0.n", "L.1.k", "emb"):
        assert k in str(ei.value)


# --------------------------------------------------------------------------------------------------------------
# SafetensorsSource
# --------------------------------------------------------------------------------------------------------------
SENT = "paligemma_with_expert."


def test_alias_constants_match_pi05_schema():
    assert OPENPI_ALIASES == {EMBED_TOKENS: EMBED_LM_HEAD}


def test_safetensors_source_basic_lazy(tmp_path):
    ts = {SENT + "a": randn(3, 2, dtype=torch.bfloat16), "action_in_proj.weight": randn(4, dtype=torch.float32)}
    save_file(ts, tmp_path / "model.safetensors", metadata={"format": "pt"})
    src = SafetensorsSource(tmp_path / "model.safetensors")
    assert isinstance(src, WeightSource)
    assert src.key_shapes() == {SENT + "a": (3, 2), "action_in_proj.weight": (4,)}
    assert src.key_dtypes()[SENT + "a"] == torch.bfloat16
    assert src._handles == {}  # shapes came from the header, nothing mapped yet
    assert_bits_equal(src.get(SENT + "a"), ts[SENT + "a"])
    assert src.stripped_prefix == "" and src.metadata == {"format": "pt"}
    with pytest.raises(KeyError):
        src.get("nope")
    # a directory works too
    assert set(SafetensorsSource(tmp_path).keys()) == set(ts)


def test_lerobot_prefix_is_stripped(tmp_path):
    ts = {"model." + SENT + "x.weight": torch.ones(2), "model.action_in_proj.weight": torch.zeros(3)}
    save_file(ts, tmp_path / "model.safetensors")
    src = SafetensorsSource(tmp_path / "model.safetensors")
    assert src.stripped_prefix == "model."
    assert sorted(src.keys()) == ["action_in_proj.weight", SENT + "x.weight"]
    assert torch.equal(src.get(SENT + "x.weight"), torch.ones(2))
    assert src.raw_key("action_in_proj.weight") == "model.action_in_proj.weight"
    assert not src.has("model.action_in_proj.weight")


def test_prefix_kept_when_family_keys_exist_bare(tmp_path):
    ts = {SENT + "a": torch.ones(1), "model." + SENT + "b": torch.ones(1)}
    save_file(ts, tmp_path / "m.safetensors")
    src = SafetensorsSource(tmp_path / "m.safetensors")
    assert src.stripped_prefix == "" and src.has("model." + SENT + "b")
    # opt-out
    ts2 = {"model." + SENT + "a": torch.ones(1)}
    save_file(ts2, tmp_path / "n.safetensors")
    assert SafetensorsSource(tmp_path / "n.safetensors", strip_prefix=None).has("model." + SENT + "a")


def test_lm_head_alias_openpi_layout(tmp_path):
    emb = randn(10, 4, dtype=torch.bfloat16)
    save_file({EMBED_LM_HEAD: emb, "action_in_proj.weight": torch.zeros(2)}, tmp_path / "model.safetensors")
    src = SafetensorsSource(tmp_path / "model.safetensors")
    assert src.has(EMBED_TOKENS) and src.aliased == {EMBED_TOKENS: EMBED_LM_HEAD}
    assert_bits_equal(src.get(EMBED_TOKENS), emb)
    sh = src.key_shapes()
    assert sh[EMBED_TOKENS] == sh[EMBED_LM_HEAD] == (10, 4)
    assert src.raw_key(EMBED_TOKENS) == EMBED_LM_HEAD


def test_lm_head_alias_not_applied_when_both_present_lerobot(tmp_path):
    a, b = torch.ones(3, 2), torch.zeros(3, 2)
    save_file({"model." + EMBED_LM_HEAD: a, "model." + EMBED_TOKENS: b}, tmp_path / "model.safetensors")
    src = SafetensorsSource(tmp_path / "model.safetensors")
    assert src.aliased == {}
    assert torch.equal(src.get(EMBED_TOKENS), b) and torch.equal(src.get(EMBED_LM_HEAD), a)


def _write_shards(d, parts, index=True):
    wm = {}
    n = len(parts)
    for j, part in enumerate(parts):
        fn = f"model-{j + 1:05d}-of-{n:05d}.safetensors"
        save_file(part, d / fn)
        wm.update({k: fn for k in part})
    if index:
        (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    return wm


def test_shards_via_index_list_and_dir(tmp_path):
    p1 = {SENT + "a": torch.arange(4.0), "model_x": torch.ones(1)}
    p2 = {SENT + "b": torch.arange(3.0)}
    _write_shards(tmp_path, [p1, p2])
    for arg in (tmp_path, tmp_path / "model.safetensors.index.json",
                [tmp_path / "model-00001-of-00002.safetensors", tmp_path / "model-00002-of-00002.safetensors"]):
        src = SafetensorsSource(arg)
        assert set(src.keys()) == {SENT + "a", "model_x", SENT + "b"}
        assert torch.equal(src.get(SENT + "b"), p2[SENT + "b"])
        assert torch.equal(src.get(SENT + "a"), p1[SENT + "a"])


def test_duplicate_key_across_shards_is_an_error(tmp_path):
    _write_shards(tmp_path, [{SENT + "a": torch.ones(1)}, {SENT + "a": torch.zeros(1)}], index=False)
    with pytest.raises(CheckpointError, match="more than one shard") as ei:
        SafetensorsSource(sorted(tmp_path.glob("*.safetensors")))
    assert SENT + "a" in str(ei.value) and "model-00002-of-00002" in str(ei.value)


def test_index_disagreeing_with_shards_is_an_error(tmp_path):
    _write_shards(tmp_path, [{SENT + "a": torch.ones(1)}, {SENT + "b": torch.zeros(1)}])
    idx = tmp_path / "model.safetensors.index.json"
    data = json.loads(idx.read_text())
    data["weight_map"][SENT + "ghost"] = "model-00001-of-00002.safetensors"
    idx.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="ghost"):
        SafetensorsSource(idx)
