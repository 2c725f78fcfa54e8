"""Delta actions: which action dims the policy predicts relative to the observed state (openpi's AbsoluteActions).

openpi's training configs that train on deltas (DeltaActions) undo them at inference, after unnormalization:
for every dim i where the mask is True, ``action[..., i] += state[i]`` with the raw state of the observation the
chunk was computed from (pi05_spec.md 1f). Its masks are written compactly with ``make_bool_mask(6, -1, 6, -1)``:
a positive n gives n True (delta) dims, a negative -n gives n False (absolute) dims; ALOHA is (6, -1, 6, -1),
DROID joint-position finetunes (7, -1), DROID's velocity policy uses none. A mask shorter than the action dims
leaves the tail absolute (openpi compares only the mask's own length).

Where the checkpoint declares the mask (lerobot's saved pipeline / config), `checkpoint_delta_mask` reads it;
openpi's layout cannot declare it (it lives in the Python training config).

Why a module of its own: the same mask is parsed once at load time and then used by the host output stage (every
cell), by the oracle (reference_chunk) and, inverted, by real-time chunking's prefix (output units -> model space);
one parser gives them one meaning and one set of error messages.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from flash_rt.errors import CheckpointError, InputError


def parse_delta_mask(mask, action_dim: int, state_dim: int | None) -> np.ndarray | None:
    """A user's mask -> bool array [action_dim] (True = delta dim), or None for no delta dims.

    Accepts a sequence of bools (``[True]*6 + [False]``; numpy bool arrays too) or openpi's compact form, a
    sequence of nonzero ints (``[6, -1, 6, -1]``). Raises InputError naming what is wrong: a string or a scalar,
    mixed bools and ints, a 0 in the compact form, more dims than the action has, or a delta dim the state does
    not have (the state is what gets added back)."""
    if mask is None:
        return None
    if isinstance(mask, (str, bytes)) or not isinstance(mask, (Sequence, np.ndarray)):
        raise InputError(f"action_delta_mask must be a list of bools (True = delta dim) or openpi's compact form, "
                         f"a list of nonzero ints like [6, -1, 6, -1]; got {type(mask).__name__} {mask!r}")
    items = list(np.asarray(mask).tolist()) if isinstance(mask, np.ndarray) else list(mask)
    if isinstance(mask, np.ndarray) and mask.ndim != 1:
        raise InputError(f"action_delta_mask must be 1-D; got shape {mask.shape}")
    if not items:
        raise InputError("action_delta_mask is empty; pass None for a policy without delta actions")
    is_bool = [isinstance(v, (bool, np.bool_)) for v in items]
    is_int = [isinstance(v, (int, np.integer)) and not b for v, b in zip(items, is_bool)]
    if all(is_bool):
        flags = [bool(v) for v in items]
    elif all(is_int):
        flags = []
        for n in items:
            if n == 0:
                raise InputError(f"action_delta_mask {items}: 0 is not allowed in the compact form (n > 0: n delta "
                                 "dims, -n: n absolute dims); for a per-dim mask pass True/False values")
            flags += [n > 0] * abs(int(n))
    else:
        bad = [v for v, b, i in zip(items, is_bool, is_int) if not (b or i)]
        what = f"has values that are neither bool nor int: {bad!r}" if bad else "mixes bools and ints"
        raise InputError(f"action_delta_mask {items!r} {what}; use all bools (True = delta dim) or all nonzero ints "
                         "(openpi's compact form, [6, -1, 6, -1])")
    if len(flags) > action_dim:
        raise InputError(f"action_delta_mask covers {len(flags)} dims but the policy returns action_dim="
                         f"{action_dim}; the mask may be shorter (the tail is absolute), not longer")
    out = np.zeros(action_dim, np.bool_)
    out[:len(flags)] = flags
    if not out.any():
        return None
    last = int(np.flatnonzero(out)[-1])
    if state_dim is not None and last >= state_dim:
        raise InputError(f"action_delta_mask makes action dim {last} a delta, but the state has only {state_dim} "
                         "values: a delta dim needs the state dim of the same index to add back")
    return out


class DeltaActions:
    """The mask, applied in place without allocating: the offset (the state on delta dims, 0.0 elsewhere, so adding
    it to an absolute dim is exact) is set once per step (`set_state`), then added to output chunks (`apply`,
    float32 like the chunk) and subtracted from RTC prefixes (`remove`, float64, the host's scratch).

    Why the offset is kept tiled to [horizon, action_dim]: numpy runs a ufunc that broadcasts (or casts) through a
    buffered iterator that allocates its buffers on every call; same-shape, same-dtype contiguous operands take the
    plain loop, which allocates nothing. The tiling is one broadcast copy per step (np.copyto needs no buffer)."""

    def __init__(self, mask: np.ndarray, horizon: int):
        self.mask = mask
        self.weight = mask.astype(np.float64)
        self.offset = np.zeros(mask.size, np.float64)
        self._tiled = np.zeros((horizon, mask.size), np.float64)
        self._tiled32 = np.zeros((horizon, mask.size), np.float32)
        self._n = int(np.flatnonzero(mask)[-1]) + 1

    def set_state(self, state_raw: np.ndarray, state_len: int) -> None:
        if state_len < self._n:
            raise InputError(f"the action delta mask adds state dims 0..{self._n - 1} back to the actions, but the "
                             f"written state has {state_len} values; call write_state(state) with the full state")
        np.multiply(self.weight[:self._n], state_raw[:self._n], out=self.offset[:self._n])
        np.copyto(self._tiled, self.offset)
        np.copyto(self._tiled32, self._tiled, casting="same_kind")

    def apply(self, actions: np.ndarray) -> None:
        """actions [n <= horizon, action_dim] float32 (what step() returns), in place."""
        np.add(actions, self._tiled32[:len(actions)], out=actions)

    def remove(self, actions: np.ndarray) -> None:
        """actions [n <= horizon, action_dim] float64, in place."""
        np.subtract(actions, self._tiled[:len(actions)], out=actions)


# lerobot's processor step that carries the delta transform (its ProcessorStepRegistry name) and its config keys
LEROBOT_RELATIVE_STEP = "relative_actions_processor"


def _lerobot_mask(exclude, names, action_dim: int) -> list[bool]:
    """lerobot's rule (RelativeActionsProcessorStep._build_mask, paraphrased): without exclusions or without action
    names every dim is relative; otherwise dim i is absolute when an excluded token equals its name or is a substring
    of it (case-insensitive), and dims past the names are relative."""
    tokens = [str(t).lower() for t in (exclude or []) if t]
    if not tokens or names is None:
        return [True] * action_dim
    mask = [not any(t == str(n).lower() or t in str(n).lower() for t in tokens) for n in list(names)[:action_dim]]
    return mask + [True] * (action_dim - len(mask))


def checkpoint_delta_mask(ckpt_dir, action_dim: int) -> tuple[list[bool] | None, str | None]:
    """The delta mask a checkpoint itself declares, and where it was read: (mask or None, source), with source None
    when the checkpoint does not say either way (then only the user can).

    openpi's layout cannot declare one: the mask is part of its Python training config, and neither its config.json
    nor assets/<id>/norm_stats.json carries it -> (None, None). lerobot's can: the saved preprocessor pipeline
    (policy_preprocessor.json) lists a `relative_actions_processor` step with {enabled, exclude_joints,
    action_names}, which is what lerobot itself loads at inference; older saves carry only the policy config.json
    fields use_relative_actions / relative_exclude_joints / action_feature_names. The pipeline file wins."""
    d = Path(ckpt_dir)
    pre = d / "policy_preprocessor.json"
    if pre.exists():
        try:
            steps = json.loads(pre.read_text()).get("steps", [])
        except (json.JSONDecodeError, AttributeError) as e:
            raise InputError(f"{pre} is not a lerobot pipeline JSON ({e})") from e
        for st in steps:
            if isinstance(st, dict) and st.get("registry_name") == LEROBOT_RELATIVE_STEP:
                c = st.get("config") or {}
                where = f"{pre} ({LEROBOT_RELATIVE_STEP})"
                if not c.get("enabled"):
                    return None, where
                return _lerobot_mask(c.get("exclude_joints"), c.get("action_names"), action_dim), where
    cfg_file = d / "config.json"
    if cfg_file.exists():
        try:
            cfg = json.loads(cfg_file.read_text())
        except json.JSONDecodeError:
            return None, str(cfg_file)   # read_config_json reports a broken config.json on its own
        if isinstance(cfg, dict) and isinstance(cfg.get("use_relative_actions"), bool):
            where = f"{cfg_file} (use_relative_actions)"
            if not cfg["use_relative_actions"]:
                return None, where
            return (_lerobot_mask(cfg.get("relative_exclude_joints"), cfg.get("action_feature_names"), action_dim),
                    where)
    return None, None


def resolve_delta_mask(ckpt_dir, action_delta_mask, action_dim: int, state_dim: int | None):
    """The delta mask a policy uses and who said so: the caller's `action_delta_mask` when given (source
    "action_delta_mask="), else what the checkpoint declares (checkpoint_delta_mask), checked against the policy's
    dims here so a declared mask that does not fit fails at load with CheckpointError naming the file. Every cell's
    frontend resolves it this way (one rule for the CPU and GPU cells of every model)."""
    if action_delta_mask is not None:
        return action_delta_mask, "action_delta_mask="
    mask, source = checkpoint_delta_mask(ckpt_dir, action_dim)
    if mask is not None:
        try:
            parse_delta_mask(mask, action_dim, state_dim)
        except InputError as e:
            raise CheckpointError(f"the delta mask declared by {source} does not fit this policy: {e}. Pass "
                                  "action_delta_mask= to override it") from e
    return mask, source
