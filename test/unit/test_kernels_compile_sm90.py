"""Every Triton kernel specialization the Hopper forward launches compiles for sm90, on a machine without a GPU.

Why: a kernel that does not compile (a dot shape the target rejects, a constexpr branch with a typo, shared memory
over the 227 KB an sm90 block may use) otherwise shows up only on the device, after minutes of start-up and
checkpoint building. The kernel wrappers are called here with CPU tensors of the full-size Pi0.5 shapes, with
programmatic dependent launch on and off. The launch is intercepted (its arguments recorded, nothing run), and
each recorded launch is compiled with `triton.compile` for a CUDA sm90 target. The compiler never needs the GPU.
Correctness is not checked here: the interpreter suite (test_kernels_interpret.py) and the GPU suite
(test/gpu) do that. What is checked in the PTX: griddepcontrol.wait in PDL builds, and no per-element correctly
rounded division or square root (measured slow, see the test).

Skipped where triton is missing (CI) and under TRITON_INTERPRET (no compiler behind the kernels there).
"""
import importlib.util
import os

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed (CI): the sm90 compile check needs it", allow_module_level=True)
if os.environ.get("TRITON_INTERPRET") == "1":
    pytest.skip("TRITON_INTERPRET=1: kernels are interpreted, not compiled", allow_module_level=True)

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction, mangle_type  # noqa: E402
from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: E402

import flash_rt.kernels.triton as T  # noqa: E402
from flash_rt.kernels.triton.attention import MqaWorkspace, mqa_attention  # noqa: E402
from flash_rt.kernels.triton.launch import programmatic_dependent_launch  # noqa: E402
from flash_rt.kernels.triton.mha import mha_attention  # noqa: E402
from flash_rt.kernels.triton.misc import LinearFlowWorkspace  # noqa: E402

F8, BF, F32 = torch.float8_e4m3fn, torch.bfloat16, torch.float32
SM90 = GPUTarget("cuda", 90, 32)
SMEM_LIMIT = 232448          # bytes of shared memory one sm90 block may use (227 KB)
_DTYPE = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", F8: "fp8e4nv",
          torch.int64: "i64", torch.int32: "i32", torch.uint8: "u8", torch.bool: "i1"}
_OPTIONS = ("num_warps", "num_stages", "launch_pdl")


def _record_launches(calls):
    """Run `calls` with every JITFunction launch recorded instead of run: [(fn, args, options, constexprs)]."""
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


def _compile(fn, args, kwargs):
    params = fn.params
    bound = dict(zip([p.name for p in params], args))
    options = {k: kwargs.pop(k) for k in list(kwargs) if k in _OPTIONS}
    bound.update(kwargs)
    sig, constexprs = {}, {}
    for p in params:
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
    return triton.compile(ASTSource(fn, sig, constexprs), target=SM90, options=options)


def _full_size_launches():
    """The kernels of one full-size forward's distinct sites (2 views, horizon 50): expert layer, prefix attention,
    norms, the flow update."""
    S, D, F, N, H, P = 50, 1024, 4096, 8, 256, 576
    L = P + 64

    def f8(*shape):
        return torch.zeros(*shape, dtype=F8)

    def one():
        return torch.ones(1, dtype=F32)

    def calls():
        # expert: fused qkv + RoPE + KV write, attention, split-K o, gated norm over partials, gate+up + GeGLU, down
        kc, vc = torch.zeros(1, L, H, dtype=BF), torch.zeros(1, L, H, dtype=BF)
        q = torch.zeros(N, S, H, dtype=BF)
        T.fp8_gemm_rope_qkv(f8(S, D), one(), f8((N + 2) * H, D), one(), torch.arange(S), q_out=q,
                            k_out=kc[:, P:P + S], v_out=vc[:, P:P + S])
        att8 = f8(S, N * H)
        mqa_attention(q, kc[0], vc[0], torch.zeros(L, dtype=BF), out=att8, ws=MqaWorkspace(N * S, L, H, "cpu"),
                      sm_scale=H ** -0.5, out_scale=one())
        parts = torch.zeros(4, S, D, dtype=F32)
        T.fp8_gemm_splitk(att8, one(), f8(D, N * H), one(), out_partials=parts)
        res, vec = torch.zeros(S, D, dtype=F32), torch.zeros(D, dtype=F32)
        T.gated_add_ada_rms_norm(res, parts, vec, vec, vec, 1e-6, out=f8(S, D), out_scale=one())
        T.fp8_gemm_geglu(f8(S, D), one(), f8(2 * F, D), one(), out=f8(S, F), out_scale=one())
        T.fp8_gemm_splitk(f8(S, F), one(), f8(D, F), one(), out_partials=parts)
        T.gated_add_ada_rms_norm(res, parts, vec, vec, vec, 1e-6, out=torch.zeros(S, D, dtype=F32))
        T.linear_flow_update(torch.zeros(S, 32, dtype=F32), torch.zeros(S, D, dtype=F32),
                             torch.zeros(D, 32, dtype=F32), torch.zeros(32, dtype=F32), 0.1,
                             ws=LinearFlowWorkspace(S, D, 32, "cpu"))
        # the seam between two flow steps: mid-inference (into the next step's FP8 layer-0 input) and the last
        wa = torch.zeros(32, D, dtype=F32)
        T.flow_boundary(torch.zeros(S, 32, dtype=F32), res, parts, vec, vec, vec, wa, torch.zeros(32, dtype=F32),
                        -0.1, w_in=wa, b_in=vec, next_scale=vec, next_shift=vec, out=f8(S, D), out_scale=one())
        T.flow_boundary(torch.zeros(S, 32, dtype=F32), res, parts, vec, vec, vec, wa, torch.zeros(32, dtype=F32),
                        -0.1)
        # prefix: attention over the padded prompt (many rows: no key split), its norm and RoPE
        qp = torch.zeros(N, P, H, dtype=BF)
        mqa_attention(qp, kc[0, :P], vc[0, :P], torch.zeros(P, dtype=BF), out=f8(P, N * H),
                      ws=MqaWorkspace(N * P, P, H, "cpu"), sm_scale=H ** -0.5, out_scale=one())
        T.add_rms_norm(torch.zeros(P, 2048, dtype=F32), torch.zeros(P, 2048, dtype=BF), None, 1e-6,
                       out=f8(P, 2048), out_scale=one())
        T.add_rms_norm(torch.zeros(P, 2048, dtype=F32), torch.zeros(2048, P, dtype=BF).t(), None, 1e-6,
                       out=f8(P, 2048), out_scale=one())       # y from a transposed prefix GEMM (row tiles)
        # SigLIP: attention on views of the qkv rows (2 views x 16 heads x 256 tokens x 72), FP8 out
        vq = torch.zeros(2, 256, 3, 16, 72, dtype=BF).permute(2, 0, 3, 1, 4)
        mha_attention(vq[0], vq[1], vq[2], out=f8(2, 256, 1152), sm_scale=72 ** -0.5, out_scale=one())
        T.rope_qkv_split(torch.zeros(P, (N + 2) * H, dtype=BF), torch.arange(P), q_out=qp, k_out=kc[:, :P],
                         v_out=vc[:, :P])
        T.geglu(torch.zeros(P, 2 * 16384, dtype=BF), out=f8(P, 16384), out_scale=one())
        T.geglu(torch.zeros(2 * 16384, P, dtype=BF).t(), out=f8(P, 16384), out_scale=one())   # transposed gu

    launches = []
    for pdl in (False, True):
        with programmatic_dependent_launch(pdl):
            launches += _record_launches(calls)
    return launches


LAUNCHES = _full_size_launches()


def test_every_recorded_launch_is_a_kernel_of_the_catalogue():
    names = {fn.__name__ for fn, _, _ in LAUNCHES}
    assert {"_gemm_rope_qkv_kernel", "_gemm_geglu_kernel", "_gemm_splitk_kernel", "_mqa_partial", "_mqa_merge",
            "_norm_row_kernel", "_linear_flow_kernel", "_mha_kernel", "_geglu_t_kernel",
            "_flow_boundary_kernel"} <= names, names


@pytest.mark.parametrize("i", range(len(LAUNCHES)),
                         ids=[f"{fn.__name__}-{'pdl' if kw.get('PDL') else 'plain'}-{i}"
                              for i, (fn, _, kw) in enumerate(LAUNCHES)])
def test_compiles_for_sm90(i):
    fn, args, kwargs = LAUNCHES[i]
    k = _compile(fn, args, dict(kwargs))
    assert "ptx" in k.asm and k.asm["ptx"], f"{fn.__name__}: no PTX"
    assert k.metadata.shared <= SMEM_LIMIT, f"{fn.__name__}: {k.metadata.shared} bytes of shared memory"
    if kwargs.get("PDL"):
        assert "griddepcontrol.wait" in k.asm["ptx"], f"{fn.__name__}: PDL build without griddepcontrol.wait"
    # correctly rounded division / square root are slow multi-instruction sequences: per element, div.rn cost
    # 1.3-2.4 us per gate+up GEMM call (kernels/triton/fp8_quant.py). One per thread (the scale's reciprocal)
    # is fine; more means an epilogue divides per element again.
    ptx = k.asm["ptx"]
    assert ptx.count("div.rn.f32") <= 1, f"{fn.__name__}: {ptx.count('div.rn.f32')} correctly rounded divisions"
    assert "sqrt.rn" not in ptx, f"{fn.__name__}: correctly rounded sqrt on the hot path"
