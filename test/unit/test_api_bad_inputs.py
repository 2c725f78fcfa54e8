"""Bad inputs: each gets a clear error naming what was wrong and what was expected; the policy keeps working."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import flash_rt
from flash_rt.errors import CheckpointError, HardwareError, InputError, TokenizerError
from flash_rt.testing import TINY_STATE_DIM


@pytest.fixture(scope="module")
def policy(tiny_openpi):
    pol = flash_rt.load_model(tiny_openpi, hardware="cpu")
    pol.write_image(0, np.zeros((224, 224, 3), np.uint8))
    pol.write_state(np.zeros(TINY_STATE_DIM))
    pol.set_prompt("pick up the cube")
    return pol


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _rewrite(ckpt, fn):
    f = ckpt / "model.safetensors"
    sd = load_file(str(f))
    fn(sd)
    save_file(sd, str(f), metadata={"format": "pt"})


def test_missing_keys_listed_together(tiny_openpi, tmp_path):
    ck = _copy(tiny_openpi, tmp_path / "c")
    drop = ["time_mlp_in.weight", "paligemma_with_expert.gemma_expert.model.layers.1.mlp.up_proj.weight"]
    _rewrite(ck, lambda sd: [sd.pop(k) for k in drop])
    with pytest.raises(CheckpointError) as e:
        flash_rt.load_model(ck, hardware="cpu")
    msg = str(e.value)
    assert all(k in msg for k in drop) and "missing" in msg and "expected [" in msg


def test_wrong_shape_named_with_expected_shape(tiny_openpi, tmp_path):
    ck = _copy(tiny_openpi, tmp_path / "c")
    k = "paligemma_with_expert.gemma_expert.model.layers.0.mlp.down_proj.weight"
    _rewrite(ck, lambda sd: sd.__setitem__(k, torch.zeros(32, 60)))
    with pytest.raises(CheckpointError) as e:
        flash_rt.load_model(ck, hardware="cpu")
    assert k in str(e.value) and "has [32, 60], expected [32, 64]" in str(e.value)


def test_unexpected_key_reported(tiny_openpi, tmp_path):
    ck = _copy(tiny_openpi, tmp_path / "c")
    _rewrite(ck, lambda sd: sd.__setitem__("state_proj.weight", torch.zeros(32, 32)))
    with pytest.raises(CheckpointError, match="unexpected state_proj.weight"):
        flash_rt.load_model(ck, hardware="cpu")


def test_truncated_safetensors(tiny_openpi, tmp_path):
    ck = _copy(tiny_openpi, tmp_path / "c")
    f = ck / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="(?i)truncated|corrupt"):
        flash_rt.load_model(ck, hardware="cpu")


def test_checkpoint_path_missing(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        flash_rt.load_model(tmp_path / "nope", hardware="cpu")


def test_missing_tokenizer_allows_pretokenized_only(tiny_openpi, tmp_path):
    ck = _copy(tiny_openpi, tmp_path / "c")
    (ck / "tokenizer.model").unlink()
    with pytest.warns(UserWarning, match="pre-tokenized"):
        pol = flash_rt.load_model(ck, hardware="cpu")
    with pytest.raises(TokenizerError, match="tokenizer="):
        pol.set_prompt("pick up the cube")
    ids = np.array([2, 10, 11, 12, 13], np.int64)
    pol.set_prompt((ids, np.ones(5, bool)))
    out = pol.predict([np.zeros((224, 224, 3), np.uint8)], np.zeros(TINY_STATE_DIM))
    assert out.shape == (pol.action_horizon, pol.action_dim) and np.isfinite(out).all()


def test_explicit_missing_tokenizer_path_raises(tiny_openpi, tmp_path):
    with pytest.raises(TokenizerError, match="nope.model"):
        flash_rt.load_model(tiny_openpi, hardware="cpu", tokenizer=tmp_path / "nope.model")


@pytest.mark.parametrize("img, match", [
    (np.zeros((224, 224), np.uint8), "HxWx3"),
    (np.zeros((224, 224, 4), np.uint8), "HxWx3"),
    (np.zeros((224, 224, 3), np.int32), "dtype|uint8"),
    (np.full((10, 10, 3), 2.0, np.float32), r"\[0, 1\]"),
    (np.full((10, 10, 3), np.nan, np.float32), "NaN|nan"),
])
def test_bad_image(policy, img, match):
    with pytest.raises(InputError, match=match):
        policy.write_image(0, img)
    assert np.isfinite(policy.step()).all()  # still serving


def test_bad_camera_slot(policy):
    with pytest.raises(InputError, match="camera"):
        policy.write_image(5, np.zeros((224, 224, 3), np.uint8))
    with pytest.raises(InputError, match="unknown camera"):
        policy.predict({"top_cam": np.zeros((224, 224, 3), np.uint8)})


def test_nan_state(policy):
    s = np.zeros(TINY_STATE_DIM)
    s[3] = np.nan
    with pytest.raises(InputError, match=r"NaN.*\[3\]"):
        policy.write_state(s)
    assert np.isfinite(policy.step()).all()


def test_state_of_wrong_length(policy):
    with pytest.raises(InputError, match=f"state has 5 values, expected {TINY_STATE_DIM}"):
        policy.write_state(np.zeros(5))


@pytest.mark.parametrize("prompt", ["", "   ", "___", "x" * 10_000])
def test_empty_or_huge_prompt_keeps_the_old_one(policy, prompt):
    before = policy.prompt
    with pytest.raises(InputError, match="empty|characters"):
        policy.set_prompt(prompt)
    assert policy.prompt == before


def test_bad_noise_shape(policy):
    with pytest.raises(InputError, match="noise must have shape"):
        policy.step(noise=np.zeros((3, 32), np.float32))


def test_unknown_hardware_and_config(tiny_openpi):
    with pytest.raises(HardwareError, match="unknown"):
        flash_rt.load_model(tiny_openpi, hardware="tpu")
    with pytest.raises(HardwareError, match="not supported"):
        flash_rt.load_model(tiny_openpi, config="groot", hardware="cpu")
    from flash_rt.hardware import resolve_frontend
    with pytest.raises(HardwareError, match="no frontend.*Available for 'pi05'"):
        resolve_frontend("pi05", "torch", "tpu")


def test_pi0_checkpoint_rejected_with_reason(tiny_openpi, tmp_path):
    ck = _copy(tiny_openpi, tmp_path / "c")

    def to_pi0(sd):
        for k in [k for k in sd if ".dense." in k]:
            sd.pop(k)
    _rewrite(ck, to_pi0)
    with pytest.raises(CheckpointError, match="Pi0 checkpoint"):
        flash_rt.load_model(ck, hardware="cpu")


def test_bad_config_json(tiny_openpi, tmp_path):
    ck = _copy(tiny_openpi, tmp_path / "c")
    (ck / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        flash_rt.load_model(ck, hardware="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the point is a machine without CUDA")
def test_gpu_target_without_cuda_names_the_hardware_before_a_missing_checkpoint(tmp_path):
    """framework='auto' reads the checkpoint directory; when the path does not exist, the hardware problem is still
    the one reported (a thor config with a placeholder path on a CPU machine). The merge of framework='auto' reported
    the missing path first; test/ros/test_lifecycle.py caught it through the node."""
    with pytest.raises(HardwareError, match=r"needs a CUDA GPU"):
        flash_rt.load_model(tmp_path / "nonexistent", hardware="thor")
    with pytest.raises(CheckpointError, match=r"does not exist.*Orbax"):
        flash_rt.load_model(tmp_path / "nonexistent", hardware="cpu")
