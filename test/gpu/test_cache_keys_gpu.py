"""A fine-tune that differs from a cached checkpoint only inside one tensor (same size, same header, same first and
last 64 KiB; in a later shard when sharded) gets a weight-cache miss, its own calibration, and the actions a fresh
load of it gives -- not the first checkpoint's FP8 weights and scales (issue 16, part 2). The CPU half of this
(keys, index, bit-exact cached weights) is test/unit/test_checkpoint_hash.py; this is the robot's view: actions."""
import shutil

import numpy as np
import pytest

import flash_rt
from flash_rt.models.pi05.config import LLM
from flash_rt.testing import TINY_STATE_DIM
from flash_rt.testing.checkpoint_edit import find_tensor, overwrite_tensor, shard_checkpoint, tensor_byte_range
from flash_rt.testing.observations import random_observation

from conftest import cell_skip_reason  # noqa: E402

pytestmark = pytest.mark.gpu


def _bump(ck, key):
    import torch
    f = find_tensor(ck, key)
    a, b = tensor_byte_range(f, key)
    old = torch.frombuffer(bytearray(f.read_bytes()[a:b]), dtype=torch.float32)
    overwrite_tensor(ck, key, old * 1.5 + 0.25)


def _chunk(ck, cache_dir):
    pol = flash_rt.load_model(ck, hardware="hopper", cache_dir=cache_dir)
    rng = np.random.default_rng(3)
    images, state, prompt, noise = random_observation(rng, pol.num_views, TINY_STATE_DIM, pol.action_horizon)
    out = pol.predict(images, state, prompt, noise)
    return pol.frontend, out


@pytest.mark.parametrize("sharded", [False, True])
def test_a_fine_tune_never_gets_the_cached_weights_of_another(tiny_openpi, tmp_path, sharded):
    why = cell_skip_reason("hopper")
    if why:
        pytest.skip(why)
    # the last layer (in shard 2 of 2 when sharded); its V projection, because that layer's MLP never reaches the
    # actions (the last prefix layer only writes K/V: the first device run bumped mlp.up_proj and saw |a - b| = 0)
    key = LLM + "layers.1.self_attn.v_proj.weight"
    if sharded:
        a = shard_checkpoint(tiny_openpi, tmp_path / "a", 2)
        b = shard_checkpoint(tiny_openpi, tmp_path / "b", 2)
    else:
        a, b = (shutil.copytree(tiny_openpi, tmp_path / n) for n in "ab")
    _bump(b, key)
    fa, ya = _chunk(a, tmp_path / "cache")
    fb, yb = _chunk(b, tmp_path / "cache")
    assert (fa.weight_cache_status, fb.weight_cache_status) == ("miss", "miss")
    assert fb.calibration_info["source"] == "calibrated" and fa.ckpt_hash != fb.ckpt_hash
    ff, yf = _chunk(b, tmp_path / "fresh")             # b alone, empty caches
    again, ya2 = _chunk(a, tmp_path / "cache")          # a's caches still serve a
    assert again.weight_cache_status == "hit" and again.calibration_info["source"] == "cache"
    same, other = float(np.abs(yb - yf).max()), float(np.abs(ya - yb).max())
    print(f"sharded={sharded}: |b - fresh b| {same:.3g}, |a - b| {other:.3g}, |a - a again| "
          f"{float(np.abs(ya - ya2).max()):.3g}")
    assert same <= 1e-5 and other > 1e-3 and other > 100 * same
    assert float(np.abs(ya - ya2).max()) <= 1e-5
