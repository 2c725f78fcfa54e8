"""The FP8 calibration cache: a corrupt or foreign file is detected (CacheError naming why) and recalibrated,
never used -- including a flipped digit that still parses as JSON (issue 16, part 2)."""
from __future__ import annotations

import json

import pytest

from flash_rt.calibration import VERSION, calibration_path, load_calibration, save_calibration
from flash_rt.errors import CacheError
from flash_rt.runtime.fp8_scales import ActivationScales

SITES = ["vis.0.ln1", "vis.0.attn", "llm.0.norm1"]
KEY = dict(ckpt_hash="ab" * 16, shape_key="pi05-hopper-fp8-v1-h10-s2-t48")


@pytest.fixture
def saved(tmp_path):
    p = calibration_path(KEY["ckpt_hash"], KEY["shape_key"], tmp_path)
    save_calibration(p, SITES, [1.5, 2.25, 300.0], percentile=None, num_observations=1, **KEY)
    return p


def test_round_trip(saved):
    assert load_calibration(saved, SITES, **KEY) == [1.5, 2.25, 300.0]
    assert json.loads(saved.read_text())["version"] == VERSION


def _edit(p, fn):
    doc = json.loads(p.read_text())
    fn(doc)
    p.write_text(json.dumps(doc))


@pytest.mark.parametrize("damage, msg", [
    (lambda p: _edit(p, lambda d: d["amax"].__setitem__(2, 3000.0)), "checksum mismatch"),
    (lambda p: _edit(p, lambda d: d.__setitem__("sites", SITES[::-1])), "checksum mismatch"),
    (lambda p: p.write_text(p.read_text()[:-20]), "unreadable"),
    (lambda p: _edit(p, lambda d: d.__setitem__("version", 1)), "version 1, expected"),
    (lambda p: p.write_bytes(b"\xff\x00garbage"), "unreadable"),
])
def test_a_corrupt_file_is_rejected(saved, damage, msg):
    damage(saved)
    with pytest.raises(CacheError, match=msg):
        load_calibration(saved, SITES, **KEY)


def test_a_foreign_file_is_rejected(saved, tmp_path):
    """A valid file of another checkpoint (a different key inside, copied under this name) is not used."""
    other = calibration_path("cd" * 16, KEY["shape_key"], tmp_path)
    save_calibration(other, SITES, [9.0, 9.0, 9.0], percentile=None, num_observations=1,
                     ckpt_hash="cd" * 16, shape_key=KEY["shape_key"])
    saved.write_bytes(other.read_bytes())
    with pytest.raises(CacheError, match="ckpt_hash is 'cdcd"):
        load_calibration(saved, SITES, **KEY)


def test_activation_scales_recalibrate_on_a_corrupt_file(saved):
    """The frontend's path: a rejected file warns and returns False (the twin then calibrates and rewrites it)."""
    scales = ActivationScales(SITES, "cpu")
    assert scales.load_cached(saved, **KEY)
    assert scales.scales.tolist() == pytest.approx([1.5 / 448, 2.25 / 448, 300.0 / 448])
    _edit(saved, lambda d: d["amax"].__setitem__(0, 0.5))
    fresh = ActivationScales(SITES, "cpu")
    with pytest.warns(UserWarning, match="checksum mismatch.*recalibrating"):
        assert not fresh.load_cached(saved, **KEY)
    assert fresh.scales.tolist() == [1.0, 1.0, 1.0]
    fresh.save(saved, num_observations=1, percentile=None, **KEY)     # what the frontend does next
    assert load_calibration(saved, SITES, **KEY) == [0.0, 0.0, 0.0]
