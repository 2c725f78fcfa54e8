"""One precision test over every (model, hardware) cell of `_PIPELINE_MAP` (torch framework): the chunk against the
model's own FP32 reference (`Policy.reference_chunk`, matched inputs and noise), both checkpoint layouts.

The bars are the precision ladder's: the CPU cells are exact (max |d| <= 1e-4 in output units), a GPU cell holds BF16
worst cosine >= 0.999 and FP8 worst cosine >= 0.995 (float64, per chunk, over 20 observations). The CPU rows are not
GPU-marked and run in CI (`make test`); the GPU rows are marked `gpu` and run on the device
(`python3 -m pytest -m gpu test/unit/test_precision_matrix.py -q -s`, again under each rtx override), per cell as
`cell_skip_reason` allows (rtx cells only under their TRITON_OVERRIDE_ARCH). Adding a model or a cell to the map adds
its rows here without editing this file; the per-model files (test_pi05_gpu.py, test_pi0_gpu.py) keep the deeper
rungs (three FP8 runs, capture, memory, full size).
"""
import numpy as np
import pytest

import flash_rt
from flash_rt.hardware import _PIPELINE_MAP
from flash_rt.models.pi05.oracle import cosine64
from flash_rt.testing.observations import random_observation

from flash_rt.testing.cells import cell_skip_reason

CELLS = sorted((m, hw) for m, fw, hw in _PIPELINE_MAP if fw == "torch")


def _tiny(model: str, layout: str, root):
    """A tiny checkpoint of `model` in `layout` (the builders the model's own tests use)."""
    if model == "pi05":
        from flash_rt.testing import build_tiny_checkpoint
        return build_tiny_checkpoint(root, layout=layout)
    if model == "pi0":
        from flash_rt.testing.pi0_checkpoint import build_tiny_pi0_checkpoint
        return build_tiny_pi0_checkpoint(root, layout=layout)
    raise AssertionError(f"no tiny checkpoint builder for model {model!r}: add one here with its first cell")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    made = {}

    def get(model, layout):
        if (model, layout) not in made:
            made[model, layout] = _tiny(model, layout, tmp_path_factory.mktemp(f"{model}_{layout}"))
        return made[model, layout]
    return get


def _chunks(pol, seed: int, n: int, device: str):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        images, state, prompt, noise = random_observation(rng, pol.num_views, pol.state_dim or 8, pol.action_horizon)
        got = pol.predict(images, state, prompt, noise).copy()
        yield got, pol.reference_chunk(device)


def _params():
    for model, hw in CELLS:
        for layout in ("openpi", "lerobot"):
            marks = () if hw == "cpu" else (pytest.mark.gpu,)
            yield pytest.param(model, hw, layout, marks=marks, id=f"{model}-{hw}-{layout}")


def test_the_matrix_covers_both_models_on_every_target():
    models = {m for m, _ in CELLS}
    assert {"pi05", "pi0"} <= models
    for m in models:
        assert {"cpu", "hopper", "thor", "rtx_sm120"} <= {hw for mm, hw in CELLS if mm == m}, m


@pytest.mark.parametrize("model,hw,layout", list(_params()))
def test_chunk_matches_the_fp32_reference(model, hw, layout, tiny, tmp_path):
    ckpt = tiny(model, layout)
    if hw == "cpu":
        pol = flash_rt.load_model(ckpt, config=model, hardware="cpu")
        worst = max(float(np.abs(got - ref).max()) for got, ref in _chunks(pol, seed=1, n=3, device="cpu"))
        assert worst <= 1e-4, f"{model} cpu {layout}: max |d| {worst:.3g} vs the FP32 reference"
        return
    why = cell_skip_reason(hw)
    if why:
        pytest.skip(why)
    for precision, bar in (("bf16", 0.999), ("fp8", 0.995)):
        pol = flash_rt.load_model(ckpt, config=model, hardware=hw, precision=precision, cache_dir=tmp_path)
        worst = min(cosine64(got, ref) for got, ref in _chunks(pol, seed=2, n=20, device="cuda"))
        print(f"{model} {hw} {layout} {precision}: worst cos {worst:.6f}")
        assert worst >= bar, f"{model} {hw} {layout} {precision}: worst cosine {worst:.6f} < {bar}"
        del pol
