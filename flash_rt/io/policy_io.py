"""What a frontend reads beside the weights, in one place: the tokenizer, the norm stats, the policy's action and
state dims, and the delta mask -- with one set of errors and warnings for every cell of every model (Pi0.5's base,
Pi0's CPU cell, the template an integrator copies).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

from flash_rt.errors import CheckpointError, TokenizerError
from flash_rt.io.action_delta import resolve_delta_mask
from flash_rt.io.norm_stats import Normalizer, load_norm_stats
from flash_rt.io.prompt import FlashRTWarning
from flash_rt.io.tokenizer import Tokenizer, load_tokenizer


@dataclass
class PolicyIO:
    tokenizer: Tokenizer | None           # None: only pre-tokenized prompts work (tokenizer_error says why)
    tokenizer_error: Exception | None
    normalizer: Normalizer | None         # None: state and actions in model space
    action_dim: int                       # the policy's (<= the model's)
    state_dim: int | None
    delta_mask: object                    # what resolve_delta_mask gave: the caller's, the checkpoint's, or None
    delta_mask_source: str | None


def open_policy_io(ckpt_dir, model_action_dim: int, normalization: str, *, tokenizer=None, norm_stats=None,
                   asset_id: str | None = None, action_dim: int | None = None, state_dim: int | None = None,
                   action_delta_mask=None, vocab: int | None = None) -> PolicyIO:
    """A missing tokenizer is a warning (an explicit one that fails raises); missing norm stats are a warning (the
    policy then runs in model space); an action_dim outside 1..model_action_dim raises CheckpointError; the delta
    mask as resolve_delta_mask. `normalization`: "zscore" or "quantile", as the model trained."""
    tok, tok_err = None, None
    try:
        tok = load_tokenizer(ckpt_dir, tokenizer, vocab=vocab)
    except TokenizerError as e:
        if tokenizer is not None:
            raise
        tok_err = e
        warnings.warn(f"{e} -- only pre-tokenized prompts (token_ids, mask) will work", FlashRTWarning)
    stats = load_norm_stats(ckpt_dir, norm_stats, asset_id)
    if stats is None:
        warnings.warn(f"no norm stats found under {ckpt_dir} (assets/<id>/norm_stats.json or lerobot "
                      "processor files): state and actions are used in MODEL space (unnormalized)", FlashRTWarning)
    normalizer = None if stats is None else Normalizer(stats, mode=normalization)
    adim = action_dim or (normalizer.action_dim if normalizer else None) or model_action_dim
    if not 1 <= adim <= model_action_dim:
        raise CheckpointError(f"action_dim={adim} must be in 1..{model_action_dim} (model action dim)")
    sdim = state_dim or (normalizer.state_dim if normalizer else None)
    mask, source = resolve_delta_mask(ckpt_dir, action_delta_mask, adim, sdim)
    return PolicyIO(tok, tok_err, normalizer, adim, sdim, mask, source)
