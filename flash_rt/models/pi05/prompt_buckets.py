"""Prefix-length buckets: one pre-captured forward per count of prompt slots, the smallest that holds the prompt.

Why: users get openpi's default of 200 prompt slots, while a real Pi0.5 prompt with its state tokens is ~70 tokens.
The prefix (Gemma over images + prompt slots) and the decoder's key length scale with the slots: on an H200 two
views replayed 10.18 ms at 200 slots against 9.41 ms at 64 (issue 17). With buckets of 64, 128 and max_token_len
slots, every bucket's graph is captured at warm-up and a step replays the smallest that holds its tokens: the
short-prompt time with the long-prompt capacity, never a capture in the tick.

A bucket of T slots is the same forward (models/pi05/cuda_forward.py) on other dims: its prefix computes
prefix_rows = image tokens + T rows, over views of the full-length buffers -- every buffer whose rows are prefix
rows is the leading part of the full one (a storage view where the layout is [.., P, ..]), so a bucket adds no
activation memory. A bucket owns only what cannot be shared: its key-bias row and its attention workspaces. Slot
counts are rounded up so that image tokens + T is aligned: then every prefix row of the bucket is written from the
prompt's mask each replay, and no row left over from a longer bucket's replay can become a visible key.

Two key layouts for the action expert (the flow steps themselves are the full length's code, untouched):
* "exact" (default): the suffix's keys stay where the full length has them (prefix_len, kv_len unchanged); the rows
  between the bucket's prefix and prefix_len are masked in the bucket's key bias. The chunk is bit-identical to the
  full length's: the masked keys contribute exact zeros (their score is the -2.38e38 bias whatever the stale K row
  holds -- |q.k| is far below that float's ulp -- so exp underflows to 0, the running max and its rescale stay
  exactly 1.0, and 0 * a finite V adds +0), and every unmasked key sits in the same key block and key split as at
  full length, so the fp32 online-softmax sums group alike. The decoder attention still reads the full key length.
* "compact": the suffix's keys follow the bucket's prefix (prefix_len = prefix_rows, kv_len shrinks too), so the
  decoder attention reads fewer keys. Not bit-identical: the suffix's keys then fall into other key blocks / key
  splits beside other prompt keys, the fp32 sums group differently (ulp-level), and FP8 roundings downstream can
  flip (micro model under the interpreter: cosine >= 0.9999999 to the full length, test_prompt_buckets_interpret).

The prefix rows themselves (images + prompt, their K/V) are bit-identical in both layouts: the masked tail
contributes exact zeros in the prefix attention, whose key splits keep the full length's boundaries (build_buckets:
the split-softmax rule would otherwise pick other ones for fewer keys -- Hopper, one view: 192 keys a split at 200
slots, 128 at 64), and the row-wise kernels do not depend on the row count -- given
GEMMs whose row results do not depend on M (true of the Triton kernels and torch's CPU GEMMs; cuBLASLt may pick
another algorithm for another M: the GPU suite measures it).

Which bucket: chosen per step on the host from the step's token count (the tokenizer's, state tokens included:
Pi0.5 writes the discrete state into the prompt each tick, so the count moves with the state). A host-side index
lookup over a few ints -- the graphs are all captured already, so a state that grows the prompt past a bucket
costs the next bucket's replay, never a capture. Tokens beyond the prompt are masked as at full length.

FP8 scales: one set per site for every bucket. The calibration twin runs at full length; a bucket's prefix
activations are the full length's rows without the padded tail (a padded row changes no valid row: its key is
masked), so each prefix site's amax in a bucket is at most the full length's, and the expert's inputs are the same
bits ("exact") or differ by the ulp-level regrouping ("compact"), within the scales' margin.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterable

import torch

from flash_rt.errors import InputError
from flash_rt.models.pi05.dims import Pi05Dims, round_up

# openpi's Pi0.5 default is 200 slots; a Pi0.5 prompt with its state is ~70 tokens, a long instruction ~100
DEFAULT_BUCKETS = (64, 128)
_MASKED = -2.3819763e38   # the key bias of a key that no query may see (bf16's lowest, as device_buffers)


def bucket_slots(option, max_tokens: int, image_tokens: int, align: int) -> tuple[int, ...]:
    """The bucket slot counts, ascending, the last always `max_tokens` (the full length).

    option: True or None (DEFAULT_BUCKETS), False / () (off: the full length only) or slot counts (ints >= 1). Each count
    is rounded up so image_tokens + slots is a multiple of `align`; counts that reach the full prefix length are
    dropped (the full length covers them)."""
    if option is None or option is True:
        option = DEFAULT_BUCKETS
    elif option is False:
        option = ()
    try:
        counts = [int(x) for x in option]
        ok = all(not isinstance(x, bool) and int(x) == x and x >= 1 for x in option)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"prompt_buckets must be True (the buckets {DEFAULT_BUCKETS}), False / () for off, or prompt "
                         f"slot counts (integers >= 1), e.g. (64, 128); got {option!r}")
    full_prefix = round_up(image_tokens + max_tokens, align)
    out = {round_up(image_tokens + t, align) - image_tokens for t in counts}
    return tuple(sorted(t for t in out if image_tokens + t < full_prefix)) + (int(max_tokens),)


def choose_bucket(slots: tuple[int, ...], n_tokens: int) -> int:
    """Index of the smallest bucket whose slots hold n_tokens; the last (full length) when none does -- the host
    truncates a prompt to max_token_len, so the full length always holds it."""
    for i, t in enumerate(slots):
        if n_tokens <= t:
            return i
    return len(slots) - 1


LAYOUTS = ("exact", "compact")


def bucket_dims(d: Pi05Dims, slots: int, align: int, layout: str = "exact") -> Pi05Dims:
    """The full length's dims with `slots` prompt slots (image_tokens + slots already aligned): the prefix computes
    that many rows; with layout "compact" the expert's keys follow it (prefix_len and kv_len shrink too)."""
    P = d.image_tokens + slots
    if P % align or slots > d.max_tokens:
        raise ValueError(f"bucket of {slots} slots: {d.image_tokens} image tokens + slots must be a multiple of "
                         f"{align} and slots <= {d.max_tokens}")
    if layout == "exact":
        return dataclasses.replace(d, max_tokens=slots, prefix_rows=P)
    if layout == "compact":
        return dataclasses.replace(d, max_tokens=slots, prefix_rows=P, prefix_len=P,
                                   kv_len=round_up(P + d.horizon, align))
    raise InputError(f"prompt_bucket_layout must be one of {LAYOUTS}; got {layout!r}")


def _lead(t: torch.Tensor, shape) -> torch.Tensor:
    """The leading numel(shape) elements of t's storage as a contiguous tensor of `shape` (no copy)."""
    n = 1
    for s in shape:
        n *= s
    return t.reshape(-1)[:n].view(*shape)


def bucket_buffers(b: dict, d: Pi05Dims, db: Pi05Dims) -> dict:
    """Buffers of bucket `db` over the full length's `b` (dims `d`): views, but its own key-bias row."""
    P, Pb, T = d.prefix_len, db.prefix_rows, db.max_tokens
    out = dict(b)
    for k in ("x", "h", "h8", "qkv", "att", "att8", "o", "gu", "act", "act8", "down", "pad", "pos"):
        out[k] = b[k][:Pb]
    for k in ("token_ids", "token_mask", "emb_rows"):
        out[k] = b[k][:T]
    q = b["q"]
    out["q"] = _lead(q, (q.shape[0], Pb, q.shape[2]))
    for k in ("o_t", "down_t", "gu_t"):   # transposed results [N, P]: the leading [N, Pb] of the same storage
        if b[k].shape[1] != P:
            raise ValueError(f"bucket_buffers: {k} is {tuple(b[k].shape)}, expected [N, {P}]")
        out[k] = _lead(b[k], (b[k].shape[0], Pb))
    # rows :Pb are the prompt's (written each replay); then masked up to the suffix's keys (the "exact" layout's
    # gap), the suffix's own keys visible, the aligned tail never
    bias = torch.zeros(db.kv_len, dtype=b["dec_bias"].dtype, device=b["dec_bias"].device)
    bias[Pb:db.prefix_len] = _MASKED
    bias[db.prefix_len + db.horizon:] = _MASKED
    out["dec_bias"] = bias
    return out


@dataclasses.dataclass
class Bucket:
    slots: int
    d: Pi05Dims
    b: dict
    attn: object
    graph: object = None


class PromptBuckets:
    """The buckets of one frontend, the active one (the last step's), and how many graphs were ever captured (the
    GPU suite checks that switching prompts across buckets never adds one)."""

    def __init__(self, buckets: Iterable[Bucket]):
        self.buckets = sorted(buckets, key=lambda bk: bk.slots)
        self.slots = tuple(bk.slots for bk in self.buckets)
        self.active = self.full
        self.captures = 0

    @property
    def full(self) -> Bucket:
        return self.buckets[-1]

    def bucket(self, slots: int) -> Bucket:
        if slots not in self.slots:
            raise InputError(f"no prompt bucket of {slots} slots; this policy has {list(self.slots)}")
        return self.buckets[self.slots.index(slots)]

    def select(self, n_tokens: int) -> Bucket:
        """The bucket of a step with n_tokens prompt tokens (host-side, nothing captured or allocated)."""
        self.active = self.buckets[choose_bucket(self.slots, n_tokens)]
        return self.active

    def capture(self, capture_one: Callable[[Bucket], object]) -> None:
        """Capture every bucket's graph (warm-up)."""
        for bk in self.buckets:
            bk.graph = capture_one(bk)
            self.captures += 1

    def extra_bytes(self) -> int:
        """Device memory the buckets add beside the full length: their key-bias rows and attention workspaces."""
        n = 0
        for bk in self.buckets[:-1]:
            n += bk.b["dec_bias"].numel() * bk.b["dec_bias"].element_size()
            for ws in getattr(bk.attn, "ws", {}).values():
                n += sum(t.numel() * t.element_size() for t in (ws.pm, ws.pl, ws.pacc))
        return n


def build_buckets(d: Pi05Dims, b: dict, attn, slots: tuple[int, ...], align: int,
                  make_attn: Callable[[Pi05Dims, dict], object], layout: str = "exact") -> PromptBuckets:
    """The full length (d, b, attn) and a bucket for every smaller slot count; make_attn(dims, split_like) builds a
    bucket's attention backend (its own workspaces). split_like: the full length's split-softmax workspaces (the
    prefix's; in the exact layout the decoder's too), whose tiles and keys per split the bucket's take -- the split
    rule and the row-count-dependent tiles would otherwise pick others for fewer keys. The prefix attention of a
    bucket then sums every key in the same block and split as at full length (the full length's further splits hold masked keys only, which add exact zeros in the merge: weight
    exp(-2.38e38 - m) = 0; with one split left the bucket writes acc / l directly, the merge's 1 * acc / (1 * l))."""
    if layout not in LAYOUTS:
        raise InputError(f"prompt_bucket_layout must be one of {LAYOUTS}; got {layout!r}")
    if slots[-1] != d.max_tokens:
        raise ValueError(f"build_buckets: the last bucket must be the full length {d.max_tokens}, got {slots}")
    out = [Bucket(d.max_tokens, d, b, attn)]
    # the prefix's keys are the full length's first rows in both layouts; the decoder's only in the exact one
    split_like = {site: ws for site, ws in getattr(attn, "ws", {}).items() if layout == "exact" or site == "prefix"}
    for t in slots[:-1]:
        db = bucket_dims(d, t, align, layout)
        out.append(Bucket(t, db, bucket_buffers(b, d, db), make_attn(db, split_like)))
    return PromptBuckets(out)
