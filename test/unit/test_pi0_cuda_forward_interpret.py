"""Pi0's shared GPU forward (models/pi0/cuda_forward.py) under Triton's CPU interpreter, on a micro Pi0 with each
target's tuning table, against the exact CPU cell on the same inputs (as test_cuda_forward_interpret.py does for
Pi0.5): the GPU weight spec and its unpacking, the device buffers, the Triton attention backend (the state row's own
site and key bias included), the calibration twin and the FP8 context all run on CPU tensors.
The fp8 case runs the default fp8 build (vision tower in BF16, models/pi0/precision.py; the all-FP8
build's bar is test_pi0_fp8_precision_interpret.py's). Bars: the precision ladder's (BF16 cos >= 0.999, FP8 >= 0.995; worst of 2 observations, float64 cosine).
"""
import pytest

from _interpreter import IN_CHILD, patch_interpreter_float_conversion, run_child

if not IN_CHILD:
    def test_pi0_gpu_forward_under_the_interpreter():
        run_child(__file__)

else:
    import dataclasses

    import numpy as np
    import torch

    import flash_rt
    from flash_rt.frontends.torch._pi0_cuda import (build_weights, device_buffers, pi0_gpu_dims, state_keys,
                                                    unpack_weights)
    from flash_rt.frontends.torch.pi0_hopper import Pi0TorchFrontendHopper
    from flash_rt.frontends.torch.pi0_rtx import Pi0TorchFrontendRtx
    from flash_rt.frontends.torch.pi0_thor import Pi0TorchFrontendThor
    from flash_rt.kernels import triton as kernels
    from flash_rt.models.pi0 import cuda_forward
    from flash_rt.models.pi0.attention_sites import pi0_attention_spec
    from flash_rt.models.pi0.precision import DEFAULT_BF16_BLOCKS, Bf16Blocks
    from flash_rt.models.pi05.oracle import cosine64
    from flash_rt.runtime.attention import TritonAttnBackend
    from flash_rt.runtime.fp8_scales import ActivationScales
    from flash_rt.runtime.quant import Bf16Context, CalibContext, Fp8Context
    from flash_rt.testing import TINY_STATE_DIM
    from flash_rt.testing.observations import random_observation
    from flash_rt.testing.pi0_checkpoint import TINY_PI0_CONFIG, build_tiny_pi0_checkpoint

    assert patch_interpreter_float_conversion(), "this Triton's interpreter cannot narrow floats like the GPU"
    CELLS = {c.hardware: c for c in (Pi0TorchFrontendHopper, Pi0TorchFrontendThor, Pi0TorchFrontendRtx)}
    MICRO = dataclasses.replace(TINY_PI0_CONFIG, num_patches=16, max_token_len=48, num_steps=2)
    VIEWS = 1

    @pytest.fixture(scope="module")
    def micro_ckpt(tmp_path_factory):
        return build_tiny_pi0_checkpoint(tmp_path_factory.mktemp("micro_pi0"), layout="openpi", cfg=MICRO)

    @pytest.fixture(scope="module")
    def cpu_policy(micro_ckpt):
        return flash_rt.load_model(micro_ckpt, config="pi0", hardware="cpu", num_views=VIEWS,
                                   num_steps=MICRO.num_steps)

    # every target's FP8 path (its tiles), the BF16 rung once (~15 s a case under the interpreter)
    @pytest.mark.parametrize("hardware, precision, bar", [("hopper", "bf16", 0.999), ("hopper", "fp8", 0.995),
                                                          ("thor", "fp8", 0.995), ("rtx_sm120", "fp8", 0.995)])
    def test_pi0_gpu_forward_matches_the_exact_cpu_path(micro_ckpt, cpu_policy, hardware, precision, bar):
        cell, cfg = CELLS[hardware], cpu_policy.config
        w, ws, _, dt = unpack_weights(build_weights(micro_ckpt, cfg, precision, "cpu"), cfg, precision, "cpu")
        d = pi0_gpu_dims(cfg, VIEWS)
        b = device_buffers(cfg, d, cell.tuning.split_k, "cpu")
        h = cpu_policy.frontend.host
        state = np.zeros(cfg.state_dim, np.float32)
        b.update(images_u8=torch.from_numpy(h.images), image_mask=torch.from_numpy(h.image_mask),
                 token_ids=torch.from_numpy(h.token_ids), token_mask=torch.from_numpy(h.token_mask),
                 noise=torch.from_numpy(h.noise), state=torch.from_numpy(state))
        attn = TritonAttnBackend(pi0_attention_spec(cfg, d, state_keys(d)), "cpu", cell.tuning)
        scales = ActivationScales(cuda_forward.quant_sites(d), "cpu")
        rng = np.random.default_rng(7)
        worst = 1.0
        for _ in range(2):
            images, st, prompt, noise = random_observation(rng, VIEWS, TINY_STATE_DIM, cfg.action_horizon)
            cpu_policy.predict(images, st, prompt, noise)        # fills the host buffers b reads
            h.write_model_state(state)
            want = h.model_out.copy()
            if precision == "fp8":   # calibrate on this observation (the first-tick rule), then run production
                scales.amax.zero_()
                scratch = torch.empty(max(v.numel() for v in w.values()), dtype=torch.bfloat16)
                cuda_forward.forward(w, b, d, attn, CalibContext(w, ws, scales.site_amax, kernels.amax_update,
                                                                  scratch), None)
                scales.set_from_amax()
                q = Fp8Context(w, ws, scales.site_scale, tuning=cell.tuning, fast_accum=False, fused=kernels,
                               fused_ops=("rope_qkv", "geglu", "splitk"),
                               transposed=cell.option_defaults["transposed_gemms"], bf16_sites=Bf16Blocks(DEFAULT_BF16_BLOCKS))
            else:
                q = Bf16Context(w)
            cuda_forward.forward(w, b, d, attn, q, None)
            got = b["x_t"].numpy()
            assert np.isfinite(got).all()
            worst = min(worst, cosine64(got, want))
        print(f"pi0 {hardware} {precision}: worst cos {worst:.6f}")
        assert worst >= bar, (hardware, precision, worst)

    def test_the_state_row_does_not_see_the_actions(micro_ckpt, cpu_policy):
        """The state site's bias: prefix padding, 0 for itself, masked over the action rows and the tail."""
        cfg = cpu_policy.config
        d = pi0_gpu_dims(cfg, VIEWS)
        b = device_buffers(cfg, d, 1, "cpu")
        P = d.prefix_len
        assert b["st_bias"].shape[0] == state_keys(d) and (b["st_bias"][P + 1:] < -1e38).all()
        assert (b["dec_bias"][P:P + 1 + d.horizon] == 0).all() and (b["dec_bias"][P + 1 + d.horizon:] < -1e38).all()
