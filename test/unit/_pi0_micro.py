"""The micro Pi0 on its shared GPU forward under Triton's interpreter, against the exact CPU cell: one loop for the
interpreter tests that need it (test_pi0_cuda_forward_interpret.py per target and precision,
test_pi0_fp8_precision_interpret.py per bf16_blocks build). Import it only in the interpreter child
(TRITON_INTERPRET=1; _interpreter.run_child)."""
import dataclasses

import numpy as np
import pytest
import torch

import flash_rt
from _interpreter import cpu_observation, host_inputs
from flash_rt.frontends.torch._pi0_cuda import build_weights, device_buffers, pi0_gpu_dims, state_keys, unpack_weights
from flash_rt.kernels import triton as kernels
from flash_rt.models.pi0 import cuda_forward
from flash_rt.models.pi0.attention_sites import pi0_attention_spec
from flash_rt.models.pi0.precision import Bf16Blocks
from flash_rt.models.pi05.oracle import cosine64
from flash_rt.runtime.attention import TritonAttnBackend
from flash_rt.runtime.fp8_scales import ActivationScales
from flash_rt.runtime.quant import Bf16Context, CalibContext, Fp8Context
from flash_rt.testing import TINY_STATE_DIM
from flash_rt.testing.pi0_checkpoint import TINY_PI0_CONFIG, build_tiny_pi0_checkpoint

MICRO = dataclasses.replace(TINY_PI0_CONFIG, num_patches=16, max_token_len=48, num_steps=2)
VIEWS = 1


@pytest.fixture(scope="module")
def micro_ckpt(tmp_path_factory):
    return build_tiny_pi0_checkpoint(tmp_path_factory.mktemp("micro_pi0"), layout="openpi", cfg=MICRO)


@pytest.fixture(scope="module")
def cpu_policy(micro_ckpt):
    """The exact CPU cell on the micro checkpoint: the reference and the host buffers the GPU forward reads."""
    return flash_rt.load_model(micro_ckpt, config="pi0", hardware="cpu", num_views=VIEWS, num_steps=MICRO.num_steps)


@pytest.fixture(scope="module")
def rtc_cpu_policy(micro_ckpt):
    """The exact CPU cell with real-time chunking (and a delta mask, so the prefix's way to model space is real)."""
    return flash_rt.load_model(micro_ckpt, config="pi0", hardware="cpu", num_views=VIEWS, num_steps=MICRO.num_steps,
                               realtime_chunking=True, action_delta_mask=[3, -1])


def worst_cosine(ckpt, cpu_policy, cell, precision: str, blocks: tuple = (), n_obs: int = 2, tuning=None,
                 fused=kernels, overlap=None, chunks=None, frozen=None):
    """(worst float64 cosine of the GPU forward's model-space chunk vs the CPU cell's over n_obs observations, the
    GPU weights). fp8: calibrated on each observation (the first-tick rule), then the production context with the
    blocks of `blocks` in BF16. tuning: the cell's table, or an override (tiles the micro shapes fit); fused: the
    fused-GEMM kernels the production context calls; overlap: the forward's overlap argument (production only);
    chunks: a list the model-space chunks are appended to; frozen: real-time chunking (cpu_policy loaded with it):
    each observation follows a chunk whose rows 2.. (+ 0.05) are the prefix, `frozen` rows of it fixed, and the
    GPU chunk's frozen rows must be the model-space prefix exactly."""
    tuning = tuning or cell.tuning
    cfg = cpu_policy.config
    w, ws, _, _ = unpack_weights(build_weights(ckpt, cfg, precision, "cpu", blocks), cfg, precision, "cpu")
    rtc = frozen is not None
    d = pi0_gpu_dims(cfg, VIEWS, realtime_chunking=rtc)
    b = device_buffers(cfg, d, tuning.split_k, "cpu")
    h = cpu_policy.frontend.host
    state = np.zeros(cfg.state_dim, np.float32)
    b.update(host_inputs(h), state=torch.from_numpy(state))
    attn = TritonAttnBackend(pi0_attention_spec(cfg, d, state_keys(d)), "cpu", tuning)
    scales = ActivationScales(cuda_forward.quant_sites(d), "cpu")
    scratch = torch.empty(max(v.numel() for v in w.values()), dtype=torch.bfloat16)
    rng = np.random.default_rng(7)
    worst = 1.0
    for _ in range(n_obs):
        cpu_observation(cpu_policy, rng, VIEWS, TINY_STATE_DIM, frozen)   # fills the host buffers b reads
        h.write_model_state(state)
        want = h.model_out.copy()
        if precision == "fp8":
            scales.amax.zero_()
            cuda_forward.forward(w, b, d, attn, CalibContext(w, ws, scales.site_amax, kernels.amax_update, scratch))
            scales.set_from_amax()
            q = Fp8Context(w, ws, scales.site_scale, tuning=tuning, fast_accum=False, fused=fused,
                           fused_ops=("rope_qkv", "geglu", "splitk"),
                           transposed=cell.option_defaults["transposed_gemms"], bf16_sites=Bf16Blocks(blocks))
        else:
            q = Bf16Context(w)
        cuda_forward.forward(w, b, d, attn, q, overlap)
        got = b["x_t"].numpy()
        if rtc:   # W = 1 rows are the model-space prefix exactly (1 * target + 0 * x at t = 0)
            np.testing.assert_array_equal(got[:frozen], h.rtc.target[:frozen])
        if chunks is not None:
            chunks.append(got.copy())
        assert np.isfinite(got).all()
        worst = min(worst, cosine64(got, want))
    return worst, w
