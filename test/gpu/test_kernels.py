"""Every Triton kernel (flash_rt.kernels.triton) vs its torch twin (flash_rt.kernels.reference), on the GPU.

Run on the H100:  python -m pytest -m gpu test/gpu/test_kernels.py -q

What is checked, for every kernel, at the model's real shapes (M up to 1100 rows, D up to 16384):
* fresh random inputs (never zeros), outputs poisoned with NaN / e4m3 NaN / -12345 first, and every
  element must be written;
* bf16 outputs vs the fp32 twin on the same inputs: within bf16 rounding (elementwise <= 2^-8 |ref| +
  1e-5 scale; max error <= 1e-2 of the tensor's max-abs);
* fp8 outputs vs the twin's fp8 output: dequantized |diff| <= 1 e4m3 ulp everywhere and >= 99.9% of
  bytes identical;
* residuals updated in place (same storage, <= 1 bf16 ulp from the twin's residual, >= 99.9% identical);
* rope vs the twin and vs a naive fp64 rotation, with k/v written into strided slices of a bigger KV
  cache and nothing outside the slices touched;
* CUDA-graph capture of a chain of kernels: replay == eager, new inputs / new scales without recapture,
  and no allocation across 100 replays.
"""
import math

import pytest
import torch

pytestmark = pytest.mark.gpu

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU (run with -m gpu on the device)", allow_module_level=True)
pytest.importorskip("triton")

from functools import partial  # noqa: E402

from flash_rt.hardware.hopper.tuning import TUNING as HOPPER  # noqa: E402
from flash_rt.kernels import reference as R  # noqa: E402
from flash_rt.kernels import triton as T  # noqa: E402

# the kernels at Hopper's tiles (the thor / rtx_sm120 tiles run through the model tests by override)
GEGLU = partial(T.fp8_gemm_geglu, cfg=HOPPER.gemm["geglu"])
ROPE_QKV = partial(T.fp8_gemm_rope_qkv, cfg=HOPPER.gemm["rope_qkv"])
SPLITK = partial(T.fp8_gemm_splitk, cfg=HOPPER.gemm["splitk"])
SEAM = {"chunk": HOPPER.flow_boundary.chunk, "num_warps": HOPPER.flow_boundary.num_warps}

DEV = "cuda"
F8 = torch.float8_e4m3fn
BF = torch.bfloat16


# -- helpers --------------------------------------------------------------------------------------------
def rand(*shape, seed, scale=1.0, shift=0.0, dtype=BF):
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = torch.randn(*shape, generator=g, device=DEV, dtype=torch.float32) * scale + shift
    x = torch.where(x == 0, torch.full_like(x, 0.5), x)
    return x.to(dtype)


def poison(shape, dtype):
    if dtype == F8:
        return torch.full(shape, 0x7F, dtype=torch.uint8, device=DEV).view(F8)     # e4m3 NaN
    if dtype.is_floating_point:
        return torch.full(shape, float("nan"), dtype=dtype, device=DEV)
    return torch.full(shape, -12345, dtype=dtype, device=DEV)


def e4m3_ulp(v):
    return torch.exp2(torch.floor(torch.log2(v.abs().clamp_min(2.0 ** -6))) - 3)


def check_fp8(got, want, what):
    assert got.dtype == F8 and want.dtype == F8
    g, w = got.float(), want.float()
    assert not torch.isnan(g).any(), f"{what}: unwritten elements (e4m3 NaN poison left)"
    bad = (g - w).abs() > e4m3_ulp(torch.maximum(g.abs(), w.abs()))
    assert not bad.any(), f"{what}: {int(bad.sum())} elements > 1 e4m3 ulp off"
    # Bytes differ only where the fp32 value sits within ~1e-7 of a rounding tie; with bf16 inputs one
    # unlucky mantissa can repeat across a row, so the identical-bytes floor is 99%, not 99.9%.
    same = (got.view(torch.uint8) == want.view(torch.uint8)).float().mean().item()
    assert same >= 0.99, f"{what}: only {same:.4%} bytes identical"


def check_lowp_vs_fp32(got, ref32, what):
    """A bf16 (or fp32) kernel output vs the fp32 twin: within the output's rounding."""
    g, r = got.float(), ref32.float()
    assert not torch.isnan(g).any(), f"{what}: unwritten elements (NaN poison left)"
    scale = r.abs().max().item()
    err = (g - r).abs()
    assert err.max().item() <= 1e-2 * scale, f"{what}: max err {err.max().item():.3g} vs scale {scale:.3g}"
    rel = 2.0 ** -8 if got.dtype == BF else 1e-5
    bad = err > rel * r.abs() + 1e-5 * scale
    assert not bad.any(), f"{what}: {int(bad.sum())} elements outside rounding (max err {err.max().item():.3g})"


def check_same_dtype(got, want, what):
    """In-place residuals: kernel vs twin, both rounded once into the same dtype. The kernel may contract
    r + y * g into one FMA (ptxas does by default), so fp32 results can differ in the last bit; that
    almost never moves a bf16 rounding."""
    g, w = got.float(), want.float()
    assert not torch.isnan(g).any(), what
    scale = w.abs().max().item()
    if got.dtype == BF:
        assert torch.all((g - w).abs() <= 2.0 ** -7 * w.abs() + 1e-30), f"{what}: > 1 bf16 ulp"
        assert (g == w).float().mean().item() >= 0.999, f"{what}: too many 1-ulp differences"
    else:
        assert torch.all((g - w).abs() <= 2.0 ** -22 * (w.abs() + scale)), f"{what}: > fp32 rounding"


def scale_for(ref32):
    """A per-tensor scale as calibration makes it: ~amax / 448 (a device fp32 tensor [1]). The odd factor
    keeps x / scale of the amax row off exact e4m3 ties (x / x_max * 448 is rational for bf16 x)."""
    return (ref32.float().abs().amax() * (1.0 + 1.234e-4) / 448.0).reshape(1).to(torch.float32)


# -- norms ----------------------------------------------------------------------------------------------
NORM_SHAPES = [(50, 1024), (562, 2048), (512, 1152), (1100, 2048), (7, 16384), (3, 72)]
NORMS = ["rms_norm", "rms_norm_noweight", "add_rms_norm", "layer_norm", "add_layer_norm", "ada_rms_norm",
         "gated_add_ada_rms_norm"]


def _params(d, seed):
    return dict(w=rand(d, seed=seed, scale=0.2), b=rand(d, seed=seed + 1, scale=0.5),
                sc=rand(d, seed=seed + 2, scale=0.3), sh=rand(d, seed=seed + 3, scale=0.5),
                g=rand(d, seed=seed + 4))


def _norm_call(lib, name, x, y, res, p, out, scale):
    eps = 1e-6
    return {
        "rms_norm": lambda: lib.rms_norm(x, p["w"], eps, out=out, out_scale=scale),
        "rms_norm_noweight": lambda: lib.rms_norm(x, None, eps, out=out, out_scale=scale),
        "add_rms_norm": lambda: lib.add_rms_norm(res, y, p["w"], eps, out=out, out_scale=scale),
        "layer_norm": lambda: lib.layer_norm(x, p["w"], p["b"], eps, out=out, out_scale=scale),
        "add_layer_norm": lambda: lib.add_layer_norm(res, y, p["w"], p["b"], eps, out=out, out_scale=scale),
        "ada_rms_norm": lambda: lib.ada_rms_norm(x, p["sc"], p["sh"], eps, out=out, out_scale=scale),
        "gated_add_ada_rms_norm": lambda: lib.gated_add_ada_rms_norm(res, y, p["g"], p["sc"], p["sh"], eps,
                                                                     out=out, out_scale=scale),
    }[name]()


def _plain_norm(name, x, p, out, scale):
    """The norm part alone (for residual kernels: applied to the kernel's own updated residual)."""
    base = name.replace("gated_add_", "").replace("add_", "")
    return _norm_call(R, base if name != "rms_norm_noweight" else name, x, None, None, p, out, scale)


# the residual dtype only varies where there is a residual (no skipped combinations)
NORM_CASES = [(n, r) for n in NORMS for r in ((BF, torch.float32) if "add" in n else (BF,))]


@pytest.mark.parametrize("name,res_dtype", NORM_CASES,
                         ids=[f"{n}-{'res_' + str(r).split('.')[-1] if 'add' in n else 'nores'}" for n, r in NORM_CASES])
@pytest.mark.parametrize("m,d", NORM_SHAPES)
@pytest.mark.parametrize("kind", ["bf16", "fp8", "fp32"])
def test_norm(name, m, d, kind, res_dtype):
    has_res = "add" in name
    x = rand(m, d, seed=1, scale=2.0, shift=0.3)
    y = rand(m, d, seed=2)
    res0 = rand(m, d, seed=3, scale=3.0, dtype=res_dtype)
    p = _params(d, 10)
    res_k, res_t = res0.clone(), res0.clone()
    ptr = res_k.data_ptr()

    ref32 = poison((m, d), torch.float32)
    _norm_call(R, name, x, y, res_t, p, ref32, None)                  # twin, fp32 out
    if has_res:
        check_same_dtype(res_t, (res0.float() + y.float() * (p["g"].float() if "gated" in name else 1.0))
                         .to(res_dtype), f"{name} twin residual")

    if kind == "fp8":
        scale = scale_for(ref32) * 0.9                              # a few saturate, like real calibration
        out = poison((m, d), F8)
    else:
        scale, out = None, poison((m, d), BF if kind == "bf16" else torch.float32)
    assert _norm_call(T, name, x, y, res_k, p, out, scale) is out
    torch.cuda.synchronize()
    if has_res:
        assert res_k.data_ptr() == ptr
        check_same_dtype(res_k, res_t, f"{name} residual in place")
    src = res_k if has_res else x
    if kind == "fp8":
        want = poison((m, d), F8)
        _plain_norm(name, src, p, want, scale)
        check_fp8(out, want, f"{name} fp8")
    else:
        want = poison((m, d), torch.float32)
        _plain_norm(name, src, p, want, None)
        check_lowp_vs_fp32(out, want, f"{name} {kind}")


@pytest.mark.parametrize("name", ["add_rms_norm", "add_layer_norm", "rms_norm"])
@pytest.mark.parametrize("m,d", [(576, 2048), (562, 2048), (5, 1152)])
def test_norm_of_a_transposed_y_matches_the_row_kernel(name, m, d):
    """y as the transposed view of a [D, M] buffer (a prefix GEMM run as W @ act.T) goes through the row-tile
    path: the same math as the one-row path. The residual add is elementwise, so its bits must agree; the
    row statistics may sum in another order (another layout), so the FP8 output gets check_fp8's 1 ulp."""
    yt = rand(d, m, seed=31, dtype=BF)
    res0 = rand(m, d, seed=32, scale=3.0)
    p = _params(d, 40)
    outs = []
    for y in (yt.t(), yt.t().contiguous()):
        res = res0.clone()
        out = poison((m, d), F8)
        _norm_call(T, name, y, y, res, p, out, torch.tensor([0.01], device="cuda"))
        outs.append((res, out))
    torch.cuda.synchronize()
    assert torch.equal(outs[0][0], outs[1][0]), f"{name}: residuals differ"
    check_fp8(outs[0][1], outs[1][1], f"{name} transposed y")


# -- activations / quantization -------------------------------------------------------------------------
@pytest.mark.parametrize("m,f", [(562, 16384), (50, 4096), (1100, 16384), (5, 40)])
@pytest.mark.parametrize("kind", ["bf16", "fp8"])
def test_geglu(m, f, kind):
    gu = rand(m, 2 * f, seed=20, scale=2.0)
    ref32 = poison((m, f), torch.float32)
    R.geglu(gu, out=ref32)
    if kind == "fp8":
        scale = scale_for(ref32) * 0.9
        out, want = poison((m, f), F8), poison((m, f), F8)
        T.geglu(gu, out=out, out_scale=scale)
        R.geglu(gu, out=want, out_scale=scale)
        check_fp8(out, want, "geglu fp8")
    else:
        out = poison((m, f), BF)
        T.geglu(gu, out=out)
        check_lowp_vs_fp32(out, ref32, "geglu bf16")


@pytest.mark.parametrize("m,f", [(576, 16384), (832, 16384), (50, 4096), (5, 40)])
@pytest.mark.parametrize("kind", ["bf16", "fp8"])
def test_geglu_of_a_transposed_gu_matches_the_row_kernel(m, f, kind):
    """gu as the transposed view of a [2F, M] buffer (the prefix gate+up GEMM run as W @ act.T) goes through the
    tile kernel; it must give the row kernel's bytes on the same values."""
    gu = rand(m, 2 * f, seed=21, scale=2.0)
    gu_t = gu.t().contiguous()
    ref32 = poison((m, f), torch.float32)
    R.geglu(gu, out=ref32)
    scale = scale_for(ref32) * 0.9 if kind == "fp8" else None
    dt = F8 if kind == "fp8" else BF
    rows, tiles = poison((m, f), dt), poison((m, f), dt)
    T.geglu(gu, out=rows, out_scale=scale)
    T.geglu(gu_t.t(), out=tiles, out_scale=scale)
    assert torch.equal(rows.view(torch.uint8) if kind == "fp8" else rows,
                       tiles.view(torch.uint8) if kind == "fp8" else tiles)


def test_geglu_refuses_a_gu_that_is_neither_row_major_nor_transposed():
    gu = rand(8, 4 * 64, seed=22)[:, ::2]       # strides (256, 2)
    with pytest.raises(ValueError, match="neither row-major nor the transposed view"):
        T.geglu(gu, out=poison((8, 64), BF))
    with pytest.raises(ValueError, match="does not match out"):
        T.geglu(rand(64, 8, seed=23).t(), out=poison((6, 32), BF))


@pytest.mark.parametrize("m,n", [(512, 4304), (1536, 4304), (3, 100)])
@pytest.mark.parametrize("kind", ["bf16", "fp8"])
def test_gelu_tanh(m, n, kind):
    x = rand(m, n, seed=21, scale=2.0)
    ref32 = poison((m, n), torch.float32)
    R.gelu_tanh(x, out=ref32)
    if kind == "fp8":
        scale = scale_for(ref32)
        out, want = poison((m, n), F8), poison((m, n), F8)
        T.gelu_tanh(x, out=out, out_scale=scale)
        R.gelu_tanh(x, out=want, out_scale=scale)
        check_fp8(out, want, "gelu fp8")
    else:
        out = poison((m, n), BF)
        T.gelu_tanh(x, out=out)
        check_lowp_vs_fp32(out, ref32, "gelu bf16")


@pytest.mark.parametrize("m,n", [(562, 2048), (50, 2048), (512, 1152)])
@pytest.mark.parametrize("in_dtype", [BF, torch.float32])
def test_quantize_fp8(m, n, in_dtype):
    x = rand(m, n, seed=22, scale=3.0, dtype=in_dtype)
    scale = scale_for(x) * 0.8                                     # the top 20% saturate
    out, want = poison((m, n), F8), poison((m, n), F8)
    T.quantize_fp8(x, scale, out=out)
    R.quantize_fp8(x, scale, out=want)
    check_fp8(out, want, "quantize")
    assert torch.equal(out.view(torch.uint8), want.view(torch.uint8))   # a pure divide + cast: exact
    assert out.float().abs().max().item() == 448.0


def test_exact_alias_in_place():
    """gelu_tanh(x, out=x) (the SigLIP fc1 buffer) and a norm written over its own input."""
    x = rand(512, 4304, seed=35, scale=2.0)
    want = poison((512, 4304), torch.float32)
    R.gelu_tanh(x, out=want)
    T.gelu_tanh(x, out=x)
    check_lowp_vs_fp32(x, want, "gelu_tanh in place")
    y = rand(562, 2048, seed=36)
    want = poison((562, 2048), torch.float32)
    R.rms_norm(y, None, 1e-6, out=want)
    T.rms_norm(y, None, 1e-6, out=y)
    check_lowp_vs_fp32(y, want, "rms_norm in place")


# -- rope -----------------------------------------------------------------------------------------------
def check_rope(got, ref32, what):
    """RoPE outputs vs the fp32 twin: the output's rounding, plus the fp32 angle itself: pos * inv_freq
    with inv_freq differing by an ulp between pow implementations moves the angle by ~pos * 6e-8 rad."""
    g, r = got.float(), ref32.float()
    assert not torch.isnan(g).any(), f"{what}: unwritten elements"
    scale = r.abs().max().item()
    rel = 2.0 ** -8 if got.dtype == BF else 0.0
    bad = (g - r).abs() > rel * r.abs() + 1e-3 * scale
    assert not bad.any(), f"{what}: {int(bad.sum())} elements off (max {(g - r).abs().max().item():.3g})"


def naive_rope(qkv, pos, n, k, h, theta=10000.0):
    m = qkv.shape[0]
    x = qkv.double().reshape(m, n + 2 * k, h)
    i = torch.arange(h // 2, device=DEV, dtype=torch.float64)
    ang = pos.double()[:, None] * theta ** (-2.0 * i / h)[None, :]
    c, s = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
    a, b = x[:, : n + k, : h // 2], x[:, : n + k, h // 2:]
    rot = torch.cat([a * c - b * s, b * c + a * s], -1)
    return rot[:, :n].transpose(0, 1), rot[:, n:].transpose(0, 1), x[:, n + k:].transpose(0, 1)


@pytest.mark.parametrize("m,off,ltot", [(562, 0, 612), (50, 562, 612), (1100, 0, 1100), (7, 3, 20)])
@pytest.mark.parametrize("pos_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("out_dtype", [BF, torch.float32])
def test_rope_qkv_split(m, off, ltot, pos_dtype, out_dtype):
    n, k, h = 8, 1, 256
    qkv = rand(m, (n + 2 * k) * h, seed=23, scale=2.0)
    real = torch.rand(m, device=DEV, generator=torch.Generator(device=DEV).manual_seed(24)) > 0.1
    pos = (torch.cumsum(real.long(), 0) - 1).clamp_min(0) + off          # repeats at padding, like the model
    pos = pos.to(pos_dtype)
    q = poison((n, m, h), out_dtype)
    ck, cv = poison((k, ltot, h), out_dtype), poison((k, ltot, h), out_dtype)
    T.rope_qkv_split(qkv, pos, q_out=q, k_out=ck[:, off:off + m], v_out=cv[:, off:off + m])
    torch.cuda.synchronize()
    q32, k32, v32 = poison((n, m, h), torch.float32), poison((k, m, h), torch.float32), poison((k, m, h),
                                                                                              torch.float32)
    R.rope_qkv_split(qkv, pos, q_out=q32, k_out=k32, v_out=v32)
    qn, kn, vn = naive_rope(qkv, pos, n, k, h)
    kk, vv = ck[:, off:off + m], cv[:, off:off + m]
    for got, twin, naive, nm in ((q, q32, qn, "q"), (kk, k32, kn, "k")):
        check_rope(got, twin, f"rope {nm} vs twin")
        err = (got.double() - naive).abs().max().item()
        assert err <= 1e-2 * naive.abs().max().item(), f"rope {nm} vs naive: {err}"
    assert torch.equal(vv.float(), v32), "v must be copied exactly"
    assert torch.equal(vv.double(), vn.to(out_dtype).double())
    for c in (ck, cv):
        assert c[:, :off].isnan().all() and c[:, off + m:].isnan().all(), "wrote outside the cache slice"


def test_rope_two_kernels_fill_one_cache():
    """Prefix and suffix written into the same [K, P+S, H] cache by two calls; the result equals the
    twin on the concatenated input."""
    n, k, h, p_len, s_len = 8, 1, 256, 300, 50
    qkv = rand(p_len + s_len, (n + 2 * k) * h, seed=25)
    pos = torch.arange(p_len + s_len, device=DEV, dtype=torch.int32)
    ck, cv = poison((k, p_len + s_len, h), BF), poison((k, p_len + s_len, h), BF)
    qp, qs = poison((n, p_len, h), BF), poison((n, s_len, h), BF)
    T.rope_qkv_split(qkv[:p_len], pos[:p_len], q_out=qp, k_out=ck[:, :p_len], v_out=cv[:, :p_len])
    T.rope_qkv_split(qkv[p_len:], pos[p_len:], q_out=qs, k_out=ck[:, p_len:], v_out=cv[:, p_len:])
    q32, k32, v32 = (poison((n, p_len + s_len, h), torch.float32), poison((k, p_len + s_len, h), torch.float32),
                     poison((k, p_len + s_len, h), torch.float32))
    R.rope_qkv_split(qkv, pos, q_out=q32, k_out=k32, v_out=v32)
    check_rope(torch.cat([qp, qs], 1), q32, "q")
    check_rope(ck, k32, "k cache")
    assert torch.equal(cv.float(), v32)


# -- fused small-M FP8 GEMMs (expert qkv + RoPE, gate+up + GeGLU) ------------------------------------------
def fp8_operands(m, n, k, seed):
    """e4m3 x [M, K] and w [N, K] with per-tensor scales, as the FP8 path quantizes them."""
    x32, w32 = rand(m, k, seed=seed, scale=2.0, dtype=torch.float32), rand(n, k, seed=seed + 1, dtype=torch.float32)
    xs, ws = scale_for(x32), scale_for(w32)
    return (x32 / xs).clamp(-448, 448).to(F8), xs, (w32 / ws).clamp(-448, 448).to(F8), ws


@pytest.mark.parametrize("m", [50, 10, 64, 100])
@pytest.mark.parametrize("kind", ["fp8", "bf16"])
def test_fp8_gemm_geglu(m, kind):
    f, k = 4096, 1024
    x, xs, w, ws = fp8_operands(m, 2 * f, k, seed=40)
    ref32 = poison((m, f), torch.float32)
    R.fp8_gemm_geglu(x, xs, w, ws, out=ref32)
    # The twin sums in fp32; the tensor cores accumulate 128 products at a time at lower precision before
    # promoting (as cuBLASLt does), so near-zero outputs of GeGLU (gelu(g) * u with cancelling sums) may be
    # off by a few 1e-4 of the tensor's range: allowed on top of the output's own rounding. The unfused
    # production path (bf16 GEMM output, then GeGLU) must not be more exact than this kernel.
    scale = scale_for(ref32) * 0.9 if kind == "fp8" else None
    out = poison((m, f), F8 if kind == "fp8" else BF)
    GEGLU(x, xs, w, ws, out=out, out_scale=scale)
    gu = torch.empty(m, 2 * f, device=DEV, dtype=BF)
    torch._scaled_mm(x, w.t(), scale_a=xs, scale_b=ws, out_dtype=BF, out=gu)
    unfused = poison((m, f), out.dtype)
    T.geglu(gu, out=unfused, out_scale=scale)
    deq = (lambda t: t.float() * scale) if kind == "fp8" else (lambda t: t.float())
    g, r = deq(out), ref32
    if kind == "fp8":   # the scale is 0.9 x amax on purpose: the top values saturate at +-448 (as production's)
        r = r.clamp(-448.0 * scale, 448.0 * scale)
    assert not torch.isnan(g).any(), "unwritten elements"
    rounding = e4m3_ulp(r / scale) * scale if kind == "fp8" else 2.0 ** -8 * r.abs()
    err = (g - r).abs()
    bad = err > rounding + 2.0 ** -11 * r.abs().max()
    assert not bad.any(), f"{int(bad.sum())} elements off (max err {err.max().item():.3g})"
    err_unfused = (deq(unfused) - r).abs()
    assert err.mean() <= err_unfused.mean() * 1.05, f"fused {err.mean().item():.3g} vs unfused " \
                                                     f"{err_unfused.mean().item():.3g}"


# pairs: the table's (8-column pairs as one 16-column MMA, _fp8_pair_mainloop, since the eighteenth session), or
# 16-column pairs, one MMA each (the table before; variant qkv-bn16)
@pytest.mark.parametrize("pairs", ["table", "bn16"])
@pytest.mark.parametrize("m,off,ltot", [(50, 576, 640), (10, 576, 592), (64, 0, 64), (70, 5, 80)])
def test_fp8_gemm_rope_qkv(m, off, ltot, pairs):
    n, kh, h, k = 8, 1, 256, 1024
    x, xs, w, ws = fp8_operands(m, (n + 2 * kh) * h, k, seed=41)
    pos = (torch.arange(m, device=DEV) + off).to(torch.int64)
    q = poison((n, m, h), BF)
    ck, cv = poison((kh, ltot, h), BF), poison((kh, ltot, h), BF)
    cfg = HOPPER.gemm["rope_qkv"]
    if pairs == "bn16":
        cfg = cfg.with_overrides(block_n=16, tma=False)
    T.fp8_gemm_rope_qkv(x, xs, w, ws, pos, q_out=q, k_out=ck[:, off:off + m], v_out=cv[:, off:off + m], cfg=cfg)
    torch.cuda.synchronize()
    q32, k32, v32 = (poison((n, m, h), torch.float32), poison((kh, m, h), torch.float32),
                     poison((kh, m, h), torch.float32))
    R.fp8_gemm_rope_qkv(x, xs, w, ws, pos, q_out=q32, k_out=k32, v_out=v32)
    check_rope(q, q32, "fused q vs twin")
    check_rope(ck[:, off:off + m], k32, "fused k vs twin")
    check_rope(cv[:, off:off + m], v32, "fused v vs twin")     # same bound: bf16 rounding + accumulation noise
    for c in (ck, cv):
        assert c[:, :off].isnan().all() and c[:, off + m:].isnan().all(), "wrote outside the cache slice"
    # and it equals the unfused production path (cuBLASLt GEMM -> bf16 -> rope kernel) within bf16 rounding
    qkv = torch.empty(m, (n + 2 * kh) * h, device=DEV, dtype=BF)
    torch._scaled_mm(x, w.t(), scale_a=xs, scale_b=ws, out_dtype=BF, out=qkv)
    q2, k2, v2 = poison((n, m, h), BF), poison((kh, m, h), BF), poison((kh, m, h), BF)
    T.rope_qkv_split(qkv, pos, q_out=q2, k_out=k2, v_out=v2)
    for got, other, nm in ((q, q2, "q"), (ck[:, off:off + m], k2, "k"), (cv[:, off:off + m], v2, "v")):
        err = (got.float() - other.float()).abs().max().item()
        assert err <= 2 ** -7 * other.float().abs().max().item(), f"fused {nm} vs unfused: {err}"


@pytest.mark.parametrize("m,k,splits", [(50, 2048, 4), (50, 4096, 4), (10, 4096, 8), (100, 2048, 2)])
def test_fp8_gemm_splitk_and_the_norm_that_sums_it(m, k, splits):
    n = 1024
    x, xs, w, ws = fp8_operands(m, n, k, seed=43)
    parts, want = poison((splits, m, n), torch.float32), poison((splits, m, n), torch.float32)
    SPLITK(x, xs, w, ws, out_partials=parts)
    R.fp8_gemm_splitk(x, xs, w, ws, out_partials=want)
    ref = R._fp8_matmul(x, xs, w, ws)
    # each partial vs its fp32 twin: tensor-core accumulation noise only
    assert (parts - want).abs().max().item() <= 2.0 ** -11 * ref.abs().max().item()
    assert (parts.sum(0) - ref).abs().max().item() <= 2.0 ** -10 * ref.abs().max().item()
    # the expert's gated adaRMS norm consumes the partials directly; == the twin given the same partials
    p = _params(n, seed=44)
    res = rand(m, n, seed=45, dtype=torch.float32)
    res_t = res.clone()
    scale = torch.full((64,), 0.02, device=DEV)[:1]
    out, out_t = poison((m, n), F8), poison((m, n), F8)
    T.gated_add_ada_rms_norm(res, parts, p["g"], p["sc"], p["sh"], 1e-6, out=out, out_scale=scale)
    R.gated_add_ada_rms_norm(res_t, parts, p["g"], p["sc"], p["sh"], 1e-6, out=out_t, out_scale=scale)
    check_fp8(out, out_t, "norm over split-K partials")
    assert (res - res_t).abs().max().item() <= 1e-6 * res_t.abs().max().item()


def test_fused_gemm_shape_errors():
    x, xs, w, ws = fp8_operands(50, 8192, 1000, seed=42)
    with pytest.raises(ValueError, match="multiple of"):
        GEGLU(x, xs, w, ws, out=poison((50, 4096), BF))
    x, xs, w, ws = fp8_operands(50, 8192, 1024, seed=42)
    with pytest.raises(ValueError, match=r"\[M, F\]"):
        GEGLU(x, xs, w, ws, out=poison((50, 4000), BF))
    with pytest.raises(ValueError, match="float8_e4m3fn"):
        GEGLU(x.to(BF), xs, w, ws, out=poison((50, 4096), BF))
    # the default gate+up tiles come through TMA: a row stride the copy engine cannot take is refused by name
    x_wide = fp8_operands(50, 8192, 1032, seed=42)[0]
    with pytest.raises(ValueError, match="TMA tiles need 16-byte aligned"):
        GEGLU(x_wide[:, 4:1028], xs, w, ws, out=poison((50, 4096), BF))


# -- misc -----------------------------------------------------------------------------------------------
def test_time_embedding():
    t = torch.tensor([1.0 - 0.1 * i for i in range(10)], device=DEV, dtype=torch.float32)
    for dim in (1024, 64):
        out, want = poison((10, dim), torch.float32), poison((10, dim), torch.float32)
        T.time_embedding(t, dim, 4e-3, 4.0, out=out)
        R.time_embedding(t, dim, 4e-3, 4.0, out=want)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-6)
        half = dim // 2
        i = 5
        ang = float(t[3]) * 2 * math.pi / (4e-3 * (4.0 / 4e-3) ** (i / (half - 1)))
        assert abs(out[3, i].item() - math.sin(ang)) < 1e-6 and abs(out[3, half + i].item() - math.cos(ang)) < 1e-6


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("device_dt", [True, False])
@pytest.mark.parametrize("v_dtype", [BF, torch.float32])
def test_flow_update(bias, device_dt, v_dtype):
    x0 = rand(50, 32, seed=26, dtype=torch.float32)
    v = rand(50, 32, seed=27, dtype=v_dtype)
    b = rand(32, seed=28, dtype=torch.float32) if bias else None
    dt = torch.tensor([-0.1], device=DEV) if device_dt else -0.1
    x_k, x_t = x0.clone(), x0.clone()
    ptr = x_k.data_ptr()
    assert T.flow_update(x_k, v, b, dt) is x_k and x_k.data_ptr() == ptr
    R.flow_update(x_t, v, b, dt)
    torch.testing.assert_close(x_k, x_t, rtol=1e-6, atol=1e-6)   # an FMA may contract x + dt*v
    out = poison((50, 32), torch.float32)
    x1 = x0.clone()
    T.flow_update(x1, v, b, dt, out=out)
    assert torch.equal(x1, x0)
    torch.testing.assert_close(out, x_t, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("m", [50, 10, 100])
def test_linear_flow_update(m):
    """action_out_proj + Euler step in one split-K kernel: vs the fp32 twin, deterministic, counters reset,
    and the same bits replayed from a graph."""
    from flash_rt.kernels.triton.misc import LinearFlowWorkspace
    h = rand(m, 1024, seed=90, dtype=torch.float32)
    w = rand(1024, 32, seed=91, dtype=torch.float32) / 32
    b = rand(32, seed=92, dtype=torch.float32)
    x0 = rand(m, 32, seed=93, dtype=torch.float32)
    ws = LinearFlowWorkspace(m, 1024, 32, DEV)
    assert ws.splits == 16
    x, x_ref = x0.clone(), x0.clone()
    T.linear_flow_update(x, h, w, b, -0.1, ws=ws)
    R.linear_flow_update(x_ref, h, w, b, -0.1)
    assert (x - x_ref).abs().max().item() <= 2e-6 * max(1.0, x_ref.abs().max().item())
    first = x.clone()
    x.copy_(x0)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        T.linear_flow_update(x, h, w, b, -0.1, ws=ws)
    for _ in range(20):
        x.copy_(x0)
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(x, first)
    assert int(ws.counters.abs().sum()) == 0


@pytest.mark.parametrize("m", [50, 10])
@pytest.mark.parametrize("last", [False, True])
def test_flow_boundary(m, last):
    """The seam between two flow steps at the expert's size (D 1024, A 32, 4 split-K partials): vs its twin
    (the pieces in fp32 torch), and the same bits replayed from a graph."""
    d, a = 1024, 32
    parts = rand(4, m, d, seed=94, dtype=torch.float32)
    res0 = rand(m, d, seed=95, scale=3.0, dtype=torch.float32)
    vec = lambda seed, sc=1.0, n=d: rand(n, seed=seed, scale=sc, dtype=torch.float32)   # noqa: E731
    gate, sc, sh = vec(96), vec(97, 0.2), vec(98, 0.5)
    w_out, b_out = rand(a, d, seed=99, dtype=torch.float32) / 32, vec(100, 0.1, a)
    x0 = rand(m, a, seed=101, dtype=torch.float32)
    nxt = {} if last else dict(w_in=rand(a, d, seed=102, dtype=torch.float32) * 0.3, b_in=vec(103, 0.1),
                               next_scale=vec(104, 0.2), next_shift=vec(105, 0.5))
    scale = torch.full((64,), 0.02, device=DEV)[:1]
    outs = {"kernel": poison((m, d), F8), "twin": poison((m, d), F8)}
    got, want = (x0.clone(), res0.clone()), (x0.clone(), res0.clone())
    o = {} if last else {"out": outs["kernel"], "out_scale": scale}
    T.flow_boundary(got[0], got[1], parts, gate, sc, sh, w_out, b_out, -0.1, **nxt, **o, **SEAM)
    o_r = {} if last else {"out": outs["twin"], "out_scale": scale}
    R.flow_boundary(want[0], want[1], parts, gate, sc, sh, w_out, b_out, -0.1, **nxt, **o_r)
    for g, w_, nm in zip(got, want, ("x_t", "residual")):
        err = (g - w_).abs().max().item()
        assert err <= 2e-5 * max(1.0, w_.abs().max().item()), f"{nm}: {err}"
    if not last:
        check_fp8(outs["kernel"], outs["twin"], "seam out")
    first = [t.clone() for t in (*got, outs["kernel"])]
    gr = torch.cuda.CUDAGraph()
    with torch.cuda.graph(gr):
        T.flow_boundary(got[0], got[1], parts, gate, sc, sh, w_out, b_out, -0.1, **nxt, **o, **SEAM)
    for _ in range(5):
        got[0].copy_(x0)
        got[1].copy_(res0)
        gr.replay()
        torch.cuda.synchronize()
        assert all(torch.equal(u.view(torch.uint8) if u.dtype == F8 else u, f.view(torch.uint8) if f.dtype == F8 else f)
                   for u, f in zip((*got, outs["kernel"]), first))


def test_amax_update():
    x = rand(562, 2048, seed=29, scale=3.0)
    slot = torch.zeros(1, device=DEV)
    T.amax_update(x, slot)
    assert slot.item() == x.float().abs().max().item()
    slot.fill_(1e3)
    T.amax_update(x, slot)
    assert slot.item() == 1e3
    y = rand(50, 4096, seed=30, dtype=torch.float32)
    s2 = torch.zeros(1, device=DEV)
    T.amax_update(y, s2)
    ref = torch.zeros(1, device=DEV)
    R.amax_update(y, ref)
    assert s2.item() == ref.item()


@pytest.mark.parametrize("out_dtype", [BF, torch.float32])
def test_uint8_to_model(out_dtype):
    img = torch.randint(0, 256, (3, 224, 224, 3), dtype=torch.uint8, device=DEV,
                        generator=torch.Generator(device=DEV).manual_seed(31))
    out, want = poison((3, 3, 224, 224), out_dtype), poison((3, 3, 224, 224), out_dtype)
    T.uint8_to_model(img, out=out)
    R.uint8_to_model(img, out=want)
    # torch divides by a scalar through its reciprocal on CUDA, the kernel divides correctly rounded: the two
    # may differ by one fp32 ulp (seen on H100), which can also move a bf16 rounding by one bf16 ulp
    tol = 2.0 ** -7 if out_dtype == BF else 1e-6
    assert torch.isfinite(out).all() and (out.float() - want.float()).abs().max().item() <= tol
    # a slot of a bigger [B, V, 3, S, S] buffer
    big = poison((2, 3, 3, 224, 224), out_dtype)
    T.uint8_to_model(img, out=big[1])
    assert torch.equal(big[1], out) and big[0].isnan().all()


@pytest.mark.parametrize("out_dtype", [BF, torch.float32])
def test_key_padding_bias(out_dtype):
    mask = torch.rand(968, device=DEV, generator=torch.Generator(device=DEV).manual_seed(32)) > 0.3
    out, want = poison((968,), out_dtype), poison((968,), out_dtype)
    T.key_padding_bias(mask, out=out)
    R.key_padding_bias(mask, out=want)
    assert torch.equal(out, want)
    assert (out[~mask].float() < -1e38).all() and (out[mask] == 0).all()


@pytest.mark.parametrize("n,s", [(968, 50), (768 + 200, 10), (5000, 16)])
@pytest.mark.parametrize("pos_dtype", [torch.int32, torch.int64])
def test_prefix_positions(n, s, pos_dtype):
    mask = torch.rand(n, device=DEV, generator=torch.Generator(device=DEV).manual_seed(33)) > 0.3
    mask[256:512] = False                          # a masked camera
    out, want = poison((n,), pos_dtype), poison((n,), pos_dtype)
    so, sw = poison((s,), pos_dtype), poison((s,), pos_dtype)
    T.prefix_positions(mask, out=out, suffix_out=so)
    R.prefix_positions(mask, out=want, suffix_out=sw)
    assert torch.equal(out, want) and torch.equal(so, sw)
    assert so[0].item() == int(mask.sum().item())


# -- CUDA graph -----------------------------------------------------------------------------------------
def test_graph_capture_replay_matches_eager():
    """A Pi0.5-like chain of kernels captured once; replay == eager; new inputs and a new FP8 scale take
    effect without recapture; no allocation across 100 replays."""
    torch.manual_seed(0)
    P, S, D, F, N, K, H, A = 300, 50, 1024, 4096, 8, 1, 256, 32
    st = dict(
        img=torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8, device=DEV),
        mask=torch.rand(P, device=DEV) > 0.2,
        x=rand(S, D, seed=40), res0=rand(S, D, seed=41, scale=2.0), y=rand(S, D, seed=42),
        qkv=rand(S, (N + 2 * K) * H, seed=43), gu=rand(S, 2 * F, seed=44),
        sc=rand(D, seed=45, scale=0.2), sh=rand(D, seed=46), g=rand(D, seed=47), w=rand(D, seed=48, scale=0.1),
        xa0=rand(S, A, seed=49, dtype=torch.float32), v=rand(S, A, seed=50), bias=rand(A, seed=51),
        dt=torch.tensor([-0.1], device=DEV), s_norm=torch.tensor([0.02], device=DEV),
        s_act=torch.tensor([0.05], device=DEV), t=torch.tensor([0.7], device=DEV),
    )
    buf = dict(
        pix=poison((2, 3, 224, 224), BF), pos=poison((P,), torch.int32), spos=poison((S,), torch.int32),
        kbias=poison((P,), torch.float32), res=st["res0"].clone(), h8=poison((S, D), F8), hb=poison((S, D), BF),
        q=poison((N, S, H), BF), kc=poison((K, P + S, H), BF), vc=poison((K, P + S, H), BF),
        a8=poison((S, F), F8), xa=st["xa0"].clone(), amax=torch.zeros(1, device=DEV),
        temb=poison((1, D), torch.float32),
    )

    def chain():
        T.uint8_to_model(st["img"], out=buf["pix"])
        T.prefix_positions(st["mask"], out=buf["pos"], suffix_out=buf["spos"])
        T.key_padding_bias(st["mask"], out=buf["kbias"])
        T.time_embedding(st["t"], D, 4e-3, 4.0, out=buf["temb"])
        T.ada_rms_norm(st["x"], st["sc"], st["sh"], 1e-6, out=buf["h8"], out_scale=st["s_norm"])
        T.rope_qkv_split(st["qkv"], buf["spos"], q_out=buf["q"], k_out=buf["kc"][:, P:], v_out=buf["vc"][:, P:])
        T.gated_add_ada_rms_norm(buf["res"], st["y"], st["g"], st["sc"], st["sh"], 1e-6, out=buf["hb"])
        T.add_rms_norm(buf["res"], st["y"], st["w"], 1e-6, out=buf["h8"], out_scale=st["s_norm"])
        T.amax_update(st["gu"], buf["amax"])
        T.geglu(st["gu"], out=buf["a8"], out_scale=st["s_act"])
        T.flow_update(buf["xa"], st["v"], st["bias"], st["dt"])

    def reset():
        buf["res"].copy_(st["res0"])
        buf["xa"].copy_(st["xa0"])
        buf["amax"].zero_()

    def snapshot():
        return {k: (v.view(torch.uint8) if v.dtype == F8 else v).clone() for k, v in buf.items()}

    def same(a, b):
        for k in a:
            assert torch.equal(a[k], b[k]) or (a[k].dtype.is_floating_point and
                                               torch.equal(a[k].nan_to_num(7.0), b[k].nan_to_num(7.0))), k

    reset()
    chain()                                      # eager warm-up: every kernel compiles here, not in capture
    torch.cuda.synchronize()
    reset()
    chain()
    torch.cuda.synchronize()
    eager = snapshot()

    graph = torch.cuda.CUDAGraph()
    reset()
    torch.cuda.synchronize()
    with torch.cuda.graph(graph):
        chain()
    reset()
    graph.replay()
    torch.cuda.synchronize()
    same(eager, snapshot())

    # new inputs and a new scale, written into the static buffers: replay follows, no recapture
    st["x"].copy_(rand(S, D, seed=60))
    st["gu"].copy_(rand(S, 2 * F, seed=61))
    st["mask"].copy_(torch.rand(P, device=DEV) > 0.5)
    st["s_norm"].fill_(0.035)
    st["img"].copy_(torch.randint(0, 256, (2, 224, 224, 3), dtype=torch.uint8, device=DEV))
    reset()
    graph.replay()
    torch.cuda.synchronize()
    replayed = snapshot()
    reset()
    chain()
    torch.cuda.synchronize()
    same(snapshot(), replayed)
    assert not torch.equal(replayed["h8"], eager["h8"]) and not torch.equal(replayed["pos"], eager["pos"])

    # no allocation across replays
    before = torch.cuda.memory_allocated()
    for _ in range(100):
        graph.replay()
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before


# -- programmatic dependent launch -------------------------------------------------------------------------
def test_programmatic_launch_expert_chain_is_bit_identical():
    """Kernels launched with PDL start while their predecessor runs and must wait for it before touching
    memory. Twelve expert layers (norm -> qkv+RoPE GEMM -> MQA partial + merge -> split-K o -> norm that sums
    the partials -> gate+up+GeGLU GEMM -> split-K down), each reading what the last kernel wrote: the bits
    must be the same without PDL, with PDL eagerly, and replayed from a graph captured with PDL. A kernel
    that read early would see the previous layer's data (buffers are reused every layer)."""
    from flash_rt.kernels.triton.attention import MqaWorkspace, mqa_attention
    from flash_rt.kernels.triton.launch import pdl_enabled, programmatic_dependent_launch

    S, D, F, N, H, P, L = 50, 1024, 4096, 8, 256, 576, 12

    def weight(n, k, seed):
        w32 = rand(n, k, seed=seed, dtype=torch.float32) / math.sqrt(k)
        ws = scale_for(w32)
        return (w32 / ws).clamp(-448, 448).to(F8), ws

    wqkv, wo, wgu, wd = weight((N + 2) * H, D, 80), weight(D, N * H, 81), weight(2 * F, D, 82), weight(D, F, 83)
    g, sc, sh = rand(D, seed=84, scale=0.5), rand(D, seed=85, scale=0.2), rand(D, seed=86, scale=0.2)
    s_h, s_att, s_a = (torch.tensor([v], device=DEV) for v in (4.0 / 448, 2.0 / 448, 1.0 / 448))
    spos = torch.arange(P, P + S, device=DEV, dtype=torch.int32)
    kbias = torch.zeros(P + S, device=DEV)
    kbias[P // 2:P // 2 + 40] = -2.3819763e38              # some padded prefix keys
    res0 = rand(S, D, seed=87, scale=2.0, dtype=torch.float32)
    kv0 = rand(1, P + S, H, seed=88), rand(1, P + S, H, seed=89)
    buf = dict(res=res0.clone(), h8=poison((S, D), F8), q=poison((N, S, H), BF), kc=kv0[0].clone(),
               vc=kv0[1].clone(), att8=poison((S, N * H), F8), o_parts=poison((4, S, D), torch.float32),
               a8=poison((S, F), F8), d_parts=torch.zeros(4, S, D, device=DEV))
    ws = MqaWorkspace(N * S, P + S, H, DEV, HOPPER.attention_tiles(N * S))

    def layers():
        for _ in range(L):
            T.gated_add_ada_rms_norm(buf["res"], buf["d_parts"], g, sc, sh, 1e-6, out=buf["h8"], out_scale=s_h)
            ROPE_QKV(buf["h8"], s_h, *wqkv, spos, q_out=buf["q"], k_out=buf["kc"][:, P:],
                                v_out=buf["vc"][:, P:])
            mqa_attention(buf["q"], buf["kc"][0], buf["vc"][0], kbias, out=buf["att8"], ws=ws, sm_scale=H ** -0.5,
                          out_scale=s_att)
            SPLITK(buf["att8"], s_att, *wo, out_partials=buf["o_parts"])
            T.gated_add_ada_rms_norm(buf["res"], buf["o_parts"], g, sc, sh, 1e-6, out=buf["h8"], out_scale=s_h)
            GEGLU(buf["h8"], s_h, *wgu, out=buf["a8"], out_scale=s_a)
            SPLITK(buf["a8"], s_a, *wd, out_partials=buf["d_parts"])

    def reset():
        buf["res"].copy_(res0)
        buf["kc"].copy_(kv0[0])
        buf["vc"].copy_(kv0[1])
        buf["d_parts"].zero_()

    def run(fn):
        reset()
        fn()
        torch.cuda.synchronize()
        return {k: (v.view(torch.uint8) if v.dtype == F8 else v).clone() for k, v in buf.items()}

    plain = run(layers)
    plain_again = run(layers)
    with programmatic_dependent_launch():
        assert pdl_enabled()
        eager_pdl = run(layers)
        reset()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            layers()
    assert not pdl_enabled()
    assert torch.isfinite(plain["res"]).all() and plain["res"].abs().max() > 1.0, "a degenerate chain proves nothing"
    for k in plain:
        assert torch.equal(plain[k], plain_again[k]), f"{k}: not deterministic without PDL"
        assert torch.equal(plain[k], eager_pdl[k]), f"{k}: eager PDL differs"
    for _ in range(5):
        replayed = run(graph.replay)
        for k in plain:
            assert torch.equal(plain[k], replayed[k]), f"{k}: graph captured with PDL differs"


# -- timings (informational; run with -s to see them) ---------------------------------------------------
def _graph_time_us(fn, reps=20):
    """GPU time of one call, measured as a CUDA graph of `reps` back-to-back calls (the production regime)."""
    fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            fn()
    g.replay()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        torch.cuda.synchronize()
        best = min(best, a.elapsed_time(b) * 1e3 / reps)
    return best


def test_report_kernel_timings():
    s = torch.tensor([0.02], device=DEV)
    cases = []
    for m, d in ((50, 1024), (562, 2048), (512, 1152)):
        res, y, w = rand(m, d, seed=70), rand(m, d, seed=71), rand(d, seed=72)
        sc, sh = rand(d, seed=73), rand(d, seed=74)
        o8 = poison((m, d), F8)
        cases.append((f"add_rms_norm->fp8 {m}x{d}", 3 * m * d * 2 + m * d,
                      lambda res=res, y=y, w=w, o8=o8: T.add_rms_norm(res, y, w, 1e-6, out=o8, out_scale=s)))
        cases.append((f"gated_add_ada_rms_norm->fp8 {m}x{d}", 3 * m * d * 2 + m * d,
                      lambda res=res, y=y, w=w, sc=sc, sh=sh, o8=o8:
                      T.gated_add_ada_rms_norm(res, y, w, sc, sh, 1e-6, out=o8, out_scale=s)))
    for m, f in ((50, 4096), (562, 16384)):
        gu, o8 = rand(m, 2 * f, seed=75), poison((m, f), F8)
        cases.append((f"geglu->fp8 {m}x{f}", m * 2 * f * 2 + m * f,
                      lambda gu=gu, o8=o8: T.geglu(gu, out=o8, out_scale=s)))
    for m in (50, 562):
        qkv = rand(m, 10 * 256, seed=76)
        pos = torch.arange(m, device=DEV, dtype=torch.int32)
        q, kc, vc = poison((8, m, 256), BF), poison((1, 612, 256), BF), poison((1, 612, 256), BF)
        cases.append((f"rope_qkv_split {m}", m * 2560 * 2 * 2,
                      lambda qkv=qkv, pos=pos, q=q, kc=kc, vc=vc, m=m:
                      T.rope_qkv_split(qkv, pos, q_out=q, k_out=kc[:, :m], v_out=vc[:, :m])))
    print()
    for name, nbytes, fn in cases:
        us = _graph_time_us(fn)
        print(f"  {name:40s} {us:7.2f} us  {nbytes / us / 1e3:7.1f} GB/s")
        assert us < 1000, f"{name}: {us} us is pathological"
