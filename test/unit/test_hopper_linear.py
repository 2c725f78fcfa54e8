"""The Hopper GEMM helper's transposed problem (shared_primitives.linear into a transposed view) and the FP8
context's choice of orientation per weight (transposed_gemms). CPU: the non-FP8 branch runs torch.mm, the same
orientation logic as the FP8 branch (the GPU suite runs the FP8 one in the full model)."""
import pytest
import torch

from flash_rt.hardware.hopper.shared_primitives import Bf16Context, Fp8Context, linear


def _xw(m=48, k=64, n=32):
    g = torch.Generator().manual_seed(0)
    return torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)


def test_linear_into_a_transposed_view_computes_w_at_x_t():
    x, w = _xw()
    out_t = torch.full((32, 48), float("nan"))
    y = linear(x, w, out_t.t())
    assert y.data_ptr() == out_t.data_ptr() and y.shape == (48, 32) and y.stride() == (1, 48)
    torch.testing.assert_close(y, x @ w.t())


def test_linear_refuses_a_bias_with_a_transposed_out():
    x, w = _xw()
    with pytest.raises(ValueError, match="transposed out takes no bias"):
        linear(x, w, torch.empty(32, 48).t(), bias=torch.zeros(32))


def test_fp8_context_runs_only_the_named_weights_transposed():
    x, w = _xw()
    q = Fp8Context({"llm.0.down_w": w, "llm.0.o_w": w}, {}, {}, transposed=("down_w",))
    out, out_t = torch.empty(48, 32), torch.empty(32, 48)
    y = q.linear_transposable(x, "s", "llm.0.down_w", out, out_t)
    assert y.data_ptr() == out_t.data_ptr() and y.stride() == (1, 48)
    torch.testing.assert_close(y, x @ w.t())
    y = q.linear_transposable(x, "s", "llm.0.o_w", out, out_t)
    assert y is out
    torch.testing.assert_close(y, x @ w.t())


def test_twin_contexts_keep_the_row_major_result():
    x, w = _xw()
    out, out_t = torch.empty(48, 32), torch.empty(32, 48)
    assert Bf16Context({"llm.0.down_w": w}).linear_transposable(x, "s", "llm.0.down_w", out, out_t) is out
