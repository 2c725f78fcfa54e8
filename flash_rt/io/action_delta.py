"""Delta actions: which action dims the policy predicts relative to the observed state (openpi's AbsoluteActions).

openpi's training configs that train on deltas (DeltaActions) undo them at inference, after unnormalization:
for every dim i where the mask is True, ``action[..., i] += state[i]`` with the raw state of the observation the
chunk was computed from (pi05_spec.md 1f). Its masks are written compactly with ``make_bool_mask(6, -1, 6, -1)``:
a positive n gives n True (delta) dims, a negative -n gives n False (absolute) dims; ALOHA is (6, -1, 6, -1),
DROID joint-position finetunes (7, -1), DROID's velocity policy uses none. A mask shorter than the action dims
leaves the tail absolute (openpi compares only the mask's own length).

Why a module of its own: the same mask is parsed once at load time and then used by the host output stage (every
cell), by the oracle (reference_chunk) and, inverted, by real-time chunking's prefix (output units -> model space);
one parser gives them one meaning and one set of error messages.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from flash_rt.errors import InputError


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
        raise InputError(f"action_delta_mask {items!r} mixes types" + (f" (not a bool or int: {bad!r})" if bad else "")
                         + "; use all bools (True = delta dim) or all nonzero ints ([6, -1, 6, -1])")
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
    """The mask, applied in place without allocating: ``offset`` (float32 [action_dim]) is set from the state once
    per step (`set_state`), then added to output chunks (`apply`) and subtracted from RTC prefixes (`remove`)."""

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.weight = mask.astype(np.float64)     # 1.0 on delta dims, 0.0 elsewhere (adding 0.0 is exact)
        self.offset = np.zeros(mask.size, np.float64)
        self._n = int(np.flatnonzero(mask)[-1]) + 1

    def set_state(self, state_raw: np.ndarray, state_len: int) -> None:
        if state_len < self._n:
            raise InputError(f"the action delta mask adds state dims 0..{self._n - 1} back to the actions, but the "
                             f"written state has {state_len} values; call write_state(state) with the full state")
        np.multiply(self.weight[:self._n], state_raw[:self._n], out=self.offset[:self._n])

    def apply(self, actions: np.ndarray) -> None:
        np.add(actions, self.offset, out=actions, casting="unsafe")

    def remove(self, actions: np.ndarray) -> None:
        np.subtract(actions, self.offset, out=actions, casting="unsafe")
