import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run with -m gpu on the device)")
    for it in items:
        if "gpu" in it.keywords:
            it.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _strict_fp32():
    # the FP32 oracle must be FP32: no TF32 in matmul or conv
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield


@pytest.fixture(scope="session")
def full_ckpt(tmp_path_factory):
    from flash_rt.testing.full_size import build_full_checkpoint
    path, _ = build_full_checkpoint(tmp_path_factory.mktemp("pi05_full"), device="cuda")
    return path


from flash_rt.testing.cells import GPU_CELLS, cell_skip_reason  # noqa: E402,F401  (tests import it from here)


@pytest.fixture(params=GPU_CELLS)
def cell(request):
    """The hardware key of a GPU cell that can run in this process (see cell_skip_reason)."""
    why = cell_skip_reason(request.param)
    if why:
        pytest.skip(why)
    return request.param
