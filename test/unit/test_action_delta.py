"""action_delta_mask: predict/step return openpi's POLICY output (delta dims + the observed state), not the model's.

Checked against an independent numpy reference of openpi's transforms written here from pi05_spec.md 1f
(make_bool_mask: n > 0 -> n True, -n -> n False; AbsoluteActions: actions[..., :len(mask)] += where(mask, state, 0)),
on the tiny checkpoint with matched noise: the policy without a mask gives the model's unnormalized output, the
masked one must give exactly that plus the state on the masked dims. Also the checkpoint side (lerobot's
use_relative_actions) and every bad mask's error.
"""
import json
import shutil

import numpy as np
import pytest

import flash_rt
from flash_rt.errors import CheckpointError, InputError
from flash_rt.io.action_delta import parse_delta_mask
from flash_rt.io.norm_stats import Normalizer, NormStats
from flash_rt.testing import TINY_ACTION_DIM, TINY_STATE_DIM
from flash_rt.testing.observations import random_observation


def make_bool_mask(*dims):
    """openpi's make_bool_mask, from its definition: n > 0 -> n True, n < 0 -> |n| False."""
    out = []
    for n in dims:
        out += [n > 0] * abs(n)
    return tuple(out)


def absolute_actions(actions, state, mask):
    """openpi's AbsoluteActions on one chunk: the masked dims get the state added (the mask's own length)."""
    a = np.array(actions, np.float64)
    m = np.asarray(mask, bool)
    a[..., :m.size] += np.where(m, np.asarray(state, np.float64)[:m.size], 0.0)
    return a


@pytest.fixture(scope="module")
def plain(tiny_openpi):
    return flash_rt.load_model(tiny_openpi, hardware="cpu")


@pytest.mark.parametrize("given, dims", [
    ([2, -1], (2, -1)),                                  # openpi's compact form, single arm (like (7, -1))
    ([True, True, False], (2, -1)),                      # the same as bools
    ([3, -1, 2, -1], (3, -1, 2, -1)),                    # bimanual: joints delta, grippers absolute, twice
    (np.array(make_bool_mask(3, -1, 2, -1)), (3, -1, 2, -1)),
])
def test_predict_matches_openpi_absolute_actions(tiny_openpi, plain, given, dims):
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", action_delta_mask=given)
    want_mask = make_bool_mask(*dims)
    assert pol.action_delta_mask == want_mask + (False,) * (TINY_ACTION_DIM - len(want_mask))
    rng = np.random.default_rng(4)
    for _ in range(2):
        images, state, prompt, noise = random_observation(rng, 3, TINY_STATE_DIM, pol.action_horizon)
        model_out = plain.predict(images, state, prompt, noise)
        got = pol.predict(images, state, prompt, noise)
        want = absolute_actions(model_out, state, want_mask)
        assert not np.allclose(got, model_out)                       # the mask changed something
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        # step() returns the same through the preallocated output, and the oracle applies the same stage
        np.testing.assert_array_equal(pol.step(noise), got)
        np.testing.assert_allclose(pol.reference_chunk(), want, rtol=0, atol=1e-4)


def test_no_mask_and_all_absolute_mask_are_model_output(tiny_openpi, plain):
    assert plain.action_delta_mask is None and plain.action_delta_mask_source is None   # openpi cannot declare it
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", action_delta_mask=[-TINY_ACTION_DIM])
    assert pol.action_delta_mask is None and pol.action_delta_mask_source == "action_delta_mask="
    images, state, prompt, noise = random_observation(np.random.default_rng(1), 3, TINY_STATE_DIM, 10)
    np.testing.assert_array_equal(pol.predict(images, state, prompt, noise), plain.predict(images, state, prompt,
                                                                                             noise))


@pytest.mark.parametrize("mask, match", [
    ("6,-1", "list of bools"),
    (5, "list of bools"),
    ([], "empty"),
    ([2, 0, -1], "0 is not allowed"),
    ([True, 1], "mixes bools and ints"),
    ([1.0, -1.0], "neither bool nor int"),
    ([TINY_ACTION_DIM + 1], "covers 8 dims"),
    ([True] * (TINY_ACTION_DIM + 1), "covers 8 dims"),
    (np.ones((2, 2), bool), "1-D"),
])
def test_bad_masks_are_clear_errors(tiny_openpi, mask, match):
    with pytest.raises(InputError, match=match):
        flash_rt.load_model(tiny_openpi, hardware="cpu", action_delta_mask=mask)


def test_delta_dim_needs_a_state_dim():
    with pytest.raises(InputError, match="state has only 4 values"):
        parse_delta_mask([5, -1], action_dim=7, state_dim=4)
    assert parse_delta_mask([4, -1], action_dim=7, state_dim=4).tolist() == [True] * 4 + [False] * 3


def test_missing_state_is_a_clear_error(tiny_openpi):
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu", action_delta_mask=[2, -1], discrete_state_input=False)
    images, _, prompt, noise = random_observation(np.random.default_rng(2), 3, TINY_STATE_DIM, 10)
    with pytest.raises(InputError, match="adds state dims 0..1 back"):
        pol.predict(images, None, prompt, noise)


NAMES = ["shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3", "left_gripper"]


def _lerobot_variant(src, dst, step_config=None, config_fields=None):
    """A copy of the tiny lerobot checkpoint whose saved pipeline / policy config declare relative actions the way
    lerobot writes them: a `relative_actions_processor` step {enabled, exclude_joints, action_names} in
    policy_preprocessor.json, or use_relative_actions / relative_exclude_joints / action_feature_names in config.json."""
    shutil.copytree(src, dst)
    if step_config is not None:
        pre = json.loads((dst / "policy_preprocessor.json").read_text())
        pre["steps"].insert(0, {"registry_name": "relative_actions_processor", "config": step_config})
        (dst / "policy_preprocessor.json").write_text(json.dumps(pre))
    if config_fields is not None:
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(config_fields)
        (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("how", ["pipeline", "config"])
def test_lerobot_checkpoint_declares_the_mask(tiny_lerobot, tmp_path, how):
    """lerobot's rule: an excluded token equal to or inside a dim's name keeps that dim absolute; the rest are deltas.
    The mask read from the checkpoint makes predict() openpi's/lerobot's absolute output."""
    if how == "pipeline":
        ck = _lerobot_variant(tiny_lerobot, tmp_path / "rel", step_config={
            "enabled": True, "exclude_joints": ["Gripper"], "action_names": NAMES})
    else:
        ck = _lerobot_variant(tiny_lerobot, tmp_path / "rel", config_fields={
            "use_relative_actions": True, "relative_exclude_joints": ["gripper"], "action_feature_names": NAMES})
    pol = flash_rt.load_model(ck, hardware="cpu")
    want_mask = make_bool_mask(6, -1)
    assert pol.action_delta_mask == want_mask
    assert pol.action_delta_mask_source.startswith(str(ck / ("policy_preprocessor.json" if how == "pipeline"
                                                             else "config.json")))
    plain = flash_rt.load_model(ck, hardware="cpu", action_delta_mask=[-7])      # an explicit mask wins
    assert plain.action_delta_mask is None
    images, state, prompt, noise = random_observation(np.random.default_rng(6), 3, TINY_STATE_DIM, 10)
    np.testing.assert_allclose(pol.predict(images, state, prompt, noise),
                               absolute_actions(plain.predict(images, state, prompt, noise), state, want_mask),
                               rtol=1e-6, atol=1e-6)


def test_lerobot_pipeline_details(tiny_lerobot, tmp_path):
    off = _lerobot_variant(tiny_lerobot, tmp_path / "off", step_config={
        "enabled": False, "exclude_joints": [], "action_names": None},
        config_fields={"use_relative_actions": True})                      # the pipeline file wins
    pol = flash_rt.load_model(off, hardware="cpu")
    assert pol.action_delta_mask is None and "relative_actions_processor" in pol.action_delta_mask_source
    every = _lerobot_variant(tiny_lerobot, tmp_path / "all", step_config={
        "enabled": True, "exclude_joints": ["gripper"], "action_names": None})   # no names: lerobot converts all
    assert flash_rt.load_model(every, hardware="cpu").action_delta_mask == (True,) * TINY_ACTION_DIM
    short = _lerobot_variant(tiny_lerobot, tmp_path / "short", config_fields={
        "use_relative_actions": True, "relative_exclude_joints": ["gripper"], "action_feature_names": NAMES})
    with pytest.raises(CheckpointError, match=r"declared by .*config.json.*state has only 4 values.*override"):
        flash_rt.load_model(short, hardware="cpu", state_dim=4, discrete_state_input=False)


@pytest.mark.parametrize("source", ["openpi", "lerobot"])
@pytest.mark.parametrize("mode", ["quantile", "zscore"])
def test_normalize_actions_inverts_unnormalize(source, mode):
    rng = np.random.default_rng(0)
    q01 = rng.uniform(-2, 0, 4)
    q99 = q01 + rng.uniform(0.5, 3, 4)
    if source == "lerobot" and mode == "quantile":
        q99[1] = q01[1]                                      # lerobot's zero range: eps only there
    st = NormStats(action_mean=q01, action_std=rng.uniform(0.5, 2, 4), action_q01=q01, action_q99=q99, source=source)
    nz = Normalizer(st, mode=mode)
    x = rng.standard_normal((5, 6))
    raw = nz.unnormalize_actions(x, dtype=np.float64)
    back = np.zeros_like(raw)
    nz.normalize_actions(raw, out=back)
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-6)   # a zero range keeps x only to ~1e-8
