"""Pi0's shared GPU forward (models/pi0/cuda_forward.py) under Triton's CPU interpreter, on a micro Pi0 with each
target's tuning table, against the exact CPU cell on the same inputs (as test_cuda_forward_interpret.py does for
Pi0.5): the GPU weight spec and its unpacking, the device buffers, the Triton attention backend (the state row's own
site and key bias included), the calibration twin and the FP8 context all run on CPU tensors.
The fp8 case runs the default fp8 build (vision tower in BF16, models/pi0/precision.py; the all-FP8
build's bar is test_pi0_fp8_precision_interpret.py's). Bars: the precision ladder's (BF16 cos >= 0.999, FP8 >= 0.995; worst of 2 observations, float64 cosine).
"""
import pytest

from _interpreter import (IN_CHILD, counting_kernels, patch_interpreter_float_conversion, run_child,
                          stream_stand_ins)

if not IN_CHILD:
    def test_pi0_gpu_forward_under_the_interpreter():
        run_child(__file__)

else:
    from flash_rt.frontends.torch._pi0_cuda import device_buffers, pi0_gpu_dims, state_keys
    from flash_rt.frontends.torch.pi0_hopper import Pi0TorchFrontendHopper
    from flash_rt.frontends.torch.pi0_rtx import Pi0TorchFrontendRtx
    from flash_rt.frontends.torch.pi0_thor import Pi0TorchFrontendThor
    from flash_rt.models.pi0.precision import DEFAULT_BF16_BLOCKS

    from _pi0_micro import VIEWS, cpu_policy, micro_ckpt, rtc_cpu_policy, worst_cosine  # noqa: F401 (fixtures)

    assert patch_interpreter_float_conversion(), "this Triton's interpreter cannot narrow floats like the GPU"
    CELLS = {c.hardware: c for c in (Pi0TorchFrontendHopper, Pi0TorchFrontendThor, Pi0TorchFrontendRtx)}

    # every target's FP8 path (its tiles), the BF16 rung once (~15 s a case under the interpreter)
    @pytest.mark.parametrize("hardware, precision, bar", [("hopper", "bf16", 0.999), ("hopper", "fp8", 0.995),
                                                          ("thor", "fp8", 0.995), ("rtx_sm120", "fp8", 0.995)])
    def test_pi0_gpu_forward_matches_the_exact_cpu_path(micro_ckpt, cpu_policy, hardware, precision, bar):
        worst, _ = worst_cosine(micro_ckpt, cpu_policy, CELLS[hardware], precision, DEFAULT_BF16_BLOCKS)
        print(f"pi0 {hardware} {precision}: worst cos {worst:.6f}")
        assert worst >= bar, (hardware, precision, worst)

    @pytest.mark.parametrize("precision, bar", [("bf16", 0.999), ("fp8", 0.995)])
    def test_pi0_gpu_forward_with_realtime_chunking(micro_ckpt, rtc_cpu_policy, precision, bar):
        """The inpainting blend after every flow step's update (action_end): frozen rows exactly the model-space
        prefix, the chunk as the exact CPU cell samples it under the same constraint."""
        worst, _ = worst_cosine(micro_ckpt, rtc_cpu_policy, CELLS["hopper"], precision, DEFAULT_BF16_BLOCKS, n_obs=1,
                                frozen=3)
        print(f"pi0 hopper {precision} rtc: worst cos {worst:.6f}")
        assert worst >= bar, (precision, worst)

    def test_the_expert_o_and_down_run_as_split_k_partials(micro_ckpt, cpu_policy):
        """Pi0's expert o / down through the Triton split-K GEMM (as Pi0.5's; they were cuBLASLt GEMMs breaking the
        PDL chain twice a layer), the partials summed by the next add_rms_norm: split-K tiles the micro shapes fit
        (block_k 16: K = 128 and 64 over 4 splits), the all-FP8 build, every o / down of both passes counted."""
        cell = CELLS["hopper"]
        tuning = cell.tuning.with_gemm_overrides({"splitk": {"block_k": 16}})
        calls = []
        fused = counting_kernels("fp8_gemm_splitk", calls)
        worst, _ = worst_cosine(micro_ckpt, cpu_policy, cell, "fp8", (), n_obs=1, tuning=tuning, fused=fused)
        cfg = cpu_policy.config
        L, S, W = cfg.layers, cfg.action_horizon, cfg.ex_width
        # the state pass: o and down of layers 0..L-2 (its last layer stops after K/V); every step: 2 per layer
        want = [(4, 1, W)] * 2 * (L - 1) + [(4, S, W)] * 2 * L * cfg.num_steps
        assert sorted(calls) == sorted(want), calls
        print(f"pi0 hopper fp8, split-K o/down: worst cos {worst:.6f}")
        assert worst >= 0.995, worst

    def test_the_state_pass_and_step_0_beside_the_prefix_compute_the_same_chunk(micro_ckpt, cpu_policy, monkeypatch):
        """overlap_first_step's schedule (prefix_with_state_and_first_step): the same kernels on the same buffers in
        another order, so the same bits. Streams and events cannot exist on the CPU, so here they are stand-ins and
        the streams' contexts no-ops: what is checked is that the interleaved schedule runs every layer of the
        state pass and of flow step 0 in dependency order (a wrong order reads K/V rows not yet written); the GPU
        suite checks the two real streams (test/gpu/test_pi0_gpu.py)."""
        cell, cfg = CELLS["hopper"], cpu_policy.config
        runs = {}
        for name, overlap in (("serial", None), ("overlap", stream_stand_ins(monkeypatch, cfg.layers))):
            runs[name] = []
            worst, _ = worst_cosine(micro_ckpt, cpu_policy, cell, "fp8", DEFAULT_BF16_BLOCKS, n_obs=1,
                                    overlap=overlap, chunks=runs[name])
            assert worst >= 0.995, (name, worst)
        assert (runs["serial"][0] == runs["overlap"][0]).all()

    def test_the_state_row_does_not_see_the_actions(micro_ckpt, cpu_policy):
        """The state site's bias: prefix padding, 0 for itself, masked over the action rows and the tail."""
        cfg = cpu_policy.config
        d = pi0_gpu_dims(cfg, VIEWS)
        b = device_buffers(cfg, d, 1, "cpu")
        P = d.prefix_len
        assert b["st_bias"].shape[0] == state_keys(d) and (b["st_bias"][P + 1:] < -1e38).all()
        assert (b["dec_bias"][P:P + 1 + d.horizon] == 0).all() and (b["dec_bias"][P + 1 + d.horizon:] < -1e38).all()
