"""Every Triton kernel specialization of a full-size Pi0.5 GPU forward compiles for each target, with each target's
own tuning table, on a machine without a GPU: sm90 (Hopper), sm110 (Jetson Thor), sm120 (RTX 5090) and sm89 (RTX
4090 class: no PDL, no TMA).

Why: we cannot run on a Thor or a 5090, and a kernel that does not build for a target (a tile over its shared
memory, a dot shape its MMA rejects, a Hopper-only instruction) would otherwise show up on the robot. The launches
are the real ones: the shared CUDA forward (models/pi05/cuda_forward.py) runs on CPU tensors with the target cell's
tuning table and option defaults, under the production FP8 context and the calibration twin, with programmatic
dependent launch on and off, and every Triton launch is recorded instead of run (cuBLASLt GEMMs are skipped: they
are not ours to compile). Full widths, 1-3 camera views, horizons 10 and 50; depth cut to 2 layers and 2 flow
steps, which already holds every distinct specialization (first / middle / last layer and step), plus one case with
real-time chunking (the seam kernel with its blend, flow_inpaint in the calibration twin). Each distinct
specialization is compiled with `triton.compile` for the target, and the PTX is checked:
  * the target (`.target sm_90a` / `sm_110a` / `sm_120a` / `sm_89`) and shared memory within the target's per-block limit
    (sm120: 99 KB), and the GEMM tiles' own estimate (kernels/tiles.py) at least what the compiler allocated;
  * the FP8 GEMMs' MMA: wgmma on sm90, tcgen05 on sm110, mma.sync e4m3 on sm120 and sm89, no wgmma off Hopper;
  * griddepcontrol.wait in PDL builds; at most one correctly rounded division, no correctly rounded sqrt.
Correctness is checked elsewhere: the interpreter suite (test_kernels_interpret.py) and the GPU suite (test/gpu).
sm110 needs Triton >= 3.7 (3.6's bundled ptxas does not know sm_110a): those cases skip on an older Triton.
"""
import dataclasses
import importlib.util
import os

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed: pip install -r requirements.txt (CI installs it)", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("TRITON_INTERPRET=1: kernels are interpreted, not compiled", allow_module_level=True)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction, mangle_type  # noqa: E402
from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: E402

from flash_rt.frontends.torch._pi05_cuda_storage import device_buffers  # noqa: E402
from flash_rt.frontends.torch.pi05_hopper import Pi05TorchFrontendHopper  # noqa: E402
from flash_rt.frontends.torch.pi05_rtx import Pi05TorchFrontendRtx  # noqa: E402
from flash_rt.frontends.torch.pi05_rtx_sm89 import Pi05TorchFrontendRtxSm89  # noqa: E402
from flash_rt.frontends.torch.pi05_thor import Pi05TorchFrontendThor  # noqa: E402
from flash_rt.kernels import triton as kernels  # noqa: E402
from flash_rt.kernels.triton.launch import programmatic_dependent_launch  # noqa: E402
from flash_rt.models.pi05 import cuda_forward  # noqa: E402
from flash_rt.models.pi05.attention_sites import pi05_attention_spec  # noqa: E402
from flash_rt.models.pi05.config import Pi05Config  # noqa: E402
from flash_rt.models.pi05.dims import Pi05Dims  # noqa: E402
from flash_rt.runtime.attention import TritonAttnBackend  # noqa: E402
from flash_rt.runtime.quant import FP8, CalibContext, Fp8Context  # noqa: E402
from flash_rt.runtime.tuning import FUSED_GEMMS  # noqa: E402

CELLS = {c.hardware: c for c in (Pi05TorchFrontendHopper, Pi05TorchFrontendThor, Pi05TorchFrontendRtx,
                                  Pi05TorchFrontendRtxSm89)}
TRITON = tuple(int(p) for p in triton.__version__.split(".")[:2])
BF, F32 = torch.bfloat16, torch.float32
_DTYPE = {F32: "fp32", BF: "bf16", torch.float16: "fp16", FP8: "fp8e4nv", torch.int64: "i64", torch.int32: "i32",
          torch.uint8: "u8", torch.bool: "i1"}
_OPTIONS = ("num_warps", "num_stages", "launch_pdl", "enable_fp_fusion")
GEMM_KERNELS = {"_gemm_geglu_kernel": "geglu", "_gemm_rope_qkv_kernel": "rope_qkv", "_gemm_splitk_kernel": "splitk"}
# the PTX of an FP8 dot per MMA family
MMA_PTX = {"wgmma": "wgmma.mma_async", "tcgen05": "tcgen05.mma", "mma.sync": "mma.sync.aligned.m16n8k32.row.col.f32.e4m3"}


class _SkipCublas:
    """The contexts' cuBLASLt GEMMs (torch._scaled_mm / mm) are not Triton kernels: skip them on the CPU."""

    def linear(self, x, site, wname, out, bias=None):
        return out


class _Fp8(_SkipCublas, Fp8Context):
    pass


class _Calib(_SkipCublas, CalibContext):
    pass


def _weights(c: Pi05Config):
    """Uninitialized tensors of the GPU spec's storage (frontends/torch/_pi05_cuda_spec.py): FP8 [N, K] GEMM
    weights with a scale each, bf16 biases / embedding / patch kernel, fp32 vectors and action heads. Values are
    never read: every launch is recorded, not run."""
    e = torch.empty
    w, ws = {}, {}

    def gemm(name, n, k):
        w[name], ws[name] = e(n, k, dtype=FP8), torch.ones((), dtype=F32)

    qkv = (c.heads + 2 * c.kv_heads) * c.head_dim
    for i in range(c.vis_layers):
        p = f"vis.{i}."
        gemm(p + "qkv_w", 3 * c.vis_width, c.vis_width)
        gemm(p + "o_w", c.vis_width, c.vis_width)
        gemm(p + "fc1_w", c.vis_mlp, c.vis_width)
        gemm(p + "fc2_w", c.vis_width, c.vis_mlp)
        for nm, n in (("qkv_b", 3 * c.vis_width), ("o_b", c.vis_width), ("fc1_b", c.vis_mlp), ("fc2_b", c.vis_width)):
            w[p + nm] = e(n, dtype=BF)
        for nm in ("ln1_w", "ln1_b", "ln2_w", "ln2_b"):
            w[p + nm] = e(c.vis_width, dtype=F32)
    for blk, width, mlp in (("llm", c.width, c.mlp), ("ex", c.ex_width, c.ex_mlp)):
        for i in range(c.layers):
            gemm(f"{blk}.{i}.qkv_w", qkv, width)
            gemm(f"{blk}.{i}.o_w", width, c.heads * c.head_dim)
            gemm(f"{blk}.{i}.gu_w", 2 * mlp, width)
            gemm(f"{blk}.{i}.down_w", width, mlp)
    for i in range(c.layers):   # the prefix norms' weights (FP8 smoothing, runtime/smoothing.py)
        w[f"llm.{i}.norm1_w"], w[f"llm.{i}.norm2_w"] = e(c.width, dtype=F32), e(c.width, dtype=F32)
    gemm("proj_w", c.width, c.vis_width)
    w.update(proj_b=e(c.width, dtype=BF), post_ln_w=e(c.vis_width, dtype=F32), post_ln_b=e(c.vis_width, dtype=F32),
             patch_w=e(c.vis_width, 3 * c.patch_size ** 2, dtype=BF), pos_emb_b=e(c.num_patches, c.vis_width, dtype=F32),
             embed=e(c.vocab, c.width, dtype=BF), action_in_w=e(c.action_dim, c.ex_width, dtype=F32),
             action_in_b=e(c.ex_width, dtype=F32), action_out_w=e(c.ex_width, c.action_dim, dtype=F32),
             action_out_b=e(c.action_dim, dtype=F32), action_out_rows=e(c.action_dim, c.ex_width, dtype=F32))
    return w, ws


def _record(calls):
    """Run `calls` with every Triton launch recorded instead of run: [(fn, args, kwargs)]."""
    seen = []
    real = JITFunction.run

    def fake_run(self, *args, grid, warmup, **kwargs):  # noqa: ARG001
        seen.append((self, args, kwargs))
    JITFunction.run = fake_run
    try:
        calls()
    finally:
        JITFunction.run = real
    return seen


def _signature(fn, args, kwargs):
    bound = dict(zip([p.name for p in fn.params], args))
    options = {k: kwargs[k] for k in kwargs if k in _OPTIONS}
    bound.update({k: v for k, v in kwargs.items() if k not in _OPTIONS})
    sig, constexprs = {}, {}
    for p in fn.params:
        v = bound[p.name]
        if p.is_constexpr:
            sig[p.name], constexprs[p.name] = "constexpr", v
        elif isinstance(v, torch.Tensor):
            sig[p.name] = "*" + _DTYPE[v.dtype]
        elif isinstance(v, TensorDescriptor):       # TMA operand: "tensordesc<fp8e4nv[64, 256]>"
            sig[p.name] = mangle_type(v)
        elif isinstance(v, bool):
            sig[p.name] = "i1"
        elif isinstance(v, int):
            sig[p.name] = "i64" if abs(v) >= 2 ** 31 else "i32"
        elif isinstance(v, float):
            sig[p.name] = "fp32"
        else:
            raise TypeError(f"{fn.__name__}: argument {p.name}={v!r} has no signature type here")
    return sig, constexprs, options


def forward_launches(hardware: str):
    """The distinct Triton specializations one full-size forward of `hardware`'s cell launches."""
    cell = CELLS[hardware]
    tuning = cell.tuning
    cfg = dataclasses.replace(Pi05Config(), layers=2, vis_layers=2, vocab=1024)
    w, ws = _weights(cfg)
    launches = {}
    # the last case adds real-time chunking's kernels (the seam kernel with the blend, flow_inpaint in the twin)
    for views, horizon, rtc in ((1, 50, False), (2, 50, False), (3, 50, False), (2, 10, False), (2, 50, True)):
        c = dataclasses.replace(cfg, action_horizon=horizon)
        d = Pi05Dims.of(c, views, num_steps=2, dt=-0.5, align=16, realtime_chunking=rtc)
        mods = torch.zeros(d.num_steps, 2 * c.layers + 1, 3, c.ex_width)
        b = device_buffers(c, d, tuning.split_k, "cpu", mods)
        for name, shape, dt in (("images_u8", (views, c.image_size, c.image_size, 3), torch.uint8),
                                ("image_mask", (views,), torch.bool), ("token_ids", (c.max_token_len,), torch.int64),
                                ("token_mask", (c.max_token_len,), torch.bool),
                                ("noise", (horizon, c.action_dim), F32), ("rtc_w", (horizon,), F32),
                                ("rtc_w1", (horizon,), F32), ("rtc_target", (horizon, c.action_dim), F32)):
            b[name] = torch.zeros(shape, dtype=dt)
        attn = TritonAttnBackend(pi05_attention_spec(c, d), "cpu", tuning)
        sites = cuda_forward.quant_sites(d)
        scale = {s: torch.ones(1) for s in sites}
        opts = cell.option_defaults
        prod = _Fp8(w, ws, scale, tuning=tuning, fast_accum=opts["fast_accum"], fused=kernels,
                    fused_ops=tuple(FUSED_GEMMS), transposed=opts["transposed_gemms"], flow_boundary=True)
        calib = _Calib(w, ws, scale, kernels.amax_update, torch.empty(0, dtype=BF))
        modes = ((prod, True), (prod, False), (calib, True)) if tuning.pdl else ((prod, False), (calib, False))
        for q, pdl in modes:
            with programmatic_dependent_launch(pdl):
                for fn, args, kw in _record(lambda q=q: cuda_forward.forward(w, b, d, attn, q, None)):
                    sig, constexprs, options = _signature(fn, args, kw)
                    key = (fn.__name__, tuple(sig.items()), tuple(sorted(constexprs.items(), key=str)),
                           tuple(sorted(options.items())))
                    launches.setdefault(key, (fn, sig, constexprs, options))
    return list(launches.values())


TARGETS = [h for h in CELLS]
LAUNCHES = {h: forward_launches(h) for h in TARGETS}


def test_the_forward_launches_every_kernel_family():
    for hw, launches in LAUNCHES.items():
        names = {fn.__name__ for fn, *_ in launches}
        assert {"_gemm_rope_qkv_kernel", "_gemm_geglu_kernel", "_gemm_splitk_kernel", "_mqa_partial",
                "_mqa_merge", "_norm_row_kernel", "_mha_kernel", "_flow_boundary_kernel", "_amax_kernel",
                "_u8_to_model_kernel", "_rope_qkv_kernel", "_flow_inpaint_kernel"} <= names, (hw, names)
        inpaint = {c["INPAINT"] for fn, _, c, _ in launches if fn.__name__ == "_flow_boundary_kernel"}
        assert inpaint == {False, True}, (hw, inpaint)


def test_key_splits_follow_the_sm_count():
    """Horizon 50's decoder (8 heads x 50 rows, 720 keys at 2 views): Hopper splits the keys to fill 132 SMs; on
    Thor's 20 SMs the 25 row tiles already fill the GPU, so there is no split and no merge pass (180 fewer graph
    nodes per inference, at ~3 us a node on Thor). Horizon 10 (5 row tiles) still splits on Thor."""
    from flash_rt.kernels.triton.attention import MqaWorkspace
    splits = {hw: MqaWorkspace(rows, 720, 256, "cpu", CELLS[hw].tuning.attention_tiles(rows)).splits
              for hw in TARGETS for rows in [8 * 50]}
    assert splits["hopper"] > 1 and splits["rtx_sm120"] > 1 and splits["thor"] == 1, splits
    t = CELLS["thor"].tuning
    assert MqaWorkspace(80, 720, 256, "cpu", t.attention_tiles(80)).splits > 1


@pytest.mark.parametrize("hw", TARGETS)
@pytest.mark.parametrize("rows,keys", [(400, 528), (400, 784), (400, 1040), (80, 784), (8 * 464, 464)])
def test_key_splits_fill_the_sms_and_bound_the_keys_a_split(hw, rows, keys):
    """kernels/tiles.mqa_key_split: no split where the row tiles fill half the SMs; otherwise the programs stay
    within the table's target (the SM count) unless a split would then hold more than max_split_keys keys, and
    no split holds more than that. Keys per split are whole key blocks that cover the keys."""
    from flash_rt.kernels.triton.attention import MqaWorkspace
    tiles = CELLS[hw].tuning.attention_tiles(rows)
    ws = MqaWorkspace(rows, keys, 256, "cpu", tiles)
    m_blocks = triton.cdiv(rows, ws.block_m)
    assert ws.splits * ws.keys_per_split >= keys > (ws.splits - 1) * ws.keys_per_split
    assert ws.keys_per_split % tiles.block_n == 0
    if 2 * m_blocks > tiles.target_programs:
        assert ws.splits == 1, (hw, rows, keys, ws.splits)
        return
    cap = tiles.max_split_keys
    if cap is not None:
        assert ws.keys_per_split <= max(cap, tiles.block_n), (hw, rows, keys, ws.keys_per_split)
    if cap is None or keys <= cap * (tiles.target_programs // m_blocks):
        assert m_blocks * ws.splits <= tiles.target_programs, (hw, rows, keys, ws.splits)


def test_key_splits_where_the_model_measured_them():
    """The A/Bs behind mqa_key_split (H100, replay at 200 slots, docs/benchmarks.md "Seventeenth session"):
    Hopper's decoder splits 784 keys (2 views) into 7 of 128 (175 programs; 5 of 192 replayed 1.017x) and 1040
    (3 views) into 9 of 128 (6 of 192 replayed 1.008x; in another run 5 of 256 1.015x of 6 of 192); its 1-view
    prefix into 2 splits (116 programs; 3 splits replayed 1.009x); 528 keys (1 view) stay 5 of 128."""
    from flash_rt.kernels.triton.attention import MqaWorkspace
    t = CELLS["hopper"].tuning
    got = {(rows, keys): (lambda w: (w.splits, w.keys_per_split))(
        MqaWorkspace(rows, keys, 256, "cpu", t.attention_tiles(rows)))
        for rows, keys in [(400, 1040), (400, 784), (400, 528), (8 * 464, 464)]}
    assert got == {(400, 1040): (9, 128), (400, 784): (7, 128), (400, 528): (5, 128), (8 * 464, 464): (2, 256)}, got


def test_one_view_prefix_attention_splits_its_keys():
    """Why 1 view replays 17 kernels more than 2 or 3 views on Hopper (1843 vs 1826, docs/benchmarks.md): the prefix
    site's 8 x 464 query rows (200 prompt slots) make 58 row tiles of 64, fewer than half the 132 SMs, so its keys
    split (in 2: 116 programs within the 132 SMs) and each of the 17 prefix attentions adds a merge launch; at 2 and
    3 views the row tiles fill the GPU alone (one split, no merge)."""
    from flash_rt.kernels.triton.attention import MqaWorkspace
    tuning = CELLS["hopper"].tuning
    splits = [MqaWorkspace(8 * p, p, 256, "cpu", tuning.attention_tiles(8 * p)).splits for p in (464, 720, 976)]
    assert splits == [2, 1, 1], splits


CASES = [(hw, i) for hw in TARGETS for i in range(len(LAUNCHES[hw]))]


@pytest.mark.parametrize("hw,i", CASES, ids=[f"{hw}-{LAUNCHES[hw][i][0].__name__}-{i}" for hw, i in CASES])
def test_compiles_for_the_target(hw, i):
    tuning = CELLS[hw].tuning
    if TRITON < tuple(tuning.min_triton):
        pytest.skip(f"Triton {triton.__version__} cannot build sm{tuning.arch} (needs >= {tuning.min_triton})")
    fn, sig, constexprs, options = LAUNCHES[hw][i]
    k = triton.compile(ASTSource(fn, sig, constexprs), target=GPUTarget("cuda", tuning.arch, 32), options=options)
    ptx, name = k.asm["ptx"], fn.__name__
    ptx_target = f"sm_{tuning.arch}a" if tuning.arch >= 90 else f"sm_{tuning.arch}"   # arch-specific from sm90 on
    assert f".target {ptx_target}\n" in ptx, f"{name}: not built for {ptx_target}"
    assert k.metadata.shared <= tuning.smem_per_block, \
        f"{name}: {k.metadata.shared} bytes of shared memory > {tuning.smem_per_block} on {hw}"
    if name in GEMM_KERNELS:
        op = GEMM_KERNELS[name]
        est = tuning.gemm[op].smem_bytes(FUSED_GEMMS[op])
        assert est >= k.metadata.shared, f"{name}: the tile estimate {est} < the compiled {k.metadata.shared} bytes"
        assert MMA_PTX[tuning.mma] in ptx, f"{name}: no {tuning.mma} FP8 MMA in the {hw} build"
    if tuning.arch != 90:
        assert "wgmma" not in ptx, f"{name}: Hopper-only wgmma in the {hw} build"
    if not tuning.pdl:   # sm89 has neither programmatic dependent launch nor the tensor memory accelerator
        assert "griddepcontrol" not in ptx and "cp.async.bulk.tensor" not in ptx, f"{name}: sm90+ PTX in {hw}"
    if options.get("launch_pdl"):
        assert "griddepcontrol.wait" in ptx, f"{name}: PDL build without griddepcontrol.wait"
    # correctly rounded division / square root are slow multi-instruction sequences: per element, div.rn cost
    # 1.3-2.4 us per gate+up GEMM call on an H100 (kernels/triton/fp8_quant.py). One per thread (the scale's
    # reciprocal) is fine; more means an epilogue divides per element again. The one exception divides on purpose:
    # the image upload's x / 255 is openpi's normalization bit for bit, once per tick over the camera bytes.
    if name != "_u8_to_model_kernel":
        assert ptx.count("div.rn.f32") <= 1, f"{name}: {ptx.count('div.rn.f32')} correctly rounded divisions"
    assert "sqrt.rn" not in ptx, f"{name}: correctly rounded sqrt on the hot path"
