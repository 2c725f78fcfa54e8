"""flash_rt kernel catalogue: pure functions that write into preallocated ``out=`` tensors.

Two implementations with identical names and signatures:

* ``flash_rt.kernels.reference`` -- torch twins: the oracle of every GPU kernel and the CPU pipeline's
  kernels (exact in fp32). Never imports triton.
* ``flash_rt.kernels.triton`` -- Triton (sm90) kernels; importable only where triton is installed.
  (This package does not import either; pipelines import the one for their hardware.)

Why these fusions: inside a CUDA graph a tiny kernel still costs ~1 us of GPU time
(``reference/h100_roofline.md``); a Pi0.5 inference has ~2,000 elementwise/norm sites, i.e. ~2 ms of
pure launch floor if each op is its own kernel. Each entry below is *one* launch per model site.

name                     fuses                                                  model site
-----------------------  -----------------------------------------------------  -----------------------------------
rms_norm                 RMS stats + (1+w) [+ e4m3 quant]                       Gemma layer-0 input norm
add_rms_norm             residual += y, RMS, (1+w) [+ quant]                    Gemma post-attn norm; MLP residual +
                                                                                next layer's input norm; final norm
layer_norm               LN stats + w, b [+ quant]                              SigLIP layer-0 LN1, post_layernorm
add_layer_norm           residual += y, LN [+ quant]                            SigLIP LN2; fc2 residual + next LN1
ada_rms_norm             RMS * (1+scale) + shift [+ quant]                      expert layer-0 input norm
gated_add_ada_rms_norm   residual += y*gate, adaRMS [+ quant]                   expert post-attn norm; MLP gated
                                                                                residual + next input norm; final norm
geglu                    gelu_tanh(gate) * up [+ quant]                         Gemma / expert MLP, before down proj
gelu_tanh                tanh-GELU [+ quant]                                    SigLIP fc1 output, before fc2
quantize_fp8             x * RN(1/s), clamp +-448, e4m3 (RNE)                   where no producer quantizes
mha_attention            full MHA on qkv-row views [+ quant]                    SigLIP attention (triton only)
rope_qkv_split           QKV split + RoPE(q, k) + head-major/KV-cache write     every Gemma / expert attention layer
time_embedding           fp64 sinusoid (sin | cos)                              expert time conditioning
flow_update              x += dt * (v + bias)                                   Euler step, 10x per inference
flow_inpaint             x = w * (t*eps + (1-t)*target) + (1-w) * x, row-wise   real-time chunking's blend after an
                                                                                Euler step (unfused seam only)
flow_boundary            final adaRMS, x_t += dt*(W_out h + b), x_t @ W_in + b,   the seam between two expert flow
                         next layer-0 adaRMS [+ quant], one program per row      steps (9x per inference)
fp8_gemm_geglu,          e4m3 GEMMs for M <= 64 with their epilogue (GeGLU;      the expert's qkv, gate+up, o / down
fp8_gemm_rope_qkv,       RoPE + KV write; split-K partials the next norm sums)  (production FP8)
fp8_gemm_splitk
amax_update              slot = max(slot, max|x|) (atomic, no sync)             FP8 calibration twins
uint8_to_model           u8 HWC -> [-1, 1] CHW                                  SigLIP input upload, every tick
key_padding_bias         pad mask -> 0 / -2.3819763e38 additive bias            attention bias from the device mask
prefix_positions         cumsum(mask)-1 clamped [+ suffix positions]            RoPE positions from the device mask

Exact signatures (``out``/``out_scale`` keyword-only; ``out_scale`` a device fp32 tensor [1], then
``out`` is float8_e4m3fn and holds clamp(y / out_scale, -448, 448) in e4m3):

    rms_norm(x, weight=None, eps=1e-6, *, out, out_scale=None)
    add_rms_norm(residual, y, weight=None, eps=1e-6, *, out, out_scale=None)
    layer_norm(x, weight, bias, eps=1e-6, *, out, out_scale=None)
    add_layer_norm(residual, y, weight, bias, eps=1e-6, *, out, out_scale=None)
    ada_rms_norm(x, mod_scale, mod_shift, eps=1e-6, *, out, out_scale=None)
    gated_add_ada_rms_norm(residual, y, gate, mod_scale, mod_shift, eps=1e-6, *, out, out_scale=None)
    geglu(gu, *, out, out_scale=None)
    gelu_tanh(x, *, out, out_scale=None)
    quantize_fp8(x, scale, *, out)
    rope_qkv_split(qkv, positions, *, q_out, k_out, v_out, theta=10000.0)
    time_embedding(t, dim, min_period=4e-3, max_period=4.0, *, out)
    flow_update(x, v, bias, dt, *, out=None)
    flow_inpaint(x, eps, target, w, w1, t)
    flow_boundary(x_t, residual, y, gate, mod_scale, mod_shift, w_out, b_out, dt, eps=1e-6, *, w_in=None,
                  b_in=None, next_scale=None, next_shift=None, out=None, out_scale=None, inpaint=None)
    fp8_gemm_geglu(x, x_scale, w, w_scale, *, out, out_scale=None, cfg)
    fp8_gemm_rope_qkv(x, x_scale, w, w_scale, positions, *, q_out, k_out, v_out, theta=10000.0, cfg)
    fp8_gemm_splitk(x, x_scale, w, w_scale, *, out_partials, cfg)
    amax_update(x, slot)
    uint8_to_model(img, *, out)
    key_padding_bias(mask, *, out)
    prefix_positions(mask, *, out, suffix_out=None)

Naming grammar, semantics and the fusions we chose not to do: ``docs/kernel_fusion.md``.
"""
