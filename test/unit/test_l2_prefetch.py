"""prefetch_operand (kernels/triton/l2_prefetch.py): what a fused GEMM is told to warm L2 with. The copy engine's
bulk prefetch wants a 16-byte aligned start and a multiple of 16 bytes, so the operand is trimmed to that, never
widened past the tensor; nothing is prefetched under the interpreter. The PTX (one thread a program issues it) is
checked in test_kernels_compile.py, the bits with and without on the GPU (test/gpu/test_kernels.py)."""
import importlib.util

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed: pip install -r requirements.txt (CI installs it)", allow_module_level=True)

import torch  # noqa: E402

from flash_rt.kernels.triton.l2_prefetch import prefetch_operand  # noqa: E402


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_nothing_to_prefetch_keeps_the_kernels_own_operand():
    like = torch.empty(4, dtype=torch.float8_e4m3fn)
    t, n = prefetch_operand(None, like)
    assert t is like and n == 0


def test_an_aligned_tensor_is_prefetched_whole_in_16_byte_granules():
    w = torch.empty(64, 33, dtype=torch.float8_e4m3fn)          # 2112 bytes = 132 granules
    assert w.data_ptr() % 16 == 0
    t, n = prefetch_operand(w, w)
    assert (t.dtype, t.data_ptr(), n) == (torch.uint8, w.data_ptr(), 2112)
    t, n = prefetch_operand(torch.empty(10, dtype=torch.float32), w)   # 40 bytes: the last 8 are dropped
    assert n == 32


@pytest.mark.parametrize("skip", [1, 5, 15])
def test_a_misaligned_start_is_trimmed_to_the_next_granule(skip):
    base = torch.empty(4096, dtype=torch.uint8)
    w = base[skip:]
    t, n = prefetch_operand(w, base)
    assert t.data_ptr() == base.data_ptr() + 16 and t.data_ptr() % 16 == 0
    assert n == (4096 - 16) // 16 * 16 and t.data_ptr() + n <= w.data_ptr() + w.numel()


def test_a_range_shorter_than_a_granule_prefetches_nothing():
    base = torch.empty(64, dtype=torch.uint8)
    t, n = prefetch_operand(base[3:20], base)
    assert n == 0 and t is base


def test_the_interpreter_prefetches_nothing_but_still_checks_the_range(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    w = torch.empty(256, dtype=torch.uint8)
    assert prefetch_operand(w, w)[1] == 0
    with pytest.raises(ValueError, match="one contiguous tensor"):
        prefetch_operand(w.view(16, 16).t(), w)


def test_bad_ranges_say_what_is_wrong():
    w = torch.empty(64, 64, dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="one contiguous tensor"):
        prefetch_operand(w.t(), w)
    with pytest.raises(ValueError, match="is on meta"):
        prefetch_operand(torch.empty(64, device="meta"), w)


def test_a_kernel_takes_up_to_three_ranges_and_empty_slots_prefetch_nothing():
    from flash_rt.kernels.triton.l2_prefetch import RANGES, prefetch_operands
    w = torch.empty(64, 64, dtype=torch.float8_e4m3fn)
    k, v = torch.empty(1, 40, 256, dtype=torch.bfloat16), torch.empty(1, 40, 256, dtype=torch.bfloat16)
    args = prefetch_operands((w, k, v), w)
    assert len(args) == 2 * RANGES == 6 and args[1::2] == [4096, 20480, 20480]
    assert [t.data_ptr() for t in args[0::2]] == [w.data_ptr(), k.data_ptr(), v.data_ptr()]
    args = prefetch_operands(w, w)
    assert args[1::2] == [4096, 0, 0] and args[2] is w and args[4] is w
    assert prefetch_operands(None, w)[1::2] == [0, 0, 0]
    with pytest.raises(ValueError, match="at most 3 ranges a kernel, got 4"):
        prefetch_operands((w, k, v, w), w)
