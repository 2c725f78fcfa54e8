"""Prompt formatting and tokenization, exactly as openpi's PaligemmaTokenizer.tokenize (pi05_spec.md 1b).

Pi0.5 (discrete_state_input=True) writes the quantile-normalized state into the text:
``"Task: <cleaned>, State: <bins>;\\nAction: "``, tokenized as one string with BOS prepended and no EOS.
Pi0 format (also Pi0.5 with discrete_state_input=False): BOS + encode(cleaned) + encode("\\n"), state unused.
Token ids are right-padded with 0 to max_len; the mask is True on real tokens. Longer prompts are truncated
with a FlashRTWarning (openpi only logs).

Raw prompt text is limited to MAX_PROMPT_CHARS characters: anything longer cannot fit max_token_len
(200) tokens anyway, and rejecting it with a clear error beats silently dropping most of an instruction.
"""

from __future__ import annotations

import warnings

import numpy as np

from flash_rt.errors import InputError

MAX_PROMPT_CHARS = 4096

# 256 equal bins over [-1, 1]; float64 so bin-edge values land exactly where openpi's np.digitize puts them.
_STATE_BIN_EDGES = np.linspace(-1.0, 1.0, 256 + 1)[:-1]


class FlashRTWarning(UserWarning):
    """Something was accepted but changed on the way (e.g. a prompt truncated to max_token_len)."""


def clean_prompt(text: str) -> str:
    """strip(), then "_" -> " ", then "\\n" -> " " (no lower-casing), as openpi. Empty result -> InputError."""
    if not isinstance(text, str):
        raise InputError(f"prompt must be a str (or pre-tokenized (token_ids, mask)); got {type(text).__name__}")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"prompt is {len(text)} characters, at most {MAX_PROMPT_CHARS} supported")
    cleaned = text.strip().replace("_", " ").replace("\n", " ")
    if not cleaned.strip():  # also "___": openpi would accept it, but it carries no instruction
        raise InputError(f"prompt {text!r} is empty after cleaning; give the task instruction as text")
    return cleaned


def discretize_state(state_norm, out: np.ndarray | None = None) -> np.ndarray:
    """Bin indices of a normalized 1-D state: digitize(s, linspace(-1, 1, 257)[:-1]) - 1.

    Compared against float64 edges (float32 input is widened exactly), so s < -1 gives -1 (no lower clip)
    and s >= 0.9921875 (including s > 1) gives 255. NaN/inf -> InputError.
    """
    s = np.asarray(state_norm)
    if s.ndim != 1 or s.size == 0:
        raise InputError(f"normalized state must be a non-empty 1-D array; got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise InputError(f"normalized state must be real numbers; got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if not np.isfinite(s).all():
        bad = np.flatnonzero(~np.isfinite(s)).tolist()
        raise InputError(f"state contains NaN/inf at indices {bad}")
    idx = np.searchsorted(_STATE_BIN_EDGES, s, side="right")  # == np.digitize(s, edges) for increasing edges
    if out is None:
        return idx - 1
    if out.shape != s.shape:
        raise InputError(f"out must have shape {s.shape}; got {out.shape}")
    np.subtract(idx, 1, out=out, casting="unsafe")
    return out


def pi05_prompt_string(cleaned: str, bins) -> str:
    """``"Task: " + cleaned + ", State: " + " ".join(bins) + ";\\nAction: "`` (one trailing space)."""
    return "Task: " + cleaned + ", State: " + " ".join(str(int(b)) for b in bins) + ";\nAction: "


def _check_buffers(ids_out, mask_out, max_len):
    if ids_out is None:
        ids_out = np.empty(max_len, np.int64)
    elif ids_out.shape != (max_len,) or ids_out.dtype != np.int64:
        raise InputError(f"ids_out must be int64 of shape ({max_len},); got {ids_out.dtype} {ids_out.shape}")
    if mask_out is None:
        mask_out = np.empty(max_len, np.bool_)
    elif mask_out.shape != (max_len,) or mask_out.dtype != np.bool_:
        raise InputError(f"mask_out must be bool of shape ({max_len},); got {mask_out.dtype} {mask_out.shape}")
    return ids_out, mask_out


def _fill(tokens, ids_out, mask_out, pad_id=0) -> int:
    n = len(tokens)
    ids_out[:n] = tokens
    ids_out[n:] = pad_id
    mask_out[:n] = True
    mask_out[n:] = False
    return n


class PromptEncoder:
    """Text (+ normalized state) -> (ids int64[max_len], mask bool[max_len], n_tokens)."""

    def __init__(self, tokenizer, max_len: int, discrete_state_input: bool = True):
        if int(max_len) < 1:
            raise InputError(f"max_len must be >= 1; got {max_len}")
        self.tokenizer = tokenizer
        self.max_len = int(max_len)
        self.discrete_state_input = bool(discrete_state_input)

    def tokens(self, text: str, state_norm=None) -> list[int]:
        """Untruncated token list, BOS first."""
        cleaned = clean_prompt(text)
        tok = self.tokenizer
        if self.discrete_state_input:
            if state_norm is None:
                raise InputError(
                    "this model writes the state into the prompt (Pi0.5 discrete_state_input=True); "
                    "a state is required with the prompt")
            return [tok.bos_id] + tok.encode(pi05_prompt_string(cleaned, discretize_state(state_norm)))
        return [tok.bos_id] + tok.encode(cleaned) + tok.encode("\n")  # state unused in the Pi0 format

    def encode(self, text: str, state_norm=None, ids_out: np.ndarray | None = None,
               mask_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Tokenize, right-pad with 0 to max_len, writing into ids_out/mask_out when given."""
        ids_out, mask_out = _check_buffers(ids_out, mask_out, self.max_len)
        tokens = self.tokens(text, state_norm)
        if len(tokens) > self.max_len:
            dropped = len(tokens) - self.max_len
            warnings.warn(
                f"prompt is {len(tokens)} tokens, max_token_len is {self.max_len}: dropped the last {dropped} "
                "tokens (the model sees a truncated instruction/state)", FlashRTWarning, stacklevel=2)
            tokens = tokens[: self.max_len]
        n = _fill(tokens, ids_out, mask_out, pad_id=getattr(self.tokenizer, "pad_id", 0))
        return ids_out, mask_out, n


def validate_pretokenized(ids, mask, max_len: int, vocab_size: int | None = None,
                          ids_out: np.ndarray | None = None,
                          mask_out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Check a user-tokenized prompt and pad it into (ids int64[max_len], mask bool[max_len], n_tokens).

    ids: integer sequence of length <= max_len (entries past max_len are accepted only if masked out and
    are then dropped); mask: bool (or 0/1 integers) of the same length, True on a leading run of real tokens
    then False (right padding, as openpi produces); ids in [0, vocab_size) when vocab_size is known.
    The caller is responsible for the BOS and the Pi0/Pi0.5 format; nothing is added here.
    """
    ids_a, mask_a = np.asarray(ids), np.asarray(mask)
    if ids_a.ndim != 1 or mask_a.ndim != 1:
        raise InputError("pre-tokenized prompt must be 1-D (token_ids, mask); "
                         f"got shapes {ids_a.shape}, {mask_a.shape}")
    if ids_a.shape != mask_a.shape:
        raise InputError(f"token_ids has {ids_a.size} entries but mask has {mask_a.size}; they must match")
    if ids_a.size and not np.issubdtype(ids_a.dtype, np.integer):
        raise InputError(f"token_ids must be integers; got dtype {ids_a.dtype}")
    if mask_a.dtype != np.bool_:
        if mask_a.size and not (np.issubdtype(mask_a.dtype, np.integer) and np.isin(mask_a, (0, 1)).all()):
            raise InputError(f"mask must be bool (or 0/1 integers); got dtype {mask_a.dtype}")
        mask_a = mask_a.astype(np.bool_)
    n = int(mask_a.sum())
    if n == 0:
        raise InputError("pre-tokenized prompt has no real tokens (mask is all False)")
    if not mask_a[:n].all():
        raise InputError("mask must be True on the leading real tokens and False on the right padding after them")
    if ids_a.size > max_len:
        if n > max_len:
            raise InputError(f"pre-tokenized prompt has {n} tokens, at most {max_len} (max_token_len) supported")
        ids_a, mask_a = ids_a[:max_len], mask_a[:max_len]
    hi = np.iinfo(np.int64).max if vocab_size is None else int(vocab_size)
    bad = ids_a[(ids_a < 0) | (ids_a >= hi)]
    if bad.size:
        raise InputError(f"token ids must be in [0, {vocab_size if vocab_size is not None else 'vocab'}); "
                         f"got {bad[:5].tolist()}")
    ids_out, mask_out = _check_buffers(ids_out, mask_out, max_len)
    m = ids_a.size
    ids_out[:m] = ids_a
    ids_out[m:] = 0
    mask_out[:m] = mask_a
    mask_out[m:] = False
    return ids_out, mask_out, n
