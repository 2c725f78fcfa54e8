"""The pi0_cpu cell (built from the template) vs the Pi0 FP32 reference, tiny checkpoints of both layouts.

Random observations (assorted camera sizes, states outside the stats' range) with matched noise: max |d| <= 1e-4
per sample. Plus what makes the cell Pi0 rather than Pi0.5 with other weights: the prompt is BOS + text + "\n"
with no state in it, the state reaches the actions through state_proj, and state/actions are z-score normalized.
"""
from __future__ import annotations

import numpy as np
import pytest

import flash_rt
from flash_rt.errors import CheckpointError
from flash_rt.hardware import _PIPELINE_MAP
from flash_rt.models.pi05.oracle import cosine64
from flash_rt.testing import TINY_ACTION_DIM, TINY_STATE_DIM
from flash_rt.testing.observations import random_observation
from flash_rt.testing.pi0_checkpoint import build_tiny_pi0_checkpoint


@pytest.fixture(scope="module")
def pi0_ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("pi0")
    return {layout: build_tiny_pi0_checkpoint(root / layout, layout=layout) for layout in ("openpi", "lerobot")}


def test_one_map_line_per_pi0_cell():
    assert _PIPELINE_MAP[("pi0", "torch", "cpu")] == ("flash_rt.frontends.torch.pi0_cpu", "Pi0TorchFrontendCpu")


@pytest.mark.parametrize("layout", ["openpi", "lerobot"])
def test_pi0_cpu_matches_reference(layout, pi0_ckpts):
    pol = flash_rt.load_model(pi0_ckpts[layout], config="pi0", hardware="cpu", num_views=2)
    assert pol.action_dim == TINY_ACTION_DIM and pol.state_dim == TINY_STATE_DIM
    assert pol.frontend.cfg.max_token_len == 48 and not pol.frontend.cfg.discrete_state_input
    rng = np.random.default_rng(7 if layout == "openpi" else 8)
    worst = 0.0
    for _ in range(4):
        images, state, prompt, noise = random_observation(rng, 2, TINY_STATE_DIM, pol.action_horizon)
        got = pol.predict(images, state, prompt, noise)
        want = pol.reference_chunk()
        assert got.shape == (pol.action_horizon, TINY_ACTION_DIM) and np.isfinite(got).all()
        worst = max(worst, float(np.abs(got - want).max()))
        assert cosine64(got, want) >= 0.99999
    assert worst <= 1e-4, worst


def test_pi0_prompt_has_no_state_and_the_state_enters_through_state_proj(pi0_ckpts):
    pol = flash_rt.load_model(pi0_ckpts["openpi"], config="pi0", hardware="cpu", num_views=2)
    fe = pol.frontend
    rng = np.random.default_rng(3)
    images, state, prompt, noise = random_observation(rng, 2, TINY_STATE_DIM, pol.action_horizon)
    a = pol.predict(images, state, "pick up the cup", noise)
    ids = fe.host.token_ids[fe.host.token_mask].tolist()
    tok = fe.host.encoder.tokenizer
    assert ids == [tok.bos_id] + tok.encode("pick up the cup") + tok.encode("\n")
    # z-score: the model-space state fed to state_proj is (x - mean) / (std + 1e-6), zero-padded
    ns = fe.normalizer.stats
    want = (np.asarray(state, np.float64) - ns.state_mean) / (ns.state_std + 1e-6)
    np.testing.assert_allclose(fe.state[:TINY_STATE_DIM], want, rtol=1e-5, atol=1e-5)
    assert not fe.state[TINY_STATE_DIM:].any()
    b = pol.predict(images, np.asarray(state) + 0.5, "pick up the cup", noise)
    assert ids == fe.host.token_ids[fe.host.token_mask].tolist()      # the prompt did not change ...
    assert np.abs(a - b).max() > 1e-3                                 # ... the actions did


def test_a_pi05_checkpoint_is_refused_with_the_reason(tiny_openpi):
    with pytest.raises(CheckpointError, match="Pi0.5"):
        flash_rt.load_model(tiny_openpi, config="pi0", hardware="cpu")


def test_reference_after_prepare_inputs_uses_this_observations_state(pi0_ckpts):
    """The rosbag report calls prepare_inputs() + reference_chunk() without an engine step: the oracle must read
    the state of this observation (it once read the engine's state buffer, stale until the next step)."""
    pol = flash_rt.load_model(pi0_ckpts["openpi"], config="pi0", hardware="cpu", num_views=2)
    rng = np.random.default_rng(11)
    images, state, prompt, noise = random_observation(rng, 2, TINY_STATE_DIM, pol.action_horizon)
    pol.predict(images, state, prompt, noise)
    pol.write_state(np.asarray(state) + 1.0)
    pol.prepare_inputs(noise)
    ref_only = pol.reference_chunk().copy()
    got = pol.step(noise)
    assert np.abs(got - ref_only).max() <= 1e-4


def test_the_worked_example_line_counts_are_the_files():
    """docs/adding_new_model.md reports what adding Pi0 took, file by file: every count there is the file's."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "adding_new_model.md").read_text()
    section = text.split("## Pi0, the worked example")[1].split("\n## ")[0]
    rows = re.findall(r"^\| `([^`]+)` \| (\d+) \|", section, flags=re.M)
    assert len(rows) >= 11, rows
    for path, n in rows:
        if path == "flash_rt/hardware/__init__.py":
            src = (root / path).read_text()
            assert len(re.findall(r'^\s+\("pi0", ', src, flags=re.M)) == int(n)
        else:
            assert len((root / path).read_text().splitlines()) == int(n), path


def test_a_pi0_checkpoint_loaded_as_pi05_names_config_pi0(pi0_ckpts):
    """The default config is pi05: a Pi0 checkpoint loaded without config= must say which config loads it (the
    message said "expected Pi0.5 (config='pi05')" before Pi0 existed)."""
    with pytest.raises(CheckpointError, match="config='pi0'"):
        flash_rt.load_model(pi0_ckpts["openpi"], hardware="cpu")


def test_reference_chunk_goes_through_the_step_output_stage(pi0_ckpts):
    """Pi0's oracle unnormalizes through the host's one output stage (Pi05HostIO.to_output), so a delta mask reaches
    the reference too. Before, the Pi0 oracle had its own copy of the unnormalize step without the mask: with a mask
    its chunk differed from step() by the state."""
    pol = flash_rt.load_model(pi0_ckpts["openpi"], config="pi0", hardware="cpu", action_delta_mask=[3, -1])
    images, state, prompt, noise = random_observation(np.random.default_rng(4), pol.num_views, TINY_STATE_DIM,
                                                      pol.action_horizon)
    state = state + 5.0                      # a state far from 0, so a missing delta stage cannot hide
    out = pol.predict(images, state, prompt, noise).copy()
    assert float(np.abs(out - pol.reference_chunk()).max()) <= 1e-4


def test_pi0_cpu_takes_the_delta_mask_like_every_cell(pi0_ckpts):
    """The CPU cell took no action_delta_mask (TypeError) while Pi0's GPU cells did: the same option now means the
    same on every cell -- openpi's AbsoluteActions, the observed state added to the delta dims of the chunk."""
    from flash_rt.errors import InputError
    plain = flash_rt.load_model(pi0_ckpts["openpi"], config="pi0", hardware="cpu")
    pol = flash_rt.load_model(pi0_ckpts["openpi"], config="pi0", hardware="cpu", action_delta_mask=[3, -1])
    assert plain.action_delta_mask is None and plain.action_delta_mask_source is None
    assert pol.action_delta_mask[:4] == (True, True, True, False)
    assert pol.action_delta_mask_source == "action_delta_mask="
    images, state, prompt, noise = random_observation(np.random.default_rng(5), pol.num_views, TINY_STATE_DIM,
                                                      pol.action_horizon)
    a = plain.predict(images, state, prompt, noise).copy()
    b = pol.predict(images, state, prompt, noise).copy()
    np.testing.assert_allclose(b[:, :3], a[:, :3] + np.asarray(state, np.float32)[:3], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(b[:, 3:], a[:, 3:])
    with pytest.raises(InputError, match="action_delta_mask"):
        flash_rt.load_model(pi0_ckpts["openpi"], config="pi0", hardware="cpu", action_delta_mask="yes")
