"""Host side of one Pi0.5 inference: observation buffers, prompt/state tokens, output unnormalization.

Shared by every hardware frontend: the per-tick host work (normalize the state, discretize it into the
prompt, tokenize, pick the noise, unnormalize the chunk) is the same whether the model then runs on the CPU
or replays a CUDA graph. All buffers are allocated once, through `alloc` -- GPU frontends pass an allocator
that returns numpy views of pinned torch tensors, so H2D copies are async and nothing is allocated per tick.

Not thread-safe by design: the ROS node serializes writes and steps on one executor thread. A prompt
switch is one attribute assignment of an immutable `_Prompt`, so a step sees either the old or the new
prompt, never a mix.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from flash_rt.errors import InputError, TokenizerError
from flash_rt.io.action_delta import DeltaActions, parse_delta_mask
from flash_rt.io.images import CAMERA_NAMES, prepare_image
from flash_rt.io.prompt import PromptEncoder, clean_prompt, validate_pretokenized
from flash_rt.models.pi05.config import Pi05Config
from flash_rt.models.pi05.rtc import ActionPrefix


def _np_alloc(shape, dtype) -> np.ndarray:
    return np.zeros(shape, dtype)


@dataclasses.dataclass(frozen=True)
class _Prompt:
    text: str | None                      # cleaned text, or None for a pre-tokenized prompt
    ids: np.ndarray | None = None         # pre-tokenized ids [L] (int64)
    mask: np.ndarray | None = None        # pre-tokenized mask [L] (bool)


class Pi05HostIO:
    def __init__(self, cfg: Pi05Config, num_views: int, tokenizer, normalizer, *, state_dim: int | None,
                 action_dim: int, image_interpolation: str = "area", seed: int | None = None,
                 alloc: Callable[[tuple, type], np.ndarray] = _np_alloc, tokenizer_error: Exception | None = None,
                 action_delta_mask=None, realtime_chunking: bool = False):
        if not 1 <= num_views <= len(CAMERA_NAMES):
            raise InputError(f"num_views must be 1..{len(CAMERA_NAMES)}; got {num_views}")
        self.cfg, self.num_views = cfg, num_views
        self.camera_names = CAMERA_NAMES[:num_views]
        self.normalizer = normalizer
        self.state_dim = state_dim
        self.action_dim = action_dim
        self.interpolation = image_interpolation
        self._tokenizer_error = tokenizer_error
        self.encoder = None if tokenizer is None else PromptEncoder(tokenizer, cfg.max_token_len,
                                                                    cfg.discrete_state_input)
        self.vocab = cfg.vocab
        s, h = cfg.image_size, cfg.action_horizon
        self.images = alloc((num_views, s, s, 3), np.uint8)
        self.image_mask = alloc((num_views,), np.bool_)
        self.token_ids = alloc((cfg.max_token_len,), np.int64)
        self.token_mask = alloc((cfg.max_token_len,), np.bool_)
        self.noise = alloc((h, cfg.action_dim), np.float32)
        self.model_out = alloc((h, cfg.action_dim), np.float32)   # written by the frontend
        self.actions = np.zeros((h, action_dim), np.float32)       # what step() returns
        nstate = state_dim or cfg.action_dim
        self.state_raw = np.zeros(nstate, np.float64)
        self.state_norm = np.zeros(nstate, np.float64)
        self._state_len = 0
        self._rng = np.random.default_rng(seed)
        # output stage: delta dims get the observed state added back (openpi's AbsoluteActions), see action_delta
        mask = parse_delta_mask(action_delta_mask, action_dim, state_dim or (normalizer.state_dim if normalizer
                                                                             else None))
        self.delta = None if mask is None else DeltaActions(mask, h)
        # real-time chunking: the previous chunk's rows, inpainted during sampling (models/pi05/rtc.py)
        self.realtime_chunking = bool(realtime_chunking)
        self.rtc = None
        if self.realtime_chunking:
            if normalizer is not None and normalizer.action_dim is not None and action_dim < normalizer.action_dim:
                raise InputError(f"realtime_chunking needs every normalized action dim back in model space, but "
                                 f"action_dim={action_dim} < the norm stats' {normalizer.action_dim}; leave "
                                 "action_dim unset or at least that")
            self.rtc = ActionPrefix(h, action_dim, cfg.action_dim, alloc)
        self._prompt: _Prompt | None = None
        self.n_tokens = 0
        self.step_prompt: str | None = None  # the prompt the last step actually used (a switch may follow it)

    # -- observations ------------------------------------------------------------------------------
    def slot_index(self, slot) -> int:
        if isinstance(slot, str):
            if slot not in self.camera_names:
                raise InputError(f"unknown camera {slot!r}; this policy has {list(self.camera_names)}")
            return self.camera_names.index(slot)
        if not isinstance(slot, (int, np.integer)) or not 0 <= slot < self.num_views:
            raise InputError(f"camera slot must be 0..{self.num_views - 1} or a name in "
                             f"{list(self.camera_names)}; got {slot!r}")
        return int(slot)

    def write_image(self, slot, image) -> None:
        i = self.slot_index(slot)
        if image is None:  # a missing camera: black image, masked (openpi)
            self.images[i].fill(0)
            self.image_mask[i] = False
            return
        prepare_image(image, size=self.cfg.image_size, out=self.images[i], interpolation=self.interpolation)
        self.image_mask[i] = True

    def write_images(self, images) -> None:
        if isinstance(images, Mapping):
            unknown = set(images) - set(self.camera_names)
            if unknown:
                raise InputError(f"unknown camera names {sorted(unknown)}; expected {list(self.camera_names)}")
            items = [(n, images.get(n)) for n in self.camera_names]
        elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
            if len(images) > self.num_views:
                raise InputError(f"got {len(images)} images, this policy has {self.num_views} camera slots")
            items = list(enumerate(list(images) + [None] * (self.num_views - len(images))))
        else:
            raise InputError(f"images must be a list (slot order) or a dict {list(self.camera_names)} -> image; "
                             f"got {type(images).__name__}")
        for slot, img in items:
            self.write_image(slot, img)

    def write_state(self, state) -> None:
        x = np.asarray(state)
        if x.ndim != 1 or x.size == 0 or not np.issubdtype(x.dtype, np.number):
            raise InputError(f"state must be a non-empty 1-D array of numbers; got shape {x.shape} dtype {x.dtype}")
        expect = self.state_dim or (self.normalizer.state_dim if self.normalizer else None)
        if expect is not None and x.size != expect:
            raise InputError(f"state has {x.size} values, expected {expect}")
        if expect is None and x.size > self.state_raw.size:
            raise InputError(f"state has {x.size} values, at most {self.state_raw.size} supported")
        if not np.isfinite(x).all():
            raise InputError(f"state contains NaN/inf at indices {np.flatnonzero(~np.isfinite(x)).tolist()}")
        n = x.size
        self.state_raw[:n] = x
        if self.normalizer is not None:
            self.normalizer.normalize_state(self.state_raw[:n], out=self.state_norm[:n], dtype=np.float64)
        else:
            self.state_norm[:n] = self.state_raw[:n]
        self._state_len = n

    def write_model_state(self, out: np.ndarray) -> np.ndarray:
        """The normalized state, zero-padded, written into `out` (a model's continuous state input: Pi0's state_proj,
        the template's); in place, no allocation. A cell's step and its reference oracle both derive the state here,
        so reference_chunk() after prepare_inputs() (no engine step, as the rosbag report does) sees THIS
        observation's state, not the one the engine last ran on."""
        n = min(self._state_len, out.size)
        out[:n] = self.state_norm[:n]
        out[n:] = 0.0
        return out

    def write_noise(self, noise) -> None:
        x = np.asarray(noise)
        if x.shape != self.noise.shape:
            raise InputError(f"noise must have shape {self.noise.shape} (horizon, model action dim); got {x.shape}")
        if not np.isfinite(x).all():
            raise InputError("noise contains NaN/inf")
        np.copyto(self.noise, x, casting="same_kind")

    # -- prompt ------------------------------------------------------------------------------------
    def prepare_prompt(self, prompt) -> _Prompt:
        """Validate (and for text: trial-tokenize) a prompt without touching the live one."""
        if isinstance(prompt, tuple) and len(prompt) == 2:
            ids, mask, _ = validate_pretokenized(prompt[0], prompt[1], self.cfg.max_token_len, self.vocab)
            return _Prompt(None, ids.copy(), mask.copy())
        if self.encoder is None:
            raise TokenizerError(f"cannot tokenize a text prompt: {self._tokenizer_error}. Pass tokenizer= to "
                                 "load_model, or give the prompt pre-tokenized as (token_ids, mask)")
        cleaned = clean_prompt(prompt)
        state = self.state_norm[:self._state_len] if self._state_len else np.zeros(max(self.state_dim or 1, 1))
        ids = np.zeros(self.cfg.max_token_len, np.int64)
        mask = np.zeros(self.cfg.max_token_len, np.bool_)
        self.encoder.encode(cleaned, state if self.cfg.discrete_state_input else None, ids, mask)
        return _Prompt(cleaned)

    def apply_prompt(self, prepared: _Prompt) -> None:
        self._prompt = prepared  # atomic switch
        if prepared.text is None:
            np.copyto(self.token_ids, prepared.ids)
            np.copyto(self.token_mask, prepared.mask)
            self.n_tokens = int(prepared.mask.sum())

    @property
    def prompt_text(self) -> str | None:
        return None if self._prompt is None else self._prompt.text

    # -- per tick ----------------------------------------------------------------------------------
    def prepare_step(self, noise=None) -> None:
        """Everything the host does before the model runs: tokens for this state, the noise."""
        p = self._prompt  # read once: a concurrent switch lands before or after this step, never inside it
        if p is None:
            raise InputError("no prompt set: call set_prompt(text) or pass prompt= to predict")
        self.step_prompt = p.text if p.text is not None else "<pre-tokenized>"
        if p.text is not None:
            if self.cfg.discrete_state_input and self._state_len == 0:
                raise InputError("no state written: this Pi0.5 model puts the state into the prompt; "
                                 "call write_state(state) or pass state= to predict")
            state = self.state_norm[:self._state_len] if self.cfg.discrete_state_input else None
            _, _, self.n_tokens = self.encoder.encode(p.text, state, self.token_ids, self.token_mask)
        if not self.image_mask.any():
            raise InputError("no camera image written: at least one camera slot must hold an image")
        if noise is not None:
            self.write_noise(noise)
        else:
            self._rng.standard_normal(out=self.noise, dtype=np.float32)
        if self.delta is not None:   # this observation's state: added to the output, removed from an RTC prefix
            self.delta.set_state(self.state_raw, self._state_len)
        if self.rtc is not None:
            self.rtc.prepare(self.normalizer, self.delta)

    def write_action_prefix(self, prefix, frozen: int, blend: int | None = None) -> None:
        """Real-time chunking's constraint for the next steps (models/pi05/rtc.py ActionPrefix.write)."""
        if self.rtc is None:
            raise InputError("write_action_prefix needs a policy loaded with realtime_chunking=True (the forward "
                             "then carries the inpainting buffers); this one was loaded without it")
        self.rtc.write(prefix, frozen, blend)

    def finish_step(self) -> np.ndarray:
        """Model-space chunk (self.model_out) -> robot actions in self.actions (preallocated)."""
        return self.to_output(self.model_out, self.actions)

    def to_output(self, model_out: np.ndarray, out: np.ndarray) -> np.ndarray:
        """A model-space chunk -> robot actions in `out` ([horizon, action_dim] float32): unnormalized, then the delta
        dims get the step's observed state added back (openpi's policy output, not only its model output). The one
        output stage: step() and every reference oracle go through it, so precision checks compare like with like."""
        if self.normalizer is not None and self.normalizer.action_dim is not None:
            self.normalizer.unnormalize_actions(model_out, out=out)
        else:
            np.copyto(out, model_out[:, :self.action_dim])
        if self.delta is not None:
            self.delta.apply(out)
        return out
