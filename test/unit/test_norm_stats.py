"""Norm stats discovery (openpi json, lerobot safetensors) and the exact formulas of pi05_spec.md 1f."""

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from flash_rt.errors import CheckpointError, InputError
from flash_rt.io.norm_stats import Normalizer, NormStats, load_norm_stats

S_MEAN, S_STD = [0.5, -1.0, 2.0], [2.0, 0.5, 1.0]
S_Q01, S_Q99 = [-1.0, -2.0, 0.0], [3.0, 0.0, 4.0]
A_MEAN, A_STD = [0.1, 0.2], [1.5, 0.25]
A_Q01, A_Q99 = [-0.5, 1.0], [0.5, 3.0]


def _write_openpi(path, q=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    ns = {"state": {"mean": S_MEAN, "std": S_STD, "q01": S_Q01 if q else None, "q99": S_Q99 if q else None},
          "actions": {"mean": A_MEAN, "std": A_STD, "q01": A_Q01 if q else None, "q99": A_Q99 if q else None}}
    path.write_text(json.dumps({"norm_stats": ns}))
    return path


def _write_lerobot(d, s_q01=S_Q01, s_q99=S_Q99):
    f32 = lambda v: np.asarray(v, np.float32)  # noqa: E731 - lerobot saves float32
    save_file({"observation.state.mean": f32(S_MEAN), "observation.state.std": f32(S_STD),
               "observation.state.q01": f32(s_q01), "observation.state.q99": f32(s_q99),
               "action.mean": f32([9, 9]), "action.std": f32([9, 9])},  # postprocessor's action stats win
              str(d / "policy_preprocessor_step_3_normalizer_processor.safetensors"))
    save_file({"action.mean": f32(A_MEAN), "action.std": f32(A_STD), "action.q01": f32(A_Q01),
               "action.q99": f32(A_Q99)},
              str(d / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"))


# ---- discovery --------------------------------------------------------------------------------------------

def test_openpi_single_asset_autodiscovered(tmp_path):
    p = _write_openpi(tmp_path / "assets" / "droid" / "norm_stats.json")
    ns = load_norm_stats(tmp_path)
    assert ns.source == "openpi" and ns.path == p
    np.testing.assert_array_equal(ns.state_q99, S_Q99)
    np.testing.assert_array_equal(ns.action_std, A_STD)
    assert ns.state_mean.dtype == np.float64


def test_checkpoint_given_as_file(tmp_path):
    _write_openpi(tmp_path / "assets" / "droid" / "norm_stats.json")
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert load_norm_stats(tmp_path / "model.safetensors").source == "openpi"


def test_nested_asset_dir(tmp_path):
    p = _write_openpi(tmp_path / "assets" / "physical-intelligence" / "libero" / "norm_stats.json")
    assert load_norm_stats(tmp_path).path == p
    assert load_norm_stats(tmp_path, asset_id="physical-intelligence/libero").path == p
    assert load_norm_stats(tmp_path, explicit="physical-intelligence/libero").path == p  # asset id via norm_stats=


def test_several_assets_need_asset_id(tmp_path):
    a = _write_openpi(tmp_path / "assets" / "droid" / "norm_stats.json")
    _write_openpi(tmp_path / "assets" / "physical-intelligence" / "libero" / "norm_stats.json")
    with pytest.raises(CheckpointError) as e:
        load_norm_stats(tmp_path)
    assert "droid" in str(e.value) and "physical-intelligence/libero" in str(e.value)
    assert "norm_stats=" in str(e.value)
    assert load_norm_stats(tmp_path, asset_id="droid").path == a
    with pytest.raises(CheckpointError, match="available"):
        load_norm_stats(tmp_path, asset_id="trossen")


def test_explicit_json_file(tmp_path):
    p = _write_openpi(tmp_path / "elsewhere" / "my_stats.json")
    assert load_norm_stats(tmp_path / "ckpt", explicit=p).path == p
    assert load_norm_stats(None, explicit=str(p)).path == p
    with pytest.raises(CheckpointError, match="neither a file nor an asset id"):
        load_norm_stats(tmp_path, explicit=tmp_path / "missing.json")


def test_nothing_found_returns_none(tmp_path):
    assert load_norm_stats(tmp_path) is None
    (tmp_path / "assets" / "empty").mkdir(parents=True)
    assert load_norm_stats(tmp_path) is None


def test_corrupt_json(tmp_path):
    p = tmp_path / "assets" / "x" / "norm_stats.json"
    p.parent.mkdir(parents=True)
    p.write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_norm_stats(tmp_path)
    p.write_text(json.dumps({"state": {}}))
    with pytest.raises(CheckpointError, match="norm_stats"):
        load_norm_stats(tmp_path)


def test_null_quantiles(tmp_path):
    _write_openpi(tmp_path / "assets" / "old" / "norm_stats.json", q=False)
    ns = load_norm_stats(tmp_path)
    assert ns.state_q01 is None and ns.action_q99 is None
    with pytest.raises(CheckpointError, match="q01 and q99.*null"):
        Normalizer(ns, "quantile")
    assert Normalizer(ns, "zscore").state_dim == 3


def test_lerobot_files(tmp_path):
    _write_lerobot(tmp_path)
    ns = load_norm_stats(tmp_path)
    assert ns.source == "lerobot"
    np.testing.assert_array_equal(ns.state_q01, np.float32(S_Q01))
    np.testing.assert_array_equal(ns.action_mean, np.float32(A_MEAN))  # from the postprocessor
    assert ns.state_mean.dtype == np.float64
    assert load_norm_stats(tmp_path, explicit=next(tmp_path.glob("*unnormalizer*"))).action_q99 is not None


def test_openpi_preferred_over_lerobot(tmp_path):
    _write_lerobot(tmp_path)
    _write_openpi(tmp_path / "assets" / "droid" / "norm_stats.json")
    assert load_norm_stats(tmp_path).source == "openpi"


# ---- formulas ---------------------------------------------------------------------------------------------

def _openpi():
    return NormStats(state_mean=np.array(S_MEAN), state_std=np.array(S_STD), state_q01=np.array(S_Q01),
                     state_q99=np.array(S_Q99), action_mean=np.array(A_MEAN), action_std=np.array(A_STD),
                     action_q01=np.array(A_Q01), action_q99=np.array(A_Q99), source="openpi", path="mem")


def test_quantile_normalize_openpi_by_hand():
    nm = Normalizer(_openpi(), "quantile")
    assert nm.state_dim == 3 and nm.action_dim == 2
    raw = [1.0, 5.0, -4.0]  # 5 and -4 leave the [q01, q99] range: no clipping
    want = [(x - a) / (b - a + 1e-6) * 2 - 1 for x, a, b in zip(raw, S_Q01, S_Q99)]
    y = nm.normalize_state(np.array(raw))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.float32(want))
    y64 = nm.normalize_state(raw, dtype=np.float64)
    assert y64.tolist() == want  # float64 all the way, bit-exact
    assert y64[1] > 1 and y64[2] < -1


def test_zscore_normalize_openpi_by_hand():
    nm = Normalizer(_openpi(), "zscore")
    raw = [1.0, 5.0, -4.0]
    want = [(x - m) / (s + 1e-6) for x, m, s in zip(raw, S_MEAN, S_STD)]
    assert nm.normalize_state(raw, dtype=np.float64).tolist() == want


def test_quantile_unnormalize_passes_padded_dims_through():
    nm = Normalizer(_openpi(), "quantile")
    x = np.random.default_rng(0).uniform(-1, 1, (10, 32)).astype(np.float32)
    y = nm.unnormalize_actions(x, dtype=np.float64)
    for j, (a, b) in enumerate(zip(A_Q01, A_Q99)):
        want = [(float(v) + 1) / 2 * (b - a + 1e-6) + a for v in x[:, j]]
        assert y[:, j].tolist() == want
    np.testing.assert_array_equal(y[:, 2:], x[:, 2:].astype(np.float64))


def test_zscore_unnormalize_pads_mean0_std1():
    nm = Normalizer(_openpi(), "zscore")
    x = np.random.default_rng(1).normal(size=(5, 32))
    y = nm.unnormalize_actions(x, dtype=np.float64)
    np.testing.assert_array_equal(y[:, :2], x[:, :2] * (np.array(A_STD) + 1e-6) + np.array(A_MEAN))
    np.testing.assert_array_equal(y[:, 2:], x[:, 2:] * (1.0 + 1e-6))


def test_lerobot_formulas(tmp_path):
    _write_lerobot(tmp_path, s_q01=[-1.0, 0.25, 0.0], s_q99=[3.0, 0.25, 4.0])  # dim 1: zero range
    ns = load_norm_stats(tmp_path)
    q01, q99 = ns.state_q01, ns.state_q99
    nm = Normalizer(ns, "quantile")
    raw = np.array([1.0, 0.5, -4.0])
    y = nm.normalize_state(raw, dtype=np.float64)
    assert y[0] == 2 * (1.0 - q01[0]) / (q99[0] - q01[0]) - 1  # no eps in the denominator
    assert y[1] == 2 * (0.5 - 0.25) / 1e-8 - 1  # eps only where the range is exactly 0
    zs = Normalizer(ns, "zscore")
    assert zs.normalize_state(raw, dtype=np.float64).tolist() == \
        ((raw - ns.state_mean) / (ns.state_std + 1e-8)).tolist()
    x = np.array([[0.5, -0.5, 0.7]])
    a = nm.unnormalize_actions(x, dtype=np.float64)
    r = ns.action_q99 - ns.action_q01
    assert a[0, :2].tolist() == ((x[0, :2] + 1.0) * r / 2.0 + ns.action_q01).tolist()
    assert a[0, 2] == 0.7
    z = zs.unnormalize_actions(x, dtype=np.float64)  # lerobot's inverse has no eps
    assert z[0, :2].tolist() == (x[0, :2] * ns.action_std + ns.action_mean).tolist()
    assert z[0, 2] == 0.7


def test_state_errors():
    nm = Normalizer(_openpi(), "quantile")
    with pytest.raises(InputError, match="state has 4 values, expected 3 \\(from norm stats mem\\)"):
        nm.normalize_state(np.zeros(4))
    with pytest.raises(InputError, match="NaN/inf at indices \\[1\\]"):
        nm.normalize_state(np.array([0.0, np.nan, 0.0]))
    with pytest.raises(InputError, match="NaN/inf"):
        nm.normalize_state(np.array([0.0, 0.0, np.inf]))
    with pytest.raises(InputError, match="1-D"):
        nm.normalize_state(np.zeros((1, 3)))


def test_out_buffers():
    nm = Normalizer(_openpi(), "quantile")
    out = np.full(3, np.nan, np.float32)
    assert nm.normalize_state([1.0, 0.0, 2.0], out=out) is out
    np.testing.assert_array_equal(out, nm.normalize_state([1.0, 0.0, 2.0]))
    x = np.random.default_rng(2).uniform(-1, 1, (10, 32)).astype(np.float32)
    out_a = np.full((10, 2), np.nan, np.float32)  # sliced output: only the robot's dims
    assert nm.unnormalize_actions(x, out=out_a) is out_a
    np.testing.assert_array_equal(out_a, nm.unnormalize_actions(x)[:, :2])
    with pytest.raises(InputError, match="out shape"):
        nm.unnormalize_actions(x, out=np.zeros((9, 2), np.float32))
    with pytest.raises(InputError, match="expected >= 2"):
        nm.unnormalize_actions(np.zeros((10, 1)))


def test_missing_groups():
    only_actions = NormStats(action_q01=np.zeros(2), action_q99=np.ones(2), path="p")
    nm = Normalizer(only_actions)
    assert nm.state_dim is None and nm.action_dim == 2
    with pytest.raises(CheckpointError, match="no state norm stats"):
        nm.normalize_state([0.0])
