"""Pi0's GPU cells (pi0_hopper, pi0_thor, pi0_rtx) on the GPU: the precision ladder's rungs against Pi0's FP32
reference, graph capture and memory stability, on the tiny Pi0 (both layouts load through the same source).

Run on the device like test_pi05_gpu.py: `python3 -m pytest -m gpu test/gpu/test_pi0_gpu.py -q` (hopper + thor),
then `TRITON_OVERRIDE_ARCH=sm120 python3 -m pytest -m gpu test/gpu/test_pi0_gpu.py -q` (rtx_sm120). Cosine in
float64 per sample over 20 random observations with matched noise; the worst sample counts; FP8 on three runs.
"""
import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.hardware import _PIPELINE_MAP
from flash_rt.models.pi05.oracle import cosine64
from flash_rt.testing import TINY_STATE_DIM
from flash_rt.testing.observations import random_observation

pytestmark = pytest.mark.gpu


@pytest.fixture
def pi0_cell(cell):
    if ("pi0", "torch", cell) not in _PIPELINE_MAP:
        pytest.skip(f"no pi0 cell for {cell}")
    return cell


def worst_cosine(pol, seed, n=20):
    rng = np.random.default_rng(seed)
    worst = 1.0
    for _ in range(n):
        images, state, prompt, noise = random_observation(rng, pol.num_views, TINY_STATE_DIM, pol.action_horizon)
        got = pol.predict(images, state, prompt, noise)
        worst = min(worst, cosine64(got, pol.reference_chunk("cuda")))
    return worst


@pytest.mark.parametrize("layout", ["openpi", "lerobot"])
def test_pi0_bf16_rung(layout, tiny_pi0, tmp_path, pi0_cell):
    from flash_rt.testing.pi0_checkpoint import build_tiny_pi0_checkpoint
    ckpt = tiny_pi0 if layout == "openpi" else build_tiny_pi0_checkpoint(tmp_path / "lerobot", layout="lerobot")
    pol = flash_rt.load_model(ckpt, config="pi0", hardware=pi0_cell, precision="bf16", cache_dir=tmp_path)
    cos = worst_cosine(pol, seed=10)
    print(f"pi0 {pi0_cell} {layout} bf16 worst cos {cos:.6f}")
    assert cos >= 0.999


def test_pi0_fp8_rung_three_runs(tiny_pi0, tmp_path, pi0_cell):
    coss = []
    for run in range(3):   # fresh loads: run 1 builds weight + calibration caches, runs 2-3 hit them
        pol = flash_rt.load_model(tiny_pi0, config="pi0", hardware=pi0_cell, cache_dir=tmp_path)
        coss.append(worst_cosine(pol, seed=20 + run))
        assert pol.frontend.graph is not None
    print(f"pi0 {pi0_cell} fp8 worst cos per run {coss}")
    assert min(coss) >= 0.995


def test_pi0_capture_and_memory_stable_over_100_replays(tiny_pi0, tmp_path, pi0_cell):
    pol = flash_rt.load_model(tiny_pi0, config="pi0", hardware=pi0_cell, cache_dir=tmp_path)
    rng = np.random.default_rng(0)
    images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, pol.action_horizon)
    first = pol.predict(images, state, prompt, noise).copy()
    g = pol.frontend.graph
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for k in range(100):
        pol.write_state(state + 0.01 * k)   # a new state every tick reaches state_proj without a recapture
        out = pol.step(noise)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    assert pol.frontend.graph is g and np.isfinite(out).all()
    assert np.abs(out - first).max() > 1e-4      # the state moved the actions (it is an input of the graph)


def test_pi0_state_pass_and_step0_beside_the_prefix_are_bit_identical(tiny_pi0, tmp_path, pi0_cell):
    """overlap_first_step (on in the hopper cell): the state pass and flow step 0 on a second stream beside the
    prefix give the bits of the serial schedule (no atomics on the path: any difference is a kernel that read before
    its producer finished, or the two streams sharing a buffer). The second policy reuses the first's calibration
    cache."""
    outs = {}
    for overlap in (False, True):
        pol = flash_rt.load_model(tiny_pi0, config="pi0", hardware=pi0_cell, cache_dir=tmp_path,
                                  overlap_first_step=overlap)
        rng = np.random.default_rng(5)
        chunks = []
        for _ in range(4):
            images, state, prompt, noise = random_observation(rng, pol.num_views, TINY_STATE_DIM, pol.action_horizon)
            chunks.append(pol.predict(images, state, prompt, noise).copy())
        assert pol.frontend.graph is not None and pol.frontend.overlap_first_step is overlap
        outs[overlap] = np.stack(chunks)
        del pol
        torch.cuda.empty_cache()
    assert np.isfinite(outs[False]).all()
    assert np.array_equal(outs[False], outs[True]), f"max |diff| {np.abs(outs[False] - outs[True]).max()}"


def test_pi0_fp8_rtc_matches_the_constrained_reference(tiny_pi0, tmp_path, pi0_cell):
    """Real-time chunking on Pi0's GPU cells (the blend after each flow step, models/pi0/cuda_forward.action_end):
    8 constrained chunks in a row against Pi0's FP32 reference under the same constraint, the frozen rows equal to
    the prefix, no recapture when the prefix changes."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_pi05_rtc_gpu import rtc_run   # the same constrained-chunk loop as Pi0.5's
    pol = flash_rt.load_model(tiny_pi0, config="pi0", hardware=pi0_cell, cache_dir=tmp_path,
                              realtime_chunking=True, action_delta_mask=[2, -1])
    cos, frozen = rtc_run(pol, pol.frontend.reference_oracle("cuda"), seed=40, n=8, executed=3, frozen=2)
    g = pol.frontend.graph
    print(f"pi0 tiny fp8 rtc {pi0_cell}: worst cos {cos:.6f}, worst |frozen - prefix| {frozen:.2e}")
    assert cos >= 0.995 and frozen <= 1e-5
    assert g is not None and pol.frontend.graph is g
