"""Outlier injection (flash_rt/testing/outliers.py) and FP8 smoothing (flash_rt/runtime/smoothing.py) on the CPU.

The injector is exact: the FP32 reference of an injected checkpoint produces, at the injected place, the original
activation with the chosen channels times the scale (hand computation on the original tensors). The smoothing folds
are exact: each consumer column is the unsmoothed one times s_j and each producer row the unsmoothed one over s_j, bit
for bit (s is a power of two), and the factors follow s_j = max|X_j|^a / max|W_j|^(1-a) with GQA sharing. The
forward through the GPU code with smoothing on is test_smoothing_interpret.py (Triton's interpreter)."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from flash_rt.errors import CacheError
from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.frontends.torch._pi05_cuda_storage import build_weights
from flash_rt.models.pi05.config import EXP, LLM, VIS
from flash_rt.models.pi05.reference import Pi05Reference, gemma_rms_norm
from flash_rt.runtime.smoothing import (SmoothingPlan, compute_factors, expand, factors_path, group_of_site, groups,
                                        load_factors, save_factors)
from flash_rt.testing import build_tiny_checkpoint
from flash_rt.testing.checkpoint import TINY_CONFIG
from flash_rt.testing.outliers import (KINDS, MATCHED, VARIANTS, channels, consumer_columns, inject_checkpoint,
                                       injected_keys, injection_base)

C = TINY_CONFIG


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("base"))


def _ref(ck):
    s = open_checkpoint(ck)
    return Pi05Reference({k: s.get(k) for k in s.keys()}, C), s


def _mask(width, scale, ch):
    m = torch.ones(width)
    m[ch] = scale
    return m


@pytest.mark.parametrize("scale", [10.0, 30.0])
@pytest.mark.parametrize("kind", KINDS)
def test_injection_is_exact_in_fp32(base, tmp_path, kind, scale):
    inj = inject_checkpoint(base, tmp_path / kind, kind, scale, C)
    r0, s0 = _ref(base)
    r1, s1 = _ref(inj)
    edited = set(injected_keys(kind, C))
    for k in s0.keys():                      # nothing else changed, bit for bit
        if k not in edited:
            assert torch.equal(s0.get(k), s1.get(k)), k
    assert all(s1.get(k).dtype == torch.float32 for k in edited)
    g = torch.Generator().manual_seed(0)
    tol = dict(rtol=1e-5, atol=1e-5)   # fp32 rounding of the edited parameters
    for i in range(C.layers):
        lp, ep = f"{LLM}layers.{i}.", f"{EXP}layers.{i}."
        if kind == "llm_norm":
            x = torch.randn(5, C.width, generator=g)
            for n in ("input_layernorm", "post_attention_layernorm"):
                want = gemma_rms_norm(x, r0.w[lp + n + ".weight"], C.rms_eps) * _mask(C.width, scale, channels(C.width))
                torch.testing.assert_close(gemma_rms_norm(x, r1.w[lp + n + ".weight"], C.rms_eps), want, **tol)
        elif kind == "ex_ada":
            x, cond = torch.randn(1, 4, C.ex_width, generator=g), torch.randn(1, C.ex_width, generator=g)
            for n in ("input_layernorm", "post_attention_layernorm"):
                h0, g0 = r0.ada_rms(x, cond, ep + n)
                h1, g1 = r1.ada_rms(x, cond, ep + n)
                torch.testing.assert_close(h1, h0 * _mask(C.ex_width, scale, channels(C.ex_width)), **tol)
                torch.testing.assert_close(g1, g0, rtol=0, atol=0)
        elif kind == "v_proj":
            for p, width in ((lp, C.width), (ep, C.ex_width)):
                h = torch.randn(3, width, generator=g)
                m = _mask(C.head_dim, scale, channels(C.head_dim)).repeat(C.kv_heads)
                torch.testing.assert_close(r1.lin(h, p + "self_attn.v_proj", bias=False),
                                           r0.lin(h, p + "self_attn.v_proj", bias=False) * m, **tol)
        elif kind == "up_proj":
            for p, width, mlp in ((lp, C.width, C.mlp), (ep, C.ex_width, C.ex_mlp)):
                h = torch.randn(3, width, generator=g)

                def act(r):   # the down_proj input: gelu(gate) * up
                    return F.gelu(r.lin(h, p + "mlp.gate_proj", False), approximate="tanh") * r.lin(h, p + "mlp.up_proj", False)
                torch.testing.assert_close(act(r1), act(r0) * _mask(mlp, scale, channels(mlp)), **tol)
    if kind == "vis_ln":
        x = torch.randn(3, C.vis_width, generator=g)
        m = _mask(C.vis_width, scale, channels(C.vis_width))
        names = [f"encoder.layers.{i}.{n}" for i in range(C.vis_layers) for n in ("layer_norm1", "layer_norm2")]
        for n in names + ["post_layernorm"]:
            def ln(r):
                return F.layer_norm(x, (C.vis_width,), r.w[VIS + n + ".weight"], r.w[VIS + n + ".bias"], C.ln_eps)
            torch.testing.assert_close(ln(r1), ln(r0) * m, **tol)


@pytest.mark.parametrize("variant", ["v_proj", "ex_ada" + MATCHED, "vis_ln" + MATCHED])
def test_injection_base_links_untouched_shards(base, tmp_path, variant):
    b = injection_base(base, tmp_path / "base", C)
    out = inject_checkpoint(b, tmp_path / "inj", variant, 30.0, C)
    full = inject_checkpoint(base, tmp_path / "full", variant, 30.0, C)
    index = json.loads((b / "model.safetensors.index.json").read_text())["weight_map"]
    edited = {index[k] for k in injected_keys(variant, C)}
    shards = set(index.values())
    links = {p.name for p in out.iterdir() if p.is_symlink()}
    assert links == shards - edited and links     # the untouched shards are links, the edited ones rewritten
    assert len(shards) > len(KINDS)               # one shard per set of editing variants, not one per kind
    s1, s2 = open_checkpoint(out), open_checkpoint(full)
    assert sorted(s1.keys()) == sorted(s2.keys())
    for k in s2.keys():
        assert torch.equal(s1.get(k), s2.get(k)), k
    assert (out / "config.json").is_file() and (out / "tokenizer.model").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_matched_injection_keeps_the_fp32_function_and_scales_the_activation(base, tmp_path, kind):
    """':matched' = the plain injection's activation outlier + the consumer columns over the scale: the producers are
    edited exactly as the plain variant's, the consumer columns are divided, and the FP32 chunk is the base's."""
    import numpy as np
    import flash_rt
    from flash_rt.testing.observations import random_observation
    plain = inject_checkpoint(base, tmp_path / "plain", kind, 30.0, C)
    matched = inject_checkpoint(base, tmp_path / "matched", kind + MATCHED, 30.0, C)
    s0, sp, sm = open_checkpoint(base), open_checkpoint(plain), open_checkpoint(matched)
    cols = consumer_columns(kind, C)
    assert cols and set(injected_keys(kind + MATCHED, C)) == set(injected_keys(kind, C)) | set(cols)
    for k in injected_keys(kind, C):        # producers: the plain variant's edit, bit for bit
        assert torch.equal(sm.get(k), sp.get(k)), k
    for k, c in cols.items():               # consumers: those columns over 30, the rest untouched
        w0, w1 = s0.get(k).double(), sm.get(k).double()
        rest = torch.ones(w0.shape[1], dtype=torch.bool)
        rest[c] = False
        torch.testing.assert_close(w1[:, c], w0[:, c] / 30.0, rtol=1e-6, atol=0)
        assert torch.equal(w1[:, rest], w0[:, rest]), k
    outs = {}
    for name, ck in (("base", base), ("plain", plain), ("matched", matched)):
        pol = flash_rt.load_model(ck, hardware="cpu", num_views=2)
        obs = random_observation(np.random.default_rng(3), 2, pol.state_dim or 8, pol.action_horizon)
        outs[name] = pol.predict(*obs).copy()
    scale = np.abs(outs["base"]).max()
    assert np.abs(outs["matched"] - outs["base"]).max() <= 1e-4 * scale, kind   # the same function in FP32
    assert np.abs(outs["plain"] - outs["base"]).max() > 1e-2 * scale, kind      # the plain variant changes it


def test_unknown_kind_is_refused(base, tmp_path):
    with pytest.raises(ValueError, match="unknown outlier kind 'nope'.*expected one of"):
        inject_checkpoint(base, tmp_path / "x", "nope", 10.0, C)
    with pytest.raises(ValueError, match="unknown outlier kind 'nope:matched'"):
        inject_checkpoint(base, tmp_path / "x", "nope" + MATCHED, 10.0, C)
    assert len(VARIANTS) == 2 * len(KINDS)


# --------------------------------------------------------------------------------------------------------------
# smoothing
# --------------------------------------------------------------------------------------------------------------
def _random_factors(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {grp.name: torch.exp2(torch.randint(-3, 4, (grp.width,), generator=g).float()) for grp in groups(C)}


def test_folds_are_exact(base):
    """Consumer columns times s, producer rows over s, vectors folded -- bit for bit in bf16 (s = 2^e)."""
    f = _random_factors()
    w0 = {k[2:]: v for k, v in build_weights(base, C, "bf16", "cpu").items() if k.startswith("w.")}
    w1 = {k[2:]: v for k, v in build_weights(base, C, "bf16", "cpu", smoothing=f).items() if k.startswith("w.")}
    qn, kvn, rep = C.heads * C.head_dim, C.kv_heads * C.head_dim, C.heads // C.kv_heads
    for i in range(C.layers):
        s = f[f"attn.{i}"]
        for blk in ("llm", "ex"):
            v0, v1 = w0[f"{blk}.{i}.qkv_w"].float(), w1[f"{blk}.{i}.qkv_w"].float()
            want = v0 * f[f"{blk}.{i}.norm1"][None]       # columns: the input norm's factors
            want[qn + kvn:] /= s[:, None]                  # V rows: the attention output's
            assert torch.equal(v1, want)
            cols = s.view(C.kv_heads, 1, -1).expand(C.kv_heads, rep, -1).reshape(-1)
            o0, o1 = w0[f"{blk}.{i}.o_w"], w1[f"{blk}.{i}.o_w"]
            if i < C.layers - 1 or blk == "ex":
                assert torch.equal(o1, o0 * cols.to(o0.dtype)[None])
        s1 = f[f"llm.{i}.norm1"]
        assert torch.equal(w1[f"llm.{i}.norm1_w"] + 1.0, 1.0 / s1) and f"llm.{i}.norm1_w" not in w0
        se = f[f"ex.{i}.geglu"]
        want = w0[f"ex.{i}.gu_w"].float() * f[f"ex.{i}.norm2"][None]
        want[C.ex_mlp:] /= se[:, None]
        assert torch.equal(w1[f"ex.{i}.gu_w"].float(), want)
        assert torch.equal(w1[f"ex.{i}.down_w"], w0[f"ex.{i}.down_w"] * se.to(torch.bfloat16)[None])
        sa = f[f"ex.{i}.norm1"]
        E = C.ex_width
        torch.testing.assert_close(w1[f"ex.{i}.ada1_w"][:2 * E], w0[f"ex.{i}.ada1_w"][:2 * E] / sa.repeat(2)[:, None],
                                   rtol=0, atol=0)
        torch.testing.assert_close(1 + w1[f"ex.{i}.ada1_b"][:E], (1 + w0[f"ex.{i}.ada1_b"][:E]) / sa)
    sv = f["vis.0.ln1"]
    assert torch.equal(w1["vis.0.ln1_w"], w0["vis.0.ln1_w"] / sv)
    assert torch.equal(w1["vis.0.qkv_w"], w0["vis.0.qkv_w"] * sv.to(torch.bfloat16)[None].expand(3 * C.vis_width, -1)
                       / torch.cat([torch.ones(2 * C.vis_width), f["vis.0.attn"]]).to(torch.bfloat16)[:, None])


def test_the_fold_leaves_each_site_unchanged_in_fp32(base):
    """The activation a site produces, over s, times the consumer's smoothed weights = the unsmoothed product."""
    f = _random_factors(1)
    w0 = {k[2:]: v.float() for k, v in build_weights(base, C, "bf16", "cpu").items() if k.startswith("w.")}
    w1 = {k[2:]: v.float() for k, v in build_weights(base, C, "bf16", "cpu", smoothing=f).items() if k.startswith("w.")}
    g = torch.Generator().manual_seed(2)
    x = torch.randn(7, C.width, generator=g)
    rms = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + C.rms_eps)
    for i in range(C.layers):
        y0 = rms @ w0[f"llm.{i}.qkv_w"].t()
        y1 = (rms * (1 + w1[f"llm.{i}.norm1_w"])) @ w1[f"llm.{i}.qkv_w"].t()
        torch.testing.assert_close(y1[:, :C.heads * C.head_dim + C.kv_heads * C.head_dim],
                                   y0[:, :C.heads * C.head_dim + C.kv_heads * C.head_dim], rtol=1e-5, atol=1e-5)
    xl = torch.randn(7, C.vis_width, generator=g)
    h0 = F.layer_norm(xl, (C.vis_width,), w0["vis.1.ln2_w"], w0["vis.1.ln2_b"], C.ln_eps)
    h1 = F.layer_norm(xl, (C.vis_width,), w1["vis.1.ln2_w"], w1["vis.1.ln2_b"], C.ln_eps)
    torch.testing.assert_close(h1 @ w1["vis.1.fc1_w"].t(), h0 @ w0["vis.1.fc1_w"].t(), rtol=1e-5, atol=1e-5)


def test_factors_formula_gqa_and_composition():
    g = torch.Generator().manual_seed(3)
    chan = {grp.name: torch.rand(grp.width * grp.repeat, generator=g) * 10 for grp in groups(C)}
    cols = {grp.name: torch.rand(grp.width * grp.repeat, generator=g) for grp in groups(C)}
    chan["ex.0.norm1"][5] = 0.0                         # a dead channel keeps s = 1
    f = compute_factors(C, chan, cols, alpha=0.5, min_ratio=0.0)
    grp = next(x for x in groups(C) if x.name == "vis.0.ln1")
    want = chan[grp.name] ** 0.5 / cols[grp.name] ** 0.5
    assert torch.equal(f[grp.name], torch.exp2(torch.round(torch.log2(want))))
    assert f["ex.0.norm1"][5] == 1.0
    a = next(x for x in groups(C) if x.name == "attn.0")
    xa = chan["attn.0"].view(C.kv_heads, a.repeat, -1).amax(1).reshape(-1)
    wa = cols["attn.0"].view(C.kv_heads, a.repeat, -1).amax(1).reshape(-1)
    assert f["attn.0"].numel() == C.kv_heads * C.head_dim
    assert torch.equal(f["attn.0"], torch.exp2(torch.round(torch.log2(xa ** 0.5 / wa ** 0.5))))
    # measured on the smoothed model, relative factors compose back to the checkpoint-relative ones
    old = {k: torch.exp2(torch.round(torch.log2(v))) for k, v in f.items()}
    by = {x.name: x for x in groups(C)}
    chan2 = {k: v / expand(old[k], by[k], C.kv_heads) for k, v in chan.items()}
    cols2 = {k: v * expand(old[k], by[k], C.kv_heads) for k, v in cols.items()}
    f2 = compute_factors(C, chan2, cols2, alpha=0.5, previous=old, min_ratio=0.0)
    for k in f:
        ratio = torch.log2(f2[k] / f[k]).abs()
        assert ratio.max() <= 1.0, k    # within one power of two (each rounding is half an octave)


def test_only_sites_with_outlier_channels_are_smoothed():
    """max / median of the channel maxima below min_ratio: no factors (the group keeps what it had)."""
    g = torch.Generator().manual_seed(4)
    chan = {grp.name: 1.0 + torch.rand(grp.width * grp.repeat, generator=g) for grp in groups(C)}
    cols = {grp.name: torch.ones(grp.width * grp.repeat) for grp in groups(C)}
    chan["ex.1.norm2"][[3, 9]] = 40.0
    f = compute_factors(C, chan, cols, alpha=0.5)
    assert list(f) == ["ex.1.norm2"]
    assert f["ex.1.norm2"][3] == 8.0 and f["ex.1.norm2"][0] <= 2.0    # sqrt(40) -> 2^3; sqrt(1..2) -> 1 or 2
    kept = {"vis.0.ln1": torch.full((C.vis_width,), 2.0)}
    assert torch.equal(compute_factors(C, chan, cols, alpha=0.5, previous=kept)["vis.0.ln1"], kept["vis.0.ln1"])


def test_site_groups():
    assert group_of_site("ex.3.1.norm2") == "ex.1.norm2"
    assert group_of_site("ex.0.1.attn") == group_of_site("llm.1.attn") == "attn.1"
    assert group_of_site("vis.0.gelu") is None and group_of_site("vis.post_ln") == "vis.post_ln"


def test_factor_file_round_trip_and_damage(tmp_path):
    f = _random_factors()
    p = factors_path(tmp_path, "ab" * 16, "pi05-a0.5")
    save_factors(p, f, ckpt_hash="ab" * 16, alpha=0.5, num_observations=1)
    got = load_factors(p, C, ckpt_hash="ab" * 16, alpha=0.5)
    assert set(got) == set(f) and all(torch.equal(got[k], f[k]) for k in f)
    assert SmoothingPlan(C, got).digest() == SmoothingPlan(C, f).digest() is not None
    assert SmoothingPlan(C, {}).digest() is None
    with pytest.raises(CacheError, match="expected 'cdcd"):
        load_factors(p, C, ckpt_hash="cd" * 16, alpha=0.5)
    doc = json.loads(p.read_text())
    doc["log2_factors"]["vis.0.ln1"][0] += 1
    p.write_text(json.dumps(doc))
    with pytest.raises(CacheError, match="checksum mismatch"):
        load_factors(p, C, ckpt_hash="ab" * 16, alpha=0.5)


def test_outlier_site_groups_file_and_predicate(tmp_path):
    from flash_rt.runtime.quant import Fp8Context
    from flash_rt.runtime.outlier_sites import (SiteSet, consumers, load_outlier_groups, outlier_groups,
                                                outliers_path, save_outlier_groups)
    from flash_rt.frontends.torch.pi05_hopper import Pi05TorchFrontendHopper
    g = torch.Generator().manual_seed(6)
    chan = {grp.name: 1.0 + torch.rand(grp.width * grp.repeat, generator=g) for grp in groups(C)}
    chan["attn.1"][[0, 17]] = 50.0
    chan["vis.0.ln2"][4] = 50.0
    hot = outlier_groups(C, chan)
    assert hot == ["vis.0.ln2", "attn.1"]
    assert consumers(C, hot) == ["vis.0.fc1_w", "ex.1.o_w"]     # the last prefix layer has no o_proj
    cols = {grp.name: 1.0 + torch.rand(grp.width * grp.repeat, generator=g) for grp in groups(C)}
    cols["llm.0.norm1"][[2, 40]] = 30.0    # a Gemma norm scale folded into qkv: an outlier weight column
    assert outlier_groups(C, chan, col_max=cols) == ["vis.0.ln2", "llm.0.norm1", "attn.1"]
    chan["ex.0.norm1"][[3, 9]] = 30.0      # an activation outlier whose weights compensate it (':matched'):
    cols["ex.0.norm1"][[3, 9]] = 1.0 / 30  # ordinary products, so not an outlier site once the weights are seen
    assert "ex.0.norm1" in outlier_groups(C, chan)
    assert outlier_groups(C, chan, col_max=cols) == ["vis.0.ln2", "llm.0.norm1", "attn.1"]
    p = outliers_path(tmp_path, "ab" * 16, "pi05-bf16-r6")
    save_outlier_groups(p, hot, ckpt_hash="ab" * 16, min_ratio=6.0, num_observations=1)
    assert load_outlier_groups(p, C, ckpt_hash="ab" * 16, min_ratio=6.0) == hot
    with pytest.raises(CacheError, match="expected 'cdcd"):
        load_outlier_groups(p, C, ckpt_hash="cd" * 16, min_ratio=6.0)
    doc = json.loads(p.read_text())
    doc["groups"].append("ex.0.norm1")
    p.write_text(json.dumps(doc))
    with pytest.raises(CacheError, match="checksum mismatch"):
        load_outlier_groups(p, C, ckpt_hash="ab" * 16, min_ratio=6.0)
    sites = SiteSet(hot)
    assert sites("ex.4.1.attn") and sites("llm.1.attn") and sites("vis.0.ln2") and not sites("ex.4.0.attn")
    q = Fp8Context({}, {}, {"vis.0.ln2": "s2", "vis.0.ln1": "s1"}, tuning=Pi05TorchFrontendHopper.tuning,
                   bf16_sites=sites)
    assert q.act("vis.0.ln2", "bf16", "fp8") == ("bf16", None)
    assert q.act("vis.0.ln1", "bf16", "fp8") == ("fp8", "s1")
