"""The (pi0, jax, <gpu>) cells: openpi's Pi0 Orbax checkpoint gives the same FP8 chunks as the Pi0 torch cell on the
same weights, and its second load is a weight-cache hit keyed on the params files.

Run on the device with the GPU suite (`python3 -m pytest -m gpu test/gpu/test_orbax_pi0_gpu.py -q`, then the
rtx_sm120 cell under TRITON_OVERRIDE_ARCH=sm120, conftest.cell_skip_reason). Needs tensorstore, and orbax + jax to
write the tiny checkpoints (JAX on the CPU).
"""
import numpy as np
import pytest

import flash_rt
from flash_rt.hardware import _PIPELINE_MAP
from flash_rt.testing import TINY_STATE_DIM
from flash_rt.testing.observations import random_observation

pytestmark = pytest.mark.gpu

RUN = dict(config="pi0", action_horizon=10, num_views=2)


@pytest.fixture(scope="module")
def pi0_orbax(tmp_path_factory):
    from flash_rt.testing.orbax_checkpoint import build_tiny_pi0_orbax
    return build_tiny_pi0_orbax(tmp_path_factory.mktemp("pi0_orbax_gpu"))


@pytest.fixture
def pi0_cell(cell):
    if ("pi0", "jax", cell) not in _PIPELINE_MAP:
        pytest.skip(f"no pi0 jax cell for {cell}")
    return cell


@pytest.mark.parametrize("variant,twin", [("released", "safetensors"), ("training", "training_twin")])
def test_pi0_orbax_fp8_chunks_equal_the_torch_cell(pi0_orbax, variant, twin, tmp_path, pi0_cell):
    tp = flash_rt.load_model(pi0_orbax[twin], hardware=pi0_cell, cache_dir=tmp_path / "t", **RUN)
    jx = flash_rt.load_model(pi0_orbax[variant], hardware=pi0_cell, cache_dir=tmp_path / "j", **RUN)
    assert type(jx.frontend).__name__.startswith("Pi0JaxFrontend")
    assert jx.frontend.weight_cache_status == "miss"
    rng = np.random.default_rng(5)
    for _ in range(3):
        images, state, prompt, noise = random_observation(rng, 2, TINY_STATE_DIM, 10)
        a = tp.predict(images, state, prompt, noise)
        b = jx.predict(images, state, prompt, noise)
        assert np.array_equal(a, b), np.abs(a - b).max()
    again = flash_rt.load_model(pi0_orbax[variant], hardware=pi0_cell, cache_dir=tmp_path / "j", **RUN)
    assert again.frontend.weight_cache_status == "hit"
    assert np.array_equal(again.predict(images, state, prompt, noise), b)
