"""The (pi05, jax, <gpu>) cells: an openpi Orbax checkpoint gives the same FP8 chunks as the torch cell on the
same weights, and its second load is a weight-cache hit keyed on the params files.

Run on the device with the GPU suite (`python3 -m pytest -m gpu test/gpu -q`; the rtx_sm120 cell under
TRITON_OVERRIDE_ARCH=sm120, conftest.cell_skip_reason). Needs tensorstore (there through orbax in the GPU image) and
orbax + jax to write the tiny checkpoints (JAX runs on the CPU). The full-size pair: benchmarks/orbax_load.py.
"""
import numpy as np
import pytest

import flash_rt
from flash_rt.testing.observations import random_observation

pytestmark = pytest.mark.gpu

RUN = dict(action_horizon=10, max_token_len=64, num_views=2)


def test_orbax_fp8_chunks_equal_the_torch_cell(tiny_orbax, tiny_openpi, tmp_path, cell, monkeypatch):
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tiny_orbax["openpi_home"]))
    tp = flash_rt.load_model(tiny_openpi, hardware=cell, cache_dir=tmp_path / "t", **RUN)
    jx = flash_rt.load_model(tiny_orbax["released"], hardware=cell, cache_dir=tmp_path / "j", **RUN)
    assert type(jx.frontend).__name__.startswith("Pi05JaxFrontend")
    assert jx.frontend.weight_cache_status == "miss"
    rng = np.random.default_rng(5)
    for _ in range(3):
        images, state, prompt, noise = random_observation(rng, 2, 8, 10)
        a = tp.predict(images, state, prompt, noise)
        b = jx.predict(images, state, prompt, noise)
        assert np.array_equal(a, b), np.abs(a - b).max()
    again = flash_rt.load_model(tiny_orbax["released"], hardware=cell, cache_dir=tmp_path / "j", **RUN)
    assert again.frontend.weight_cache_status == "hit"
    assert np.array_equal(again.predict(images, state, prompt, noise), b)
