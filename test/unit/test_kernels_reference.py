"""CPU twins (flash_rt.kernels.reference) vs naive float64 formulas, and vs the FP32 reference model.

The twins are the oracle of every Triton kernel and the CPU pipeline's kernels, so they are checked
against formulas written independently here (loops / float64), and op-for-op against the functions of
flash_rt.models.pi05.reference where those exist (the FP32 pipeline must match that model to 1e-4).
"""
import math

import numpy as np
import pytest
import torch

from flash_rt.kernels import reference as R

F8 = torch.float8_e4m3fn


def _rand(*shape, seed=0, scale=1.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    x = torch.where(x == 0, torch.full_like(x, 0.5), x)        # never exact zeros
    return x.to(dtype)


def _nan(*shape, dtype=torch.float32):
    return torch.full(shape, float("nan"), dtype=dtype)


def _close(a, b, rtol=2e-6, atol=1e-6):
    torch.testing.assert_close(a.double(), b.double(), rtol=rtol, atol=atol)


def _gelu64(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _rms64(x, eps):
    x = x.double()
    return x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def _ln64(x, w, b, eps):
    x = x.double()
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w.double() + b.double()


# -- norms ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [8, 72, 1152])
@pytest.mark.parametrize("with_weight", [True, False])
def test_rms_norm_matches_naive(d, with_weight):
    x = _rand(5, d, seed=1, scale=3.0)
    w = _rand(d, seed=2, scale=0.2) if with_weight else None
    out = _nan(5, d)
    assert R.rms_norm(x, w, 1e-6, out=out) is out
    ref = _rms64(x, 1e-6) * ((1 + w.double()) if with_weight else 1.0)
    _close(out, ref)


def test_add_rms_norm_updates_residual_in_place():
    res = _rand(4, 64, seed=3)
    y = _rand(4, 64, seed=4)
    w = _rand(64, seed=5, scale=0.1)
    expect_res = res.double() + y.double()
    res_ptr = res.data_ptr()
    out = _nan(4, 64)
    R.add_rms_norm(res, y, w, 1e-6, out=out)
    assert res.data_ptr() == res_ptr
    _close(res, expect_res)
    _close(out, _rms64(expect_res, 1e-6) * (1 + w.double()))


def test_add_rms_norm_bf16_residual_normalizes_the_stored_value():
    res = _rand(3, 128, seed=6, dtype=torch.bfloat16)
    y = _rand(3, 128, seed=7, dtype=torch.bfloat16)
    stored = (res.float() + y.float()).to(torch.bfloat16)       # one rounding
    out = _nan(3, 128)
    R.add_rms_norm(res, y, None, 1e-6, out=out)
    assert torch.equal(res, stored)
    _close(out, _rms64(stored, 1e-6))


@pytest.mark.parametrize("d", [16, 1152])
def test_layer_norm_and_add_layer_norm(d):
    x = _rand(6, d, seed=8, scale=2.0) + 0.7
    w, b = _rand(d, seed=9), _rand(d, seed=10)
    out = _nan(6, d)
    R.layer_norm(x, w, b, 1e-6, out=out)
    _close(out, _ln64(x, w, b, 1e-6), rtol=1e-5, atol=1e-5)
    res, y = x.clone(), _rand(6, d, seed=11)
    R.add_layer_norm(res, y, w, b, 1e-6, out=out)
    _close(res, x.double() + y.double())
    _close(out, _ln64(x.double() + y.double(), w, b, 1e-6), rtol=1e-5, atol=1e-5)


def test_ada_rms_norm_and_gated_add():
    d = 96
    x, y = _rand(7, d, seed=12), _rand(7, d, seed=13)
    sc, sh, g = _rand(d, seed=14, scale=0.3), _rand(d, seed=15), _rand(d, seed=16)
    out = _nan(7, d)
    R.ada_rms_norm(x, sc, sh, 1e-6, out=out)
    _close(out, _rms64(x, 1e-6) * (1 + sc.double()) + sh.double())
    res = x.clone()
    R.gated_add_ada_rms_norm(res, y, g, sc, sh, 1e-6, out=out)
    new = x.double() + y.double() * g.double()
    _close(res, new)
    _close(out, _rms64(new, 1e-6) * (1 + sc.double()) + sh.double())


def test_norms_match_the_fp32_reference_model_exactly():
    ref = pytest.importorskip("flash_rt.models.pi05.reference")
    x, w = _rand(5, 256, seed=17), _rand(256, seed=18, scale=0.1)
    out = _nan(5, 256)
    R.rms_norm(x, w, 1e-6, out=out)
    assert torch.equal(out, ref.gemma_rms_norm(x, w, 1e-6))
    sc, sh = _rand(256, seed=19), _rand(256, seed=20)
    R.ada_rms_norm(x, sc, sh, 1e-6, out=out)
    assert torch.equal(out, ref.rms_norm(x, 1e-6) * (1 + sc) + sh)


# -- activations / fp8 ----------------------------------------------------------------------------------
def test_gelu_tanh_and_geglu_match_naive():
    x = _rand(4, 300, seed=21, scale=4.0)
    out = _nan(4, 300)
    R.gelu_tanh(x, out=out)
    _close(out, _gelu64(x.double()), rtol=1e-5, atol=1e-6)
    gu = _rand(3, 2 * 40, seed=22, scale=3.0)
    o2 = _nan(3, 40)
    R.geglu(gu, out=o2)
    _close(o2, _gelu64(gu[:, :40].double()) * gu[:, 40:].double(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        R.geglu(gu, out=_nan(3, 41))


def _e4m3_grid():
    """Every finite non-negative e4m3 value, from the bit patterns."""
    return torch.arange(0, 0x7F, dtype=torch.uint8).view(F8).float()


def test_quantize_fp8_round_to_nearest_even_and_saturate():
    s = torch.tensor([0.5])
    grid = _e4m3_grid()
    # ties between adjacent representable values round to the even mantissa
    lo, hi = grid[8:-1], grid[9:]
    mid = (lo + hi) / 2
    out = torch.empty(mid.shape, dtype=F8)
    R.quantize_fp8(mid * s, s, out=out)
    lo_even = (torch.arange(8, 0x7E) % 2 == 0)
    assert torch.equal(out.float(), torch.where(lo_even, lo, hi))
    # saturation instead of NaN / inf
    big = torch.tensor([1e6, -1e6, 449.0 * 0.5, -500.0])
    ob = torch.empty(4, dtype=F8)
    R.quantize_fp8(big, s, out=ob)
    assert ob.float().tolist() == [448.0, -448.0, 448.0, -448.0]
    # generic values: nearest grid point
    x = _rand(1000, seed=23, scale=50.0)
    oq = torch.empty(1000, dtype=F8)
    R.quantize_fp8(x, s, out=oq)
    v = (x / s).clamp(-448, 448)
    nearest = (grid[None, :] - v.abs()[:, None]).abs().min(1).values
    assert torch.all((oq.float().abs() - v.abs()).abs() <= nearest + 1e-6)


def test_out_scale_contract():
    x = _rand(2, 16, seed=24)
    with pytest.raises(ValueError):
        R.rms_norm(x, None, 1e-6, out=torch.empty(2, 16, dtype=F8))          # fp8 out, no scale
    with pytest.raises(ValueError):
        R.rms_norm(x, None, 1e-6, out=_nan(2, 16), out_scale=torch.ones(1))   # scale, non-fp8 out
    s = torch.tensor([0.01])
    q = torch.empty(2, 16, dtype=F8)
    R.rms_norm(x, None, 1e-6, out=q, out_scale=s)
    y = _nan(2, 16)
    R.rms_norm(x, None, 1e-6, out=y)
    assert torch.equal(q, (y / s).clamp(-448, 448).to(F8))


# -- rope -----------------------------------------------------------------------------------------------
def _naive_rope(qkv, pos, n, k, h, theta):
    m = qkv.shape[0]
    x = qkv.double().reshape(m, n + 2 * k, h)
    outs = x.clone()
    for i in range(h // 2):
        ang = pos.double() * theta ** (-2.0 * i / h)
        c, s = torch.cos(ang)[:, None], torch.sin(ang)[:, None]
        a, b = x[:, : n + k, i], x[:, : n + k, i + h // 2]
        outs[:, : n + k, i] = a * c - b * s
        outs[:, : n + k, i + h // 2] = b * c + a * s
    outs = outs.transpose(0, 1)
    return outs[:n], outs[n:n + k], outs[n + k:]


@pytest.mark.parametrize("n,k,h", [(8, 1, 256), (4, 2, 16), (2, 1, 72)])
def test_rope_qkv_split_matches_naive(n, k, h):
    m = 9
    qkv = _rand(m, (n + 2 * k) * h, seed=25)
    pos = torch.tensor([0, 1, 2, 5, 100, 561, 561, 700, 1099], dtype=torch.int64)
    q, kk, v = _nan(n, m, h), _nan(k, m, h), _nan(k, m, h)
    R.rope_qkv_split(qkv, pos, q_out=q, k_out=kk, v_out=v)
    qn, kn, vn = _naive_rope(qkv, pos, n, k, h, 10000.0)
    # fp32 angle = pos * inv_freq (as the model computes it) vs the fp64 angle here: ~pos * 6e-8 rad
    _close(q, qn, rtol=0, atol=2e-4)
    _close(kk, kn, rtol=0, atol=2e-4)
    assert torch.equal(v.double(), vn)


def test_rope_writes_into_a_kv_cache_slice_and_preserves_relative_position():
    n, k, h, m = 2, 1, 32, 5
    qkv = _rand(m, (n + 2 * k) * h, seed=26)
    cache_k, cache_v = _nan(k, 20, h), _nan(k, 20, h)
    q = _nan(n, m, h)
    pos = torch.arange(m, dtype=torch.int32) + 7
    R.rope_qkv_split(qkv, pos, q_out=q, k_out=cache_k[:, 3:3 + m], v_out=cache_v[:, 3:3 + m])
    assert cache_k[:, :3].isnan().all() and cache_k[:, 3 + m:].isnan().all()
    assert not cache_k[:, 3:3 + m].isnan().any() and not cache_v[:, 3:3 + m].isnan().any()
    # shifting every position by the same offset leaves q.k dot products unchanged
    q2, k2 = _nan(n, m, h), _nan(k, m, h)
    R.rope_qkv_split(qkv, pos + 300, q_out=q2, k_out=k2, v_out=_nan(k, m, h))
    _close(q @ cache_k[:, 3:3 + m].transpose(1, 2), q2 @ k2.transpose(1, 2), rtol=1e-4, atol=1e-4)


def test_rope_matches_the_fp32_reference_model_exactly():
    ref = pytest.importorskip("flash_rt.models.pi05.reference")
    n, k, h, m = 8, 1, 256, 6
    qkv = _rand(m, (n + 2 * k) * h, seed=27)
    pos = torch.tensor([0, 3, 4, 9, 400, 611])
    q, kk = _nan(n, m, h), _nan(k, m, h)
    R.rope_qkv_split(qkv, pos, q_out=q, k_out=kk, v_out=_nan(k, m, h))
    x = qkv.reshape(1, m, n + 2 * k, h)
    assert torch.equal(q, ref.rope(x[:, :, :n], pos[None], 10000.0)[0].transpose(0, 1))
    assert torch.equal(kk, ref.rope(x[:, :, n:n + k], pos[None], 10000.0)[0].transpose(0, 1))


# -- misc -----------------------------------------------------------------------------------------------
def test_time_embedding_matches_naive_float64():
    t = torch.tensor([1.0, 0.9, 0.1, 0.5], dtype=torch.float32)
    dim = 64
    out = _nan(4, dim)
    R.time_embedding(t, dim, 4e-3, 4.0, out=out)
    half = dim // 2
    for b in range(4):
        for i in range(half):
            frac = i / (half - 1)
            ang = float(t[b]) * 2 * math.pi / (4e-3 * (4.0 / 4e-3) ** frac)
            assert abs(out[b, i].item() - math.sin(ang)) < 1e-6
            assert abs(out[b, half + i].item() - math.cos(ang)) < 1e-6


def test_time_embedding_matches_the_reference_model():
    ref = pytest.importorskip("flash_rt.models.pi05.reference")
    t = torch.tensor([1.0, 0.7, 0.3], dtype=torch.float32)
    out = _nan(3, 1024)
    R.time_embedding(t, 1024, 4e-3, 4.0, out=out)
    _close(out, ref.sinusoidal_time_embedding(t, 1024, 4e-3, 4.0), rtol=0, atol=1e-6)


def test_flow_update_in_place_and_out_and_device_dt():
    x, v, b = _rand(10, 32, seed=28), _rand(10, 32, seed=29), _rand(32, seed=30)
    x0 = x.clone()
    ptr = x.data_ptr()
    assert R.flow_update(x, v, b, -0.1) is x and x.data_ptr() == ptr
    _close(x, x0.double() + np.float32(-0.1) * (v.double() + b.double()))
    out = _nan(10, 32)
    x1 = x0.clone()
    R.flow_update(x1, v, None, torch.tensor([-0.1]), out=out)
    assert torch.equal(x1, x0)
    # the same expression the FP32 reference model evaluates: x + dt * v with dt an fp32 tensor
    assert torch.equal(out, x0 + torch.tensor(-0.1, dtype=torch.float32) * v)


def test_amax_update_keeps_running_max():
    slot = torch.tensor([0.25])
    R.amax_update(torch.tensor([[0.1, -0.2]]), slot)
    assert slot.item() == 0.25
    R.amax_update(torch.tensor([[0.1, -3.0], [2.0, 0.5]]), slot)
    assert slot.item() == 3.0
    R.amax_update(torch.tensor([1.0, -2.5], dtype=torch.bfloat16), slot)
    assert slot.item() == 3.0


def test_uint8_to_model_matches_numpy():
    img = torch.randint(0, 256, (2, 7, 5, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(31))
    out = _nan(2, 3, 7, 5)
    R.uint8_to_model(img, out=out)
    expect = img.numpy().astype(np.float32) / 255.0 * 2.0 - 1.0
    np.testing.assert_array_equal(out.numpy(), expect.transpose(0, 3, 1, 2))
    assert out.min() >= -1 and out.max() <= 1
    with pytest.raises(ValueError):
        R.uint8_to_model(img.float(), out=out)


def test_key_padding_bias_and_positions():
    mask = torch.tensor([False, True, True, False, True, False, False])
    bias = _nan(7)
    R.key_padding_bias(mask, out=bias)
    assert bias.tolist() == [np.float32(R.MASK_VALUE) if not m else 0.0 for m in mask.tolist()]
    pos = torch.full((7,), -99, dtype=torch.int32)
    suf = torch.full((4,), -99, dtype=torch.int32)
    R.prefix_positions(mask, out=pos, suffix_out=suf)
    expect, c = [], 0
    for m in mask.tolist():
        c += int(m)
        expect.append(max(c - 1, 0))
    assert pos.tolist() == expect
    assert suf.tolist() == [3, 4, 5, 6]
    # the reference model's positions: cumsum(pad) - 1 over the prefix (-1 before the first real token,
    # which the kernel clamps to 0: those rows are padding and never attended to)
    ref_pos = torch.cumsum(mask.long(), 0) - 1
    assert torch.equal(pos.long()[mask], ref_pos[mask])
