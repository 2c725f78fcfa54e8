"""Normalization statistics: discovery, loading and the exact openpi / lerobot formulas (pi05_spec.md 1f).

Two on-disk layouts:

* openpi: ``<ckpt>/assets/<asset_id>/norm_stats.json`` = {"norm_stats": {"state": {mean, std, q01, q99},
  "actions": {...}}}; asset ids may be nested (``physical-intelligence/libero``); q01/q99 may be null.
* lerobot: ``policy_preprocessor_step_*_normalizer_processor.safetensors`` (``observation.state.<stat>``)
  and ``policy_postprocessor_step_*_unnormalizer_processor.safetensors`` (``action.<stat>``).

The epsilons differ (openpi 1e-6 added to the denominator, lerobot 1e-8 / only for a zero range), and a
state bin at an edge can flip between them, so the Normalizer applies the formulas of the source the
stats came from. Everything is computed in float64 (the stats' precision in openpi) and cast at the end;
lerobot itself computes in float32, which differs from this by float32 rounding only.

Note beyond pi05_spec.md 1f: lerobot's z-score *unnormalize* is ``x*std + mean`` without the eps (only its
normalize adds std + 1e-8); we follow lerobot's normalize_processor.py there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flash_rt.errors import CheckpointError, InputError

STAT_NAMES = ("mean", "std", "q01", "q99")
OPENPI_EPS = 1e-6
LEROBOT_EPS = 1e-8
_LEROBOT_PRE = "policy_preprocessor_step_*_normalizer_processor.safetensors"
_LEROBOT_POST = "policy_postprocessor_step_*_unnormalizer_processor.safetensors"


@dataclass
class NormStats:
    state_mean: np.ndarray | None = None
    state_std: np.ndarray | None = None
    state_q01: np.ndarray | None = None
    state_q99: np.ndarray | None = None
    action_mean: np.ndarray | None = None
    action_std: np.ndarray | None = None
    action_q01: np.ndarray | None = None
    action_q99: np.ndarray | None = None
    source: str = "openpi"  # "openpi" | "lerobot"
    path: Path | None = None  # norm_stats.json, or the lerobot preprocessor file


def _vec(value, where: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        a = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where} is not a list of numbers") from exc
    if not np.isfinite(a).all():
        raise CheckpointError(f"{where} contains NaN/inf")
    return a


def read_openpi_json(path) -> NormStats:
    """Parse an openpi norm_stats.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read norm stats {path}: {exc}") from exc
    ns = data.get("norm_stats") if isinstance(data, dict) else None
    if not isinstance(ns, dict):
        raise CheckpointError(f"{path} has no top-level 'norm_stats' object (expected openpi layout)")
    fields = {}
    for group, prefix in (("state", "state"), ("actions", "action")):
        entry = ns.get(group) or {}
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: norm_stats.{group} must be an object with mean/std/q01/q99")
        for stat in STAT_NAMES:
            fields[f"{prefix}_{stat}"] = _vec(entry.get(stat), f"{path}: norm_stats.{group}.{stat}")
    return NormStats(**fields, source="openpi", path=path)


def _read_safetensors(path: Path) -> dict:
    from safetensors.numpy import load_file
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for bad files
        raise CheckpointError(f"cannot read lerobot normalizer file {path}: {exc}") from exc


def _single(paths: list[Path], what: str) -> Path | None:
    if len(paths) > 1:
        raise CheckpointError(f"several lerobot {what} files: {', '.join(map(str, paths))}; keep only one")
    return paths[0] if paths else None


def read_lerobot(pre: Path | None, post: Path | None) -> NormStats:
    """Stats from lerobot's normalizer (state) and unnormalizer (action) processor files."""
    pre_t = _read_safetensors(pre) if pre else {}
    post_t = _read_safetensors(post) if post else {}
    fields = {}
    for stat in STAT_NAMES:
        fields[f"state_{stat}"] = _vec(pre_t.get(f"observation.state.{stat}"), f"{pre}: observation.state.{stat}")
        act = post_t.get(f"action.{stat}", pre_t.get(f"action.{stat}"))
        fields[f"action_{stat}"] = _vec(act, f"{post or pre}: action.{stat}")
    return NormStats(**fields, source="lerobot", path=pre or post)


def _openpi_assets(base: Path) -> list[Path]:
    assets = base / "assets"
    return sorted(assets.rglob("norm_stats.json")) if assets.is_dir() else []


def load_norm_stats(checkpoint_dir, explicit=None, asset_id: str | None = None) -> NormStats | None:
    """Find and load norm stats; None when the checkpoint has none (the caller then runs in model space).

    ``explicit``: a norm_stats.json (or lerobot .safetensors) file, a directory searched like a checkpoint,
    or an asset id under ``<ckpt>/assets``. Otherwise openpi assets are preferred over lerobot files; with
    several assets and no ``asset_id`` a CheckpointError lists them.
    """
    base = None if checkpoint_dir is None else Path(checkpoint_dir)
    if base is not None and base.is_file():
        base = base.parent
    if explicit is not None:
        p = Path(explicit)
        if p.is_file():
            if p.suffix == ".safetensors":
                post = "unnormalizer" in p.name
                return read_lerobot(None if post else p, p if post else None)
            return read_openpi_json(p)
        if p.is_dir():
            found = load_norm_stats(p, asset_id=asset_id)
            if found is None:
                raise CheckpointError(f"norm_stats= {str(p)!r}: no norm_stats.json or lerobot normalizer files in it")
            return found
        if base is not None and (base / "assets" / str(explicit) / "norm_stats.json").is_file():
            asset_id = str(explicit)
        else:
            raise CheckpointError(f"norm_stats= {str(explicit)!r} is neither a file nor an asset id under "
                                  f"{base / 'assets' if base else '<checkpoint>/assets'}")
    if base is None:
        return None
    candidates = _openpi_assets(base)
    ids = [c.parent.relative_to(base / "assets").as_posix() for c in candidates]
    if asset_id is not None:
        target = base / "assets" / asset_id / "norm_stats.json"
        if not target.is_file():
            raise CheckpointError(f"no norm stats for asset_id {asset_id!r} ({target} missing); "
                                  f"available: {ids or 'none'}")
        return read_openpi_json(target)
    if len(candidates) == 1:
        return read_openpi_json(candidates[0])
    if len(candidates) > 1:
        raise CheckpointError(f"several norm stats in {base / 'assets'}: {ids}; choose one with "
                              "norm_stats='<asset_id>' (e.g. " + repr(ids[0]) + ")")
    pre = _single(sorted(base.glob(_LEROBOT_PRE)), "normalizer")
    post = _single(sorted(base.glob(_LEROBOT_POST)), "unnormalizer")
    if pre is None and post is None:
        return None
    return read_lerobot(pre, post)


class Normalizer:
    """Raw state -> model space, model actions -> raw, per pi05_spec.md 1f, with the source's epsilons.

    mode "quantile" (Pi0.5, FAST) or "zscore" (Pi0).
    """

    def __init__(self, stats: NormStats, mode: str = "quantile"):
        if mode not in ("quantile", "zscore"):
            raise ValueError(f"mode must be 'quantile' or 'zscore'; got {mode!r}")
        if stats.source not in ("openpi", "lerobot"):
            raise ValueError(f"unknown norm stats source {stats.source!r}")
        self.stats, self.mode = stats, mode
        self.eps = OPENPI_EPS if stats.source == "openpi" else LEROBOT_EPS
        a, b = ("q01", "q99") if mode == "quantile" else ("mean", "std")
        self._state = self._pair(stats, "state", a, b)
        self._action = self._pair(stats, "action", a, b)

    def _pair(self, stats, group, a, b):
        va, vb = getattr(stats, f"{group}_{a}"), getattr(stats, f"{group}_{b}")
        present = any(getattr(stats, f"{group}_{s}") is not None for s in STAT_NAMES)
        if va is None or vb is None:
            if present:
                raise CheckpointError(
                    f"{self.mode} normalization needs {group} {a} and {b}, but they are null in {stats.path}"
                    + (" (old z-score-only stats; use mode='zscore' or recompute quantiles)"
                       if self.mode == "quantile" else ""))
            return None
        if va.shape != vb.shape:
            raise CheckpointError(f"{stats.path}: {group} {a} has {va.size} values but {b} has {vb.size}")
        return va, vb

    @property
    def state_dim(self) -> int | None:
        return None if self._state is None else self._state[0].size

    @property
    def action_dim(self) -> int | None:
        return None if self._action is None else self._action[0].size

    @staticmethod
    def _emit(y: np.ndarray, out, dtype):
        if out is None:
            return y.astype(dtype)
        np.copyto(out, y, casting="unsafe")
        return out

    def normalize_state(self, raw, out: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """Raw 1-D state -> normalized. Returns float32 unless ``out``/``dtype`` say otherwise; pass
        dtype=np.float64 to discretize exactly the values openpi discretizes."""
        if self._state is None:
            raise CheckpointError(f"no state norm stats in {self.stats.path}; cannot normalize the state")
        x = np.asarray(raw)
        if x.ndim != 1 or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputError(f"state must be a 1-D array of numbers; got shape {x.shape} dtype {x.dtype}")
        n = self.state_dim
        if x.size != n:
            raise InputError(f"state has {x.size} values, expected {n} (from norm stats {self.stats.path})")
        x = x.astype(np.float64)
        if not np.isfinite(x).all():
            raise InputError(f"state contains NaN/inf at indices {np.flatnonzero(~np.isfinite(x)).tolist()}")
        if out is not None and out.shape != (n,):
            raise InputError(f"out must have shape ({n},); got {out.shape}")
        a, b = self._state
        if self.mode == "zscore":
            y = (x - a) / (b + self.eps)
        elif self.stats.source == "openpi":
            y = (x - a) / (b - a + self.eps) * 2.0 - 1.0
        else:  # lerobot: 2*(x-q01)/denom - 1, denom = q99-q01 replaced by eps only where exactly 0
            d = b - a
            y = 2.0 * (x - a) / np.where(d == 0, self.eps, d) - 1.0
        return self._emit(y, out, dtype)

    def normalize_actions(self, raw, out: np.ndarray) -> np.ndarray:
        """Raw actions [..., D] -> model space into ``out`` (float64, same shape; may be ``raw`` itself): the inverse
        of unnormalize_actions, dim for dim (the first action_dim dims by the stats, the padded tail as openpi pads
        it). Used by real-time chunking to put the previous chunk's rows (output units) back into the space the flow
        sampler runs in, once per tick. No allocation per call: the constants are tiled to the rows (kept for the
        largest row count seen), so every ufunc is same-shape in place (numpy buffers a broadcasting ufunc, and
        allocates those buffers per call)."""
        if self._action is None:
            raise CheckpointError(f"no action norm stats in {self.stats.path}; cannot normalize actions")
        x = np.asarray(raw)
        dim, d = self.action_dim, x.shape[-1] if x.ndim else 0
        if x.ndim == 0 or d < dim or out.shape != x.shape or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise InputError(f"actions of shape {x.shape} (last dim >= {dim}) need a C-contiguous float64 out of the "
                             f"same shape; got out {out.shape} {out.dtype}")
        if out is not x:
            np.copyto(out, x)
        rows = x[..., 0].size
        tiled = getattr(self, "_act_tiled", None)
        if tiled is None or tiled[0].shape[0] < rows:
            a, b = self._action
            if self.mode == "zscore":
                denom = b + (self.eps if self.stats.source == "openpi" else 0.0)
            elif self.stats.source == "openpi":
                denom = b - a + self.eps
            else:
                r = b - a
                denom = np.where(r == 0, self.eps, r)
            tiled = self._act_tiled = (np.tile(a, (rows, 1)), np.tile(denom, (rows, 1)))
        view = out.reshape(rows, d)    # a view: out is C-contiguous
        head, a, denom = view[:, :dim], tiled[0][:rows], tiled[1][:rows]
        np.subtract(head, a, out=head)
        if self.mode == "zscore":           # x * (std + eps) + mean, padded with mean 0 / std 1
            np.divide(head, denom, out=head)
            if self.stats.source == "openpi":
                np.divide(view[:, dim:], 1.0 + self.eps, out=view[:, dim:])
        elif self.stats.source == "openpi":  # (x + 1) / 2 * (q99 - q01 + eps) + q01; the tail passes through
            np.divide(head, denom, out=head)
            np.multiply(head, 2.0, out=head)
            np.subtract(head, 1.0, out=head)
        else:                               # lerobot: (x + 1) * r / 2 + q01, r = eps where the range is 0
            np.multiply(head, 2.0, out=head)
            np.divide(head, denom, out=head)
            np.subtract(head, 1.0, out=head)
        return out

    def unnormalize_actions(self, x, out: np.ndarray | None = None, dtype=np.float32) -> np.ndarray:
        """Model actions [..., D] -> raw. The first action_dim dims are unnormalized, the rest follow
        openpi's padding (quantile: pass through; z-score: mean 0, std 1, so x*(1+1e-6) for openpi
        stats and x for lerobot stats).
        ``out`` may have a smaller last axis than ``x``: it then receives the leading dims only."""
        if self._action is None:
            raise CheckpointError(f"no action norm stats in {self.stats.path}; cannot unnormalize actions")
        x = np.asarray(x, dtype=np.float64)
        dim, d = self.action_dim, x.shape[-1] if x.ndim else 0
        if x.ndim == 0 or d < dim:
            raise InputError(f"actions have last dim {d}, expected >= {dim} (from norm stats {self.stats.path})")
        if out is not None and (out.shape[:-1] != x.shape[:-1] or out.shape[-1] > d):
            raise InputError(f"out shape {out.shape} does not fit actions of shape {x.shape}")
        a, b = self._action
        if self.mode == "zscore":
            mean = np.zeros(d)
            std = np.ones(d)
            mean[:dim], std[:dim] = a, b
            # lerobot's inverse is x*std + mean with no eps (normalize_processor.py), unlike openpi's
            y = x * (std + (self.eps if self.stats.source == "openpi" else 0.0)) + mean
        else:
            y = x.copy()
            head = x[..., :dim]
            if self.stats.source == "openpi":
                y[..., :dim] = (head + 1.0) / 2.0 * (b - a + self.eps) + a
            else:
                r = b - a
                y[..., :dim] = (head + 1.0) * np.where(r == 0, self.eps, r) / 2.0 + a
        if out is not None:
            np.copyto(out, y[..., : out.shape[-1]], casting="unsafe")
            return out
        return y.astype(dtype)
