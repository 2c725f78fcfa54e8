"""FP8 activation calibration: amax per quantization site -> static per-tensor scales, with a JSON cache.

Scales come from the BF16 calibration twin run on real observations (amax of every site's activation, the
max over observations; or, with `percentile`, that percentile of |x| per observation, maxed over
observations -- clips rare outliers). scale = max(amax / 448, 1e-12) for e4m3.

Cache: `<root>/<ckpt_hash>_<shape_key>.json`, root = cache_dir argument, else $FLASH_RT_CACHE_DIR/calibration,
else ~/.flash_rt/calibration. shape_key names everything the site list depends on (views, horizon, steps,
prompt length, precision). The file holds {version, ckpt_hash, shape_key, sites, amax, percentile,
num_observations, sha256}; `sha256` covers the canonical JSON of every other field, so a flipped digit in an amax
(still valid JSON) is caught too. A file whose sites, meta or checksum disagree, or that is not valid JSON, is
reported as a CacheError and recalibrated -- never silently used. ckpt_hash is the full-content checkpoint hash
(executors/checkpoint_hash.py).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from flash_rt.errors import CacheError
from flash_rt.executors.signed_json import read_signed_json, write_signed_json

VERSION = 2   # 2: sha256 over the content, the full-content checkpoint hash
FP8_MAX = 448.0


def calibration_root(cache_dir=None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir) / "calibration"
    env = os.environ.get("FLASH_RT_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".flash_rt") / "calibration"


def calibration_path(ckpt_hash: str, shape_key: str, cache_dir=None) -> Path:
    return calibration_root(cache_dir) / f"{ckpt_hash}_{shape_key}.json"


def scales_from_amax(amax: Sequence[float]) -> list[float]:
    return [max(float(a) / FP8_MAX, 1e-12) for a in amax]


def save_calibration(path: Path, sites: Sequence[str], amax: Sequence[float], *, ckpt_hash: str, shape_key: str,
                     percentile: float | None, num_observations: int) -> Path:
    doc = {"version": VERSION, "ckpt_hash": ckpt_hash, "shape_key": shape_key, "percentile": percentile,
           "num_observations": num_observations, "sites": list(sites), "amax": [float(a) for a in amax]}
    return write_signed_json(path, doc)


def load_calibration(path: Path, sites: Sequence[str], *, ckpt_hash: str, shape_key: str) -> list[float]:
    """amax list for `sites`, or CacheError saying exactly why the file cannot be used."""
    doc = read_signed_json(path, "calibration cache", VERSION, {"ckpt_hash": ckpt_hash, "shape_key": shape_key})
    if doc.get("sites") != list(sites):
        raise CacheError(f"calibration cache {path}: its {len(doc.get('sites') or [])} sites differ from the "
                         f"pipeline's {len(sites)}")
    amax = doc.get("amax")
    if not isinstance(amax, list) or len(amax) != len(sites) or not all(
            isinstance(a, (int, float)) and math.isfinite(a) and a >= 0 for a in amax):
        raise CacheError(f"calibration cache {path}: amax must be {len(sites)} finite non-negative numbers")
    return [float(a) for a in amax]
