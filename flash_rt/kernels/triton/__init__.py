"""Triton (GPU) implementations of the flash_rt kernel catalogue.

Importable only where triton is installed (the GPU images); CI and the CPU pipeline use
``flash_rt.kernels.reference``, whose functions have the same names and signatures. Catalogue and
rationale: ``flash_rt/kernels/__init__.py`` and ``docs/kernel_fusion.md``.

Graph safety: launch configs are fixed rules of the shapes (no autotune), scales / dt are read from device
tensors inside the kernels, and nothing syncs with the host. Triton compiles a kernel on its first call for
each (dtypes, constexpr shape, alignment) specialization, so call every kernel once eagerly with the real
buffers (the warm-up replay every frontend does anyway) before ``torch.cuda.graph`` capture.
"""
import triton  # noqa: F401  (fail here, clearly, where triton is missing)

from .activations import geglu, gelu_tanh, quantize_fp8
from .flow_boundary import flow_boundary, flow_inpaint
from .gemm_fused import fp8_gemm_geglu, fp8_gemm_rope_qkv, fp8_gemm_splitk, fused_gemm_supported
from .misc import (amax_update, flow_update, key_padding_bias, linear_flow_update, prefix_positions, time_embedding,
                   uint8_to_model)
from .norms import add_layer_norm, add_rms_norm, ada_rms_norm, gated_add_ada_rms_norm, layer_norm, rms_norm
from .rope import rope_qkv_split

__all__ = [
    "rms_norm", "add_rms_norm", "layer_norm", "add_layer_norm", "ada_rms_norm", "gated_add_ada_rms_norm",
    "geglu", "gelu_tanh", "quantize_fp8", "rope_qkv_split", "time_embedding", "flow_update", "amax_update",
    "uint8_to_model", "key_padding_bias", "prefix_positions", "fp8_gemm_geglu", "fp8_gemm_rope_qkv",
    "fp8_gemm_splitk", "linear_flow_update", "flow_boundary", "flow_inpaint",
]
