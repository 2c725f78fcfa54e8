"""The shared GPU forward of every GPU cell (models/pi05/cuda_forward.py), run by Triton's CPU interpreter on the
a micro model with each target's tuning table and option defaults, against the exact CPU path on the same inputs.

Why: the GPU cells can only run on a GPU, which CI has not; a broken forward (a wrong dims field, a seam kernel
called with the wrong tiles, a context that lost an op) would otherwise surface on the device, or on a robot.
Here the very code the device runs -- GPU weight spec and its unpacking, the device buffers, the Triton attention
backend, the calibration twin, the FP8 context and every Triton kernel -- runs on CPU tensors: the kernels through
the interpreter, cuBLASLt's FP8 GEMMs through torch._scaled_mm on the CPU. What it cannot check is CUDA itself
(streams, graphs, pinned memory, PDL): the GPU suite does. The tiny model's K = 64 is below the fused expert GEMMs'
tiles, so those run as GEMM + epilogue kernel here (the kernel suite checks the fused ones at full size).
Bars: the precision ladder's (BF16 cos >= 0.999, FP8 >= 0.995; worst of 2 observations, float64 cosine).
Real-time chunking runs once per precision on one cell (the forward is shared code): bf16 takes the unfused seam
(flow_inpaint), fp8 the production seam kernel with the blend inside (flow_boundary's INPAINT); the frozen rows
must come out equal to the model-space prefix, and the chunk must match the exact CPU path under the same constraint.
"""
import pytest

from _interpreter import (IN_CHILD, cpu_observation, host_inputs, patch_interpreter_float_conversion, run_child,
                          stream_stand_ins)

if not IN_CHILD:
    def test_gpu_forward_under_the_interpreter():
        run_child(__file__)

else:
    import dataclasses

    import numpy as np
    import torch

    import flash_rt
    from flash_rt.frontends.torch._pi05_cuda_storage import build_weights, device_buffers, unpack_weights
    from flash_rt.frontends.torch.pi05_hopper import Pi05TorchFrontendHopper
    from flash_rt.frontends.torch.pi05_rtx import Pi05TorchFrontendRtx
    from flash_rt.frontends.torch.pi05_thor import Pi05TorchFrontendThor
    from flash_rt.kernels import triton as kernels
    from flash_rt.models.pi05 import cuda_forward
    from flash_rt.models.pi05.attention_sites import pi05_attention_spec
    from flash_rt.models.pi05.dims import Pi05Dims
    from flash_rt.models.pi05.oracle import cosine64
    from flash_rt.runtime.attention import TritonAttnBackend
    from flash_rt.runtime.fp8_scales import ActivationScales
    from flash_rt.runtime.quant import Bf16Context, CalibContext, Fp8Context
    from flash_rt.testing import TINY_STATE_DIM, build_tiny_checkpoint
    from flash_rt.testing.checkpoint import TINY_CONFIG

    assert patch_interpreter_float_conversion(), "this Triton's interpreter cannot narrow floats like the GPU"
    CELLS = {c.hardware: c for c in (Pi05TorchFrontendHopper, Pi05TorchFrontendThor, Pi05TorchFrontendRtx)}
    # the interpreter runs about a program a millisecond: a micro model (4x4 patches of a 56-pixel image, 48 prompt
    # slots), one camera, two flow steps -- every kernel and code path of the forward, at ~1/10 of the tiny's rows
    MICRO = dataclasses.replace(TINY_CONFIG, num_patches=16, max_token_len=48, num_steps=2)
    VIEWS = 1

    @pytest.fixture(scope="module")
    def micro_ckpt(tmp_path_factory):
        return build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), layout="openpi", cfg=MICRO)

    @pytest.fixture(scope="module")
    def cpu_policy(micro_ckpt):
        return flash_rt.load_model(micro_ckpt, hardware="cpu", num_views=VIEWS, num_steps=MICRO.num_steps)

    @pytest.fixture(scope="module")
    def rtc_policy(micro_ckpt):
        return flash_rt.load_model(micro_ckpt, hardware="cpu", num_views=VIEWS, num_steps=MICRO.num_steps,
                                   realtime_chunking=True, action_delta_mask=[3, -1])

    @pytest.mark.parametrize("precision, bar", [("bf16", 0.999), ("fp8", 0.995)])
    @pytest.mark.parametrize("hardware", sorted(CELLS))
    def test_gpu_forward_matches_the_exact_cpu_path(micro_ckpt, cpu_policy, hardware, precision, bar):
        check_forward(micro_ckpt, cpu_policy, hardware, precision, bar, observations=2)

    @pytest.mark.parametrize("precision, bar", [("bf16", 0.999), ("fp8", 0.995)])
    def test_gpu_forward_with_realtime_chunking(micro_ckpt, rtc_policy, precision, bar):
        check_forward(micro_ckpt, rtc_policy, "hopper", precision, bar, observations=1, frozen=3)

    @pytest.mark.parametrize("precision, width", [("fp8", 1), ("bf16", 2)])
    def test_flow_step_bytes_is_the_expert_weights_kv_and_modulation(micro_ckpt, cpu_policy, precision, width):
        """The streaming floor critical_path.py reports (issue 17), against the shapes counted from the config."""
        cfg = cpu_policy.config
        w, _, _, mods, dt = unpack_weights(build_weights(micro_ckpt, cfg, precision, "cpu"), cfg, precision, "cpu")
        d = Pi05Dims.of(cfg, VIEWS, len(mods), dt, align=16)
        b = device_buffers(cfg, d, 4, "cpu", mods)
        D, F, hd, A = cfg.ex_width, cfg.ex_mlp, cfg.head_dim, cfg.action_dim
        qkv = (cfg.heads + 2 * cfg.kv_heads) * hd
        per_layer = D * qkv + cfg.heads * hd * D + D * 2 * F + F * D
        got = cuda_forward.flow_step_bytes(w, b, d)
        assert got["expert_weights"] == cfg.layers * per_layer * width
        assert got["seam_weights"] == 2 * A * D * 4
        assert got["kv_cache"] == cfg.layers * 2 * cfg.kv_heads * d.kv_len * hd * 2
        assert got["modulation"] == (2 * cfg.layers + 1) * 3 * D * 4
        assert got["total"] == sum(v for k, v in got.items() if k != "total")

    def test_step_0_beside_the_prefix_computes_the_same_chunk(micro_ckpt, cpu_policy, monkeypatch):
        """overlap_first_step's schedule (beside_prefix): the same kernels on the same buffers in another order, so
        the same bits. Streams and events cannot exist on the CPU: stand-ins, and the streams' contexts no-ops;
        what is checked is that the interleaved schedule runs every layer of step 0 in dependency order (the GPU
        suite checks two real streams: test/gpu/test_pi05_gpu.py)."""
        runs = {}
        for name, overlap in (("serial", None), ("overlap", stream_stand_ins(monkeypatch, MICRO.layers))):
            runs[name] = []
            check_forward(micro_ckpt, cpu_policy, "hopper", "fp8", 0.995, observations=1, overlap=overlap,
                          chunks=runs[name])
        assert (runs["serial"][0] == runs["overlap"][0]).all()

    def check_forward(micro_ckpt, cpu_policy, hardware, precision, bar, observations, frozen=None, overlap=None,
                      chunks=None):
        cell, cfg = CELLS[hardware], cpu_policy.config
        rtc = frozen is not None
        w, ws, _, mods, dt = unpack_weights(build_weights(micro_ckpt, cfg, precision, "cpu"), cfg, precision, "cpu")
        d = Pi05Dims.of(cfg, VIEWS, len(mods), dt, align=16, realtime_chunking=rtc)
        b = device_buffers(cfg, d, cell.tuning.split_k, "cpu", mods)
        h = cpu_policy.frontend.host
        b.update(host_inputs(h))
        attn = TritonAttnBackend(pi05_attention_spec(cfg, d), "cpu", cell.tuning)
        scales = ActivationScales(cuda_forward.quant_sites(d), "cpu")
        rng = np.random.default_rng(7)
        worst = 1.0
        for _ in range(observations):
            cpu_observation(cpu_policy, rng, VIEWS, TINY_STATE_DIM, frozen)   # fills the host buffers b reads
            want = h.model_out.copy()
            if precision == "fp8":   # calibrate on this observation (the first-tick rule), then run production
                scales.amax.zero_()
                scratch = torch.empty(max(v.numel() for v in w.values()), dtype=torch.bfloat16)
                cuda_forward.forward(w, b, d, attn, CalibContext(w, ws, scales.site_amax, kernels.amax_update,
                                                                  scratch), None)
                scales.set_from_amax()
                opts = cell.option_defaults
                q = Fp8Context(w, ws, scales.site_scale, tuning=cell.tuning, fast_accum=False, fused=kernels,
                               fused_ops=("rope_qkv", "geglu", "splitk"), transposed=opts["transposed_gemms"],
                               flow_boundary=True)
                assert q.fused_flow_boundary
            else:
                q = Bf16Context(w)
            cuda_forward.forward(w, b, d, attn, q, overlap)
            got = b["x_t"].numpy()
            if chunks is not None:
                chunks.append(got.copy())
            assert np.isfinite(got).all()
            if rtc:   # W = 1 rows are the model-space prefix exactly (1 * target + 0 * x at t = 0), fused or not
                np.testing.assert_array_equal(got[:frozen], h.rtc.target[:frozen])
                assert q.fused_flow_boundary == (precision == "fp8")   # both seams carry the blend
            worst = min(worst, cosine64(got, want))
        print(f"{hardware} {precision}{' rtc' if rtc else ''}: worst cos {worst:.6f}")
        assert worst >= bar, (hardware, precision, worst)
