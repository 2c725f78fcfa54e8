"""The Triton MQA flash-decoding kernel vs its torch twin (kernels/reference.py::mqa_attention)."""
import pytest
import torch

from flash_rt.hardware.hopper.tuning import TUNING as HOPPER
from flash_rt.kernels import reference as R

pytestmark = pytest.mark.gpu
MASK = -2.3819763e38
MHA = {"block_n": HOPPER.full_attention.block_n, "num_warps": HOPPER.full_attention.num_warps,
       "num_stages": HOPPER.full_attention.num_stages}   # Hopper's SigLIP tiles but the row tile


def _check_against_twin(out, want, quant):
    o, w = out.float(), want.float()
    assert torch.isfinite(o).all()
    if quant:  # at most one e4m3 step (12.5 % relative) where bf16 rounding of p moved the value
        assert ((o - w).abs() <= 0.13 * w.abs() + 1e-2 * w.abs().max()).all()
    else:
        assert (o - w).abs().max().item() <= 2e-2 * max(1.0, w.abs().max().item())


@pytest.mark.parametrize("n, t, lk, h", [(8, 50, 640, 256), (8, 576, 576, 256), (8, 10, 848, 16), (8, 1, 64, 32)])
@pytest.mark.parametrize("quant", [False, True])
def test_mqa_attention_matches_twin(n, t, lk, h, quant):
    from flash_rt.kernels.triton.attention import MqaWorkspace, mqa_attention
    g = torch.Generator(device="cuda").manual_seed(n * t + lk)
    q = torch.randn(n, t, h, device="cuda", generator=g).bfloat16()
    cache = torch.randn(2, lk + 32, h, device="cuda", generator=g).bfloat16()  # strided slices of a cache
    k, v = cache[0, :lk], cache[1, :lk]
    bias = torch.zeros(lk, device="cuda", dtype=torch.bfloat16)
    bias[torch.randperm(lk, generator=torch.Generator().manual_seed(1))[: lk // 3].cuda()] = MASK
    ws = MqaWorkspace(n * t, lk, h, "cuda", HOPPER.attention_tiles(n * t))
    dt = torch.float8_e4m3fn if quant else torch.bfloat16
    scale = torch.full((64,), 0.01, device="cuda")[:1] if quant else None
    out = torch.full((t, n * h), float("nan"), device="cuda").to(dt)
    want = torch.empty_like(out)
    mqa_attention(q, k, v, bias, out=out, ws=ws, sm_scale=h ** -0.5, out_scale=scale)
    R.mqa_attention(q, k, v, bias, out=want, sm_scale=h ** -0.5, out_scale=scale)
    _check_against_twin(out, want, quant)


def test_mqa_attention_graph_replay_equals_eager():
    from flash_rt.kernels.triton.attention import MqaWorkspace, mqa_attention
    n, t, lk, h = 8, 50, 640, 256
    q = torch.randn(n, t, h, device="cuda").bfloat16()
    k = torch.randn(lk, h, device="cuda").bfloat16()
    v = torch.randn(lk, h, device="cuda").bfloat16()
    ws = MqaWorkspace(n * t, lk, h, "cuda", HOPPER.attention_tiles(n * t))
    out = torch.empty(t, n * h, device="cuda", dtype=torch.bfloat16)
    mqa_attention(q, k, v, None, out=out, ws=ws, sm_scale=0.0625)
    eager = out.clone()
    out.zero_()
    s = torch.cuda.Stream()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        mqa_attention(q, k, v, None, out=out, ws=ws, sm_scale=0.0625)
    g.replay()
    torch.cuda.synchronize()
    assert torch.equal(out, eager)



@pytest.mark.parametrize("b, n, t, hd", [(2, 16, 256, 72), (3, 16, 256, 72), (1, 4, 40, 16), (2, 2, 100, 64)])
@pytest.mark.parametrize("quant", [False, True])
@pytest.mark.parametrize("block_m", [64, 128])
def test_mha_attention_matches_twin(b, n, t, hd, quant, block_m):
    """The SigLIP kernel on q/k/v views of one qkv buffer (as the model passes them) vs its twin."""
    from flash_rt.kernels.triton.mha import mha_attention
    g = torch.Generator(device="cuda").manual_seed(b * t + hd)
    qkv = (torch.randn(b, t, 3 * n * hd, device="cuda", generator=g) * 2).bfloat16()
    q, k, v = qkv.view(b, t, 3, n, hd).permute(2, 0, 3, 1, 4)
    dt = torch.float8_e4m3fn if quant else torch.bfloat16
    scale = torch.full((64,), 0.01, device="cuda")[:1] if quant else None
    out = torch.full((b, t, n * hd), float("nan"), device="cuda").to(dt)
    want = torch.empty_like(out)
    mha_attention(q, k, v, out=out, sm_scale=hd ** -0.5, out_scale=scale, block_m=block_m, **MHA)
    R.mha_attention(q, k, v, out=want, sm_scale=hd ** -0.5, out_scale=scale)
    _check_against_twin(out, want, quant)


def test_mha_attention_refuses_bad_shapes():
    from flash_rt.kernels.triton.mha import mha_attention
    q = torch.zeros(1, 2, 32, 16, device="cuda", dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="out must be"):
        mha_attention(q, q, q, out=torch.zeros(1, 32, 16, device="cuda", dtype=torch.bfloat16), sm_scale=0.25,
                      block_m=64, **MHA)
    with pytest.raises(ValueError, match="out_scale"):
        mha_attention(q, q, q, out=torch.zeros(1, 32, 32, device="cuda", dtype=torch.float8_e4m3fn), sm_scale=0.25,
                      block_m=64, **MHA)
    with pytest.raises(ValueError, match="alike"):
        mha_attention(q, q[:, :1], q, out=torch.zeros(1, 32, 32, device="cuda", dtype=torch.bfloat16), sm_scale=0.25,
                      block_m=64, **MHA)
