"""The public API: predict vs the step API, prompts, latency stats, seeded noise, no-stats model space."""
import json
import shutil

import numpy as np
import pytest

import flash_rt
from flash_rt.noise import seeded_noise
from flash_rt.testing import TINY_STATE_DIM


@pytest.fixture(scope="module")
def policy(tiny_openpi):
    return flash_rt.load_model(tiny_openpi, hardware="cpu", seed=0)


def test_step_api_equals_predict(policy):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    state = rng.normal(size=TINY_STATE_DIM)
    noise = rng.standard_normal((policy.action_horizon, 32)).astype(np.float32)
    want = policy.predict([img, None, img], state, "open the drawer", noise)
    policy.write_image(0, img)
    policy.write_image("left_wrist_0_rgb", None)
    policy.write_image(2, img)
    policy.write_state(state)
    policy.write_noise(noise)
    out = policy.step(noise)
    np.testing.assert_array_equal(out, want)
    # step returns the same preallocated buffer every time
    assert policy.step(noise) is out or np.shares_memory(policy.step(noise), out)


def test_image_slot_direct_write(policy):
    slot = policy.image_slot(1)
    assert slot.shape == (224, 224, 3) and slot.dtype == np.uint8
    slot[:] = 7
    policy.set_image_mask(1, True)
    assert policy.frontend.host.image_mask[1]


def test_prompt_changes_output_and_state_changes_tokens(policy):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    noise = rng.standard_normal((policy.action_horizon, 32)).astype(np.float32)
    s = np.zeros(TINY_STATE_DIM)
    a = policy.predict([img], s, "open the drawer", noise)
    toks_a = policy.frontend.host.token_ids.copy()
    b = policy.predict([img], s, "stack the green cube", noise)
    assert np.abs(a - b).max() > 1e-4
    c = policy.predict([img], s + 0.5, None, noise)  # same prompt, new state -> new state tokens
    assert not np.array_equal(policy.frontend.host.token_ids, toks_a)
    assert np.abs(b - c).max() > 1e-4
    assert policy.prompt == "stack the green cube"


def test_set_prompt_returns_setup_time(policy):
    dt = policy.set_prompt("put the cup on the plate")
    assert 0 <= dt < 1.0


def test_latency_stats(policy):
    for _ in range(3):
        policy.step()
    st = policy.latency_stats()
    assert st["count"] >= 3 and st["p50"] > 0 and st["p99"] >= st["p50"] and st["hz"] > 0
    assert set(st) >= {"count", "mean", "p50", "p95", "p99", "hz"}


def test_seeded_noise_is_a_pure_function():
    a = seeded_noise(7, 3, 10)
    np.testing.assert_array_equal(a, seeded_noise(7, 3, 10))
    assert not np.array_equal(a, seeded_noise(7, 4, 10))
    assert not np.array_equal(a, seeded_noise(8, 3, 10))
    assert a.dtype == np.float32 and abs(a.mean()) < 0.3


def test_no_norm_stats_runs_in_model_space(tiny_openpi, tmp_path):
    ck = tmp_path / "c"
    shutil.copytree(tiny_openpi, ck)
    shutil.rmtree(ck / "assets")
    with pytest.warns(UserWarning, match="MODEL space"):
        pol = flash_rt.load_model(ck, hardware="cpu")
    assert pol.action_dim == 32
    out = pol.predict([np.zeros((224, 224, 3), np.uint8)], np.full(5, 0.2), "open the drawer")
    assert out.shape == (pol.action_horizon, 32)


def test_action_dim_override(tiny_openpi):
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", action_dim=5)
    out = pol.predict([np.zeros((224, 224, 3), np.uint8)], np.zeros(TINY_STATE_DIM), "open the drawer")
    assert out.shape == (pol.action_horizon, 5)


def test_pi0_prompt_format_ignores_state(tiny_openpi):
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", discrete_state_input=False)
    img = [np.zeros((224, 224, 3), np.uint8)]
    noise = np.ones((pol.action_horizon, 32), np.float32)
    a = pol.predict(img, np.zeros(TINY_STATE_DIM), "open the drawer", noise)
    b = pol.predict(img, np.ones(TINY_STATE_DIM), None, noise)
    np.testing.assert_array_equal(a, b)


def test_no_camera_image_is_an_error(tiny_openpi):
    from flash_rt.errors import InputError
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu")
    with pytest.raises(InputError, match="no camera image"):
        pol.predict([None, None, None], np.zeros(TINY_STATE_DIM), "open the drawer")


def test_reference_chunk_and_last_step_prompt(policy):
    rng = np.random.default_rng(9)
    img = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    noise = rng.standard_normal((policy.action_horizon, 32)).astype(np.float32)
    out = policy.predict([img], np.zeros(TINY_STATE_DIM), "open the drawer", noise)
    assert policy.last_step_prompt == "open the drawer"
    ref = policy.reference_chunk()
    assert ref.shape == out.shape and np.abs(ref - out).max() <= 1e-4
    policy.set_prompt("stack the green cube")          # a switch after the step does not relabel it
    assert policy.last_step_prompt == "open the drawer" and policy.prompt == "stack the green cube"
    policy.prepare_inputs(noise)                       # reference without running the engine
    ref2 = policy.reference_chunk()
    assert policy.last_step_prompt == "stack the green cube" and np.abs(ref2 - ref).max() > 1e-4


def test_startup_phases_say_where_the_time_went(tiny_openpi):
    """The start-up log's source: every phase of a CPU load, in order, with non-negative seconds; the warm-up is
    appended when it runs (the GPU path appends capture and first-tick calibration the same way)."""
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", num_views=1)
    names = [p[0] for p in pol.startup_phases]
    assert names == ["open", "weights", "buffers"], pol.startup_phases
    assert all(s >= 0.0 for _, s, _ in pol.startup_phases)
    assert "fp32" in pol.startup_phases[1][2]
    pol.set_prompt("pick up the cube")
    pol.write_state(np.zeros(TINY_STATE_DIM, np.float32))
    pol.write_image(0, np.zeros((64, 64, 3), np.uint8))
    pol.warmup(1)
    assert [p[0] for p in pol.startup_phases][-1] == "warmup"
