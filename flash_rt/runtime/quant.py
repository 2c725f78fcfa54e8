"""The GEMM op and the quantization contexts every GPU target shares (model-agnostic; FP8 needs sm89+).

GEMMs: FP8 e4m3 with per-tensor scales through torch._scaled_mm (cuBLASLt), bf16 out, optional fused bias;
BF16 through torch.mm/addmm. Weights are stored [N, K] row-major; `w.t()` is the column-major [K, N] operand
cuBLASLt wants for FP8, so no transposed copy is ever made. Every call writes into a preallocated `out`.

Quantization contexts let ONE forward function serve as the production path and as its calibration twin
(instead of two hand-synchronised copies, FlashRT's main source of mismatched-pointer bugs):
  * Fp8Context   -- production: norms/activations write FP8 with the site's static scale, FP8 GEMMs;
  * Bf16Context  -- the BF16 path (precision ladder rung 3): bf16 activations and bf16 weights;
  * CalibContext -- the twin: bf16 activations, weights dequantized from the same FP8 bytes production uses,
                    and the amax of every site's activation recorded on the device.
A context maps a site name to the buffer and scale its producer must write; the forward never branches.
"""
from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


SCALE_STRIDE = 64  # floats: 256-byte spacing between scalar scales


def aligned_scalars(n: int, device, fill: float = 1.0):
    """n fp32 scalars, each on its own 256-byte boundary: cuBLASLt rejects FP8 scale pointers that are not
    aligned (CUBLAS_STATUS_NOT_SUPPORTED for a view at a 4-byte offset, seen on H100 with torch 2.11).
    Returns (storage [n, SCALE_STRIDE], list of 0-dim views)."""
    store = torch.full((n, SCALE_STRIDE), fill, dtype=torch.float32, device=device)
    return store, [store[i, 0] for i in range(n)]


def linear(x, w, out, *, x_scale=None, w_scale=None, bias=None, fast_accum: bool = False):
    """out = x @ w.T (+ bias). FP8 when w is FP8 (x must be FP8 with x_scale), else a plain mm.
    fast_accum: cuBLASLt's FP8 fast accumulation (fewer promotions to fp32; faster, slightly less exact).

    out may also be the transposed view of an [N, M] row-major buffer (`out_t.t()`). Then the GEMM runs as the
    transposed problem out_t = w @ x.T, with the weights as cuBLASLt's A operand, so cuBLASLt tiles the large N
    as its M. (Passing the transposed view straight to cuBLASLt maps back to the row-major call and its speed.)
    For the prefix down GEMM (576 x 16384 x 2048) that is 37.0 us against 48.0 us per call, H100, torch 2.11
    (benchmarks/prefix_gemm_probe.py). The consumer reads the transposed view (the norms accept one).
    No bias there: cuBLASLt's bias runs along the other dimension."""
    if out.dim() == 2 and out.shape[1] > 1 and out.stride(1) != 1:
        if bias is not None:
            raise ValueError("linear: a transposed out takes no bias (cuBLASLt adds bias per output column)")
        out_t = out.t()
        if w.dtype == FP8:
            torch._scaled_mm(w, x.t(), scale_a=w_scale, scale_b=x_scale, out_dtype=out.dtype,
                             use_fast_accum=fast_accum, out=out_t)
        else:
            torch.mm(w, x.t(), out=out_t)
        return out
    if w.dtype == FP8:
        torch._scaled_mm(x, w.t(), scale_a=x_scale, scale_b=w_scale, bias=bias, out_dtype=out.dtype,
                         use_fast_accum=fast_accum, out=out)
    elif bias is not None:
        torch.addmm(bias, x, w.t(), out=out)
    else:
        torch.mm(x, w.t(), out=out)
    return out


class _Composite:
    """GEMM + the op that consumes its output, as two steps (the calibration twin, BF16, and FP8 where no fused
    kernel applies). Fp8Context replaces both with one fused kernel when it is given them."""

    # a model's multi-op seams (one kernel in production where Fp8Context says so) run as their pieces here
    fused_flow_boundary = False

    def linear_geglu(self, x, site, wname, gu, out_site, act_bf16, act_fp8):
        """gu = x @ W.T, then act = geglu(gu) written as the out_site activation; returns that activation."""
        from flash_rt.kernels.triton import geglu
        self.linear(x, site, wname, gu)
        ab, as_ = self.act(out_site, act_bf16, act_fp8)
        geglu(gu, out=ab, out_scale=as_)
        self.post(out_site, ab)
        return ab

    def linear_partials(self, x, site, wname, out, partials):
        """y = x @ W.T for a consumer that accepts split-K partials (gated_add_ada_rms_norm): returns `out`
        [M, N] here, `partials` [S, M, N] (fp32, summed by the consumer) where split-K runs."""
        return self.linear(x, site, wname, out)

    def linear_transposable(self, x, site, wname, out, out_t):
        """y = x @ W.T for a consumer that reads any [M, N] view (the norms, geglu): returns `out` here, `out_t.t()`
        ([N, M] storage, the transposed problem of `linear`) for the weights Fp8Context runs transposed."""
        return self.linear(x, site, wname, out)

    def linear_rope_qkv(self, x, site, wname, qkv, positions, q_out, k_out, v_out, theta):
        """qkv = x @ W.T, then RoPE + split into q_out and the KV-cache slices k_out / v_out."""
        from flash_rt.kernels.triton import rope_qkv_split
        self.linear(x, site, wname, qkv)
        rope_qkv_split(qkv, positions, q_out=q_out, k_out=k_out, v_out=v_out, theta=theta)


class Fp8Context(_Composite):
    """tuning: the target's table (runtime/tuning.GpuTuning): tiles of the fused GEMMs (`tuning.gemm`, A/B overrides
    already applied), the rows up to which they run (`fused_max_m`; the prefix's M = 576 GEMMs stay on cuBLASLt) and
    the flow seam's tiles;
    fused: None, or an object with fp8_gemm_geglu / fp8_gemm_rope_qkv / fp8_gemm_splitk (flash_rt.kernels.triton);
    fused_ops: which of "rope_qkv" / "geglu" / "splitk" to run fused;
    transposed: weight-name suffixes whose linear_transposable GEMMs run as the transposed problem (W @ x.T);
    flow_boundary: run the seam between two flow-matching steps as one kernel (the model pipeline's);
    bf16_sites: a predicate on site names (None: none) -- those activations stay bf16 and their consumers' weights
    must be bf16 in `w` (runtime/outlier_sites.py, when the frontend runs the outlier sites in BF16)."""

    def __init__(self, w: dict, w_scales: dict, act_scales: dict, *, tuning, fast_accum=False, fused=None,
                 fused_ops=("rope_qkv", "geglu"), transposed: tuple = (), flow_boundary: bool = False,
                 bf16_sites=None):
        self.w, self.ws, self.s = w, w_scales, act_scales
        self.bf16_sites = bf16_sites
        self.fused_flow_boundary = bool(flow_boundary) and fused is not None
        self.flow_tiles = tuning.flow_boundary
        self.transposed = tuple(transposed)
        # fast_accum: True (every cuBLASLt FP8 GEMM), False (none), or weight-name suffixes whose GEMMs use it
        self.fast_accum = fast_accum
        self._fast_suffixes = None if isinstance(fast_accum, bool) else tuple(fast_accum)
        self.fused, self.fused_ops, self.fused_max_m = fused, frozenset(fused_ops), tuning.fused_max_m
        self.fused_cfgs = dict(tuning.gemm)   # {op: FusedGemmConfig}

    def _use_fused(self, op, x, wname, head_dim=None, splits=None) -> bool:
        return (self.fused is not None and op in self.fused_ops and x.shape[0] <= self.fused_max_m
                and self.fused.fused_gemm_supported(op, x, self.w[wname], head_dim, splits,
                                                    cfg=self.fused_cfgs[op]))

    def _cfg(self, op):
        return {"cfg": self.fused_cfgs[op]}

    def linear_partials(self, x, site, wname, out, partials):
        if not self._use_fused("splitk", x, wname, splits=partials.shape[0]):
            return super().linear_partials(x, site, wname, out, partials)
        return self.fused.fp8_gemm_splitk(x, self.s[site], self.w[wname], self.ws[wname], out_partials=partials,
                                          **self._cfg("splitk"))

    def linear_geglu(self, x, site, wname, gu, out_site, act_bf16, act_fp8):
        if not self._use_fused("geglu", x, wname) or self._bf16(out_site):   # the fused kernel writes FP8
            return super().linear_geglu(x, site, wname, gu, out_site, act_bf16, act_fp8)
        self.fused.fp8_gemm_geglu(x, self.s[site], self.w[wname], self.ws[wname], out=act_fp8,
                                  out_scale=self.s[out_site], **self._cfg("geglu"))
        return act_fp8

    def linear_rope_qkv(self, x, site, wname, qkv, positions, q_out, k_out, v_out, theta):
        if not self._use_fused("rope_qkv", x, wname, q_out.shape[-1]):
            return super().linear_rope_qkv(x, site, wname, qkv, positions, q_out, k_out, v_out, theta)
        self.fused.fp8_gemm_rope_qkv(x, self.s[site], self.w[wname], self.ws[wname], positions, q_out=q_out,
                                     k_out=k_out, v_out=v_out, theta=theta, **self._cfg("rope_qkv"))

    def linear_transposable(self, x, site, wname, out, out_t):
        return self.linear(x, site, wname, out_t.t() if wname.endswith(self.transposed) else out)

    def _bf16(self, site) -> bool:
        return self.bf16_sites is not None and self.bf16_sites(site)

    def act(self, site, bf16_buf, fp8_buf):
        return (bf16_buf, None) if self._bf16(site) else (fp8_buf, self.s[site])

    def post(self, site, t):
        pass

    def linear(self, x, site, wname, out, bias=None):
        w = self.w[wname]
        return linear(x, w, out, x_scale=self.s[site] if w.dtype == FP8 else None,
                      w_scale=self.ws.get(wname), bias=bias, fast_accum=self._fast(wname))

    def _fast(self, wname: str) -> bool:
        return self.fast_accum if self._fast_suffixes is None else wname.endswith(self._fast_suffixes)


class Bf16Context(_Composite):
    def __init__(self, w: dict):
        self.w = w

    def act(self, site, bf16_buf, fp8_buf):
        return bf16_buf, None

    def post(self, site, t):
        pass

    def linear(self, x, site, wname, out, bias=None):
        return linear(x, self.w[wname], out, bias=bias)


class CalibContext(_Composite):
    """bf16 twin of Fp8Context that records amax per site into `amax[site]` (device fp32 [1] slots).
    channels: None, or a callable (site, activation) that records per-channel maxima (the smoothing factors'
    measurement, runtime/smoothing.ChannelRecorder)."""

    def __init__(self, w: dict, w_scales: dict, amax: dict, amax_update, scratch: torch.Tensor, channels=None):
        self.w, self.ws, self.amax, self._upd, self.scratch = w, w_scales, amax, amax_update, scratch
        self.channels = channels

    def act(self, site, bf16_buf, fp8_buf):
        return bf16_buf, None

    def post(self, site, t):
        self._upd(t, self.amax[site])
        if self.channels is not None:
            self.channels(site, t)

    def linear(self, x, site, wname, out, bias=None):
        w = self.w[wname]
        if w.dtype == FP8:  # the same bytes production multiplies, widened once into scratch
            wd = self.scratch[: w.numel()].view(w.shape)
            wd.copy_(w.float() * self.ws[wname])
            w = wd
        return linear(x, w, out, bias=bias)
