"""The shared GPU runtime on the CPU: the GEMM helper's transposed problem (runtime/quant.linear into a transposed
view) and the FP8 context's choice of orientation per weight (transposed_gemms), the tuning tables' checks, the
memory check's message, the option checks, and what a GPU cell says on a machine without CUDA. The non-FP8
branch of `linear` runs torch.mm, the same orientation logic as the FP8 branch (the GPU suite runs that one)."""
import dataclasses

import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.errors import HardwareError, InputError
from flash_rt.hardware.hopper.tuning import TUNING as HOPPER
from flash_rt.hardware.rtx.tuning import TUNING as RTX
from flash_rt.hardware.rtx_sm89.tuning import TUNING as ADA
from flash_rt.hardware.thor.tuning import TUNING as THOR
from flash_rt.runtime import options
from flash_rt.runtime.memory import check_free_memory
from flash_rt.runtime.quant import Bf16Context, Fp8Context, linear


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
    q = Fp8Context({"llm.0.down_w": w, "llm.0.o_w": w}, {}, {}, tuning=HOPPER, transposed=("down_w",))
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


# -- tuning tables -----------------------------------------------------------------------------------------------
def test_every_target_table_passes_its_own_check_and_names_its_target():
    for t, hw, arch in ((HOPPER, "hopper", 90), (THOR, "thor", 110), (RTX, "rtx_sm120", 120), (ADA, "rtx_sm89", 89)):
        assert (t.hardware, t.arch) == (hw, arch)
        assert t.check() is t
        assert all(a.target_programs == t.sm_count for a in t.attention.values())
    assert THOR.unified_memory and not HOPPER.unified_memory and not RTX.unified_memory
    assert THOR.min_triton >= (3, 7)
    # Ada has neither programmatic dependent launch nor TMA: its table says so, and a TMA tile without them is refused
    assert not ADA.pdl and not any(c.tma for c in ADA.gemm.values()) and ADA.smem_per_block == 101376
    with pytest.raises(InputError, match="TMA tiles need"):
        dataclasses.replace(HOPPER, pdl=False).check()


def test_an_override_that_cannot_fit_the_target_is_refused_before_anything_compiles():
    """sm120 allows 101,376 bytes of shared memory per block: Hopper's 4-stage gate+up tiles fit there only
    just, a 5-stage one does not; on Hopper (227 KB) it is fine."""
    big = {"geglu": {"stages": 5}}
    assert HOPPER.with_gemm_overrides(big).gemm["geglu"].stages == 5
    with pytest.raises(InputError, match=r"geglu tiles .* shared memory per block; rtx_sm120 allows 101376"):
        RTX.with_gemm_overrides(big)
    with pytest.raises(InputError, match="unknown GEMM 'gelu'"):
        HOPPER.with_gemm_overrides({"gelu": {}})
    with pytest.raises(InputError, match="unknown FusedGemmConfig fields"):
        HOPPER.with_gemm_overrides({"geglu": {"bn": 16}})
    with pytest.raises(InputError, match="attention tiles must be given"):
        dataclasses.replace(HOPPER, attention={"decode": HOPPER.attention["decode"]}).check()


def test_attention_tiles_are_chosen_by_the_site_shape():
    assert HOPPER.attention_tiles(8 * 50) is HOPPER.attention["decode"]
    assert HOPPER.attention_tiles(8 * 720) is HOPPER.attention["prefill"]


# -- memory and options ------------------------------------------------------------------------------------------
def test_memory_check_says_what_is_needed_and_what_is_free():
    check_free_memory(4_000_000_000, 5_000_000_000, 8_000_000_000, hardware="hopper", unified=False)
    with pytest.raises(HardwareError, match=r"thor.*unified.*needs about 6\.0 GB, 2\.0 GB of 128\.0 GB are free"):
        check_free_memory(6_000_000_000, 2_000_000_000, 128_000_000_000, hardware="thor", unified=True)
    with pytest.raises(HardwareError, match="nvidia-smi"):
        check_free_memory(6_000_000_000, 2_000_000_000, 32_000_000_000, hardware="rtx_sm120", unified=False)


def test_option_checks_name_the_option_and_what_it_takes():
    assert options.fused_ops(True) == options.FUSED_OPS and options.fused_ops(False) == ()
    with pytest.raises(InputError, match="fused_expert_gemms: unknown"):
        options.fused_ops(("geglu", "gelu"))
    with pytest.raises(InputError, match="transposed_gemms"):
        options.weight_suffixes("transposed_gemms", "down_w", {"down_w"})
    with pytest.raises(InputError, match="fast_accum"):
        options.fast_accum((1,))
    assert options.fast_accum(("gu_w",)) == ("gu_w",)


@pytest.mark.parametrize("hardware", ["hopper", "thor", "rtx_sm120", "rtx_sm89"])
def test_gpu_cells_on_a_machine_without_cuda_say_so_and_point_at_the_cpu(tiny_openpi, hardware):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the GPU suite loads these cells for real")
    with pytest.raises(HardwareError, match=rf"hardware='{hardware}'.*needs a CUDA GPU.*hardware='cpu'"):
        flash_rt.load_model(tiny_openpi, hardware=hardware)


def test_typed_dims_align_key_lengths_for_the_gpu_only():
    from flash_rt.models.pi05.config import Pi05Config
    from flash_rt.models.pi05.dims import Pi05Dims
    cpu = Pi05Dims.of(Pi05Config(), 2, 10, -0.1)
    gpu = Pi05Dims.of(Pi05Config(), 2, 10, -0.1, align=16)
    assert (cpu.prefix_len, cpu.kv_len) == (712, 762) and (gpu.prefix_len, gpu.kv_len) == (720, 784)
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.horizon = 10
    assert np.isclose(gpu.embed_scale, 2048 ** 0.5)


@pytest.mark.parametrize("views, want", [(1, 64), (2, 64), (3, 128)])
def test_siglip_row_tiles_follow_the_target_program_count(views, want):
    """mha_block_m: 64-row tiles unless views x 16 heads x 4 tiles exceed the target's SM count (132 on Hopper),
    then 128; the backend applies it with the table's SM count, and an explicit attention_tiles override wins."""
    pytest.importorskip("triton")
    from flash_rt.kernels.triton.mha import mha_block_m
    from flash_rt.models.pi05.attention_sites import pi05_attention_spec
    from flash_rt.models.pi05.config import Pi05Config
    from flash_rt.models.pi05.dims import Pi05Dims
    from flash_rt.runtime.attention import TritonAttnBackend
    assert mha_block_m(views, 16, 256, HOPPER.sm_count) == want
    assert mha_block_m(1, 16, 256, THOR.sm_count) == 128       # Thor's 20 SMs: 64 programs would be 3+ waves
    cfg = dataclasses.replace(Pi05Config(), layers=1, vis_layers=1)
    spec = pi05_attention_spec(cfg, Pi05Dims.of(cfg, views, 10, -0.1, align=16))
    be = TritonAttnBackend(spec, "cpu", HOPPER)
    assert be.mha["siglip"].block_m is None and be.sm_count == 132
    be = TritonAttnBackend(spec, "cpu", HOPPER, {"siglip": {"block_m": 32, "num_warps": 4}})
    assert (be.mha["siglip"].block_m, be.mha["siglip"].num_warps) == (32, 4)
    with pytest.raises(InputError, match=r"attention_tiles\['siglip'\]: unknown MhaTiles fields \['target_programs'\]"):
        TritonAttnBackend(spec, "cpu", HOPPER, {"siglip": {"target_programs": 4}})
    with pytest.raises(InputError, match="unknown sites"):
        TritonAttnBackend(spec, "cpu", HOPPER, {"decoderr": {}})
    # the decoder's bound on keys a split: whole key blocks or none, refused by name otherwise
    be = TritonAttnBackend(spec, "cpu", HOPPER, {"decoder": {"max_split_keys": None}})
    assert be.ws["decoder"].tiles.max_split_keys is None
    for bad in (100, 0, -64, 128.0, True):
        with pytest.raises(InputError, match=r"attention_tiles\['decoder'\]: max_split_keys must be None or a "
                                              r"positive multiple of block_n \(64\)"):
            TritonAttnBackend(spec, "cpu", HOPPER, {"decoder": {"max_split_keys": bad}})


@pytest.mark.parametrize("hardware", ["hopper", "thor", "rtx_sm120", "rtx_sm89"])
@pytest.mark.parametrize("precision", ["fp8", "bf16"])
def test_every_cell_has_a_valid_weight_cache_tag(hardware, precision):
    """The tag is part of the cache file's name: rtx_sm120's underscore was refused there and every rtx_sm120 load
    failed (first device run of the cell)."""
    from flash_rt.executors.weight_cache import cache_filename
    from flash_rt.frontends.torch._pi05_cuda_storage import weight_spec_tag
    tag = weight_spec_tag(hardware, precision)
    assert cache_filename({"ckpt_hash": "ab" * 32, "spec_tag": tag, "num_views": 0})
    assert len({weight_spec_tag(h, precision) for h in ("hopper", "thor", "rtx_sm120", "rtx_sm89")}) == 4
