"""flash_rt's public entry point: load_model(...) -> Policy. The only module flash_rt_ros imports.

Policy is a thin facade with an explicit, documented surface (docs/stable_api.md): every member forwards
to the hardware frontend chosen by `_PIPELINE_MAP`, and no keyword is silently dropped -- an unsupported
option raises instead of being filtered by signature inspection.
"""
from __future__ import annotations

import inspect
import os

import numpy as np

from flash_rt.errors import HardwareError
from flash_rt.hardware import SUPPORTED_HARDWARE, detect_hardware, pipeline_keys, resolve_frontend

# Loader options every VLA frontend takes (docs/stable_api.md "Loader options"); the rest of a load_model call's
# keywords are the model's and the hardware's own, declared by the frontend's __init__ (see frontend_options).
LOADER_OPTIONS = ("num_views", "action_horizon", "num_steps", "tokenizer", "norm_stats", "asset_id", "action_dim",
                  "state_dim", "image_interpolation", "seed", "weight_cache", "cache_dir")


def supported_configs() -> tuple:
    """The model families of `_PIPELINE_MAP` (built-in cells plus registered plugins), sorted."""
    return tuple(sorted({k[0] for k in pipeline_keys()}))


def supported_frameworks(config: str | None = None) -> tuple:
    """The frameworks of `_PIPELINE_MAP`, or of one model family's cells."""
    return tuple(sorted({k[1] for k in pipeline_keys() if config is None or k[0] == config}))


def frontend_options(cls) -> frozenset | None:
    """The keyword options a frontend class takes: the names its __init__ lists, and, while an __init__ passes
    `**kw` on, those of the next __init__ up its MRO (the convention of every frontend: a cell lists its own
    options and hands the rest to its base). None when the chain never closes (the class takes anything)."""
    names: set = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]   # drop self
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return frozenset(names - {"checkpoint"})
    return None


def check_options(cls, options: dict, where: str) -> None:
    """Raise TypeError naming every option the frontend does not take (never drop one silently)."""
    accepted = frontend_options(cls)
    if accepted is None:
        return
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"load_model({where}): {cls.__name__} does not take option(s) {unknown}; it takes "
                        f"{sorted(accepted)}")


class Policy:
    """One loaded model, ready to run. Not thread-safe: call it from one thread (the ROS node does)."""

    def __init__(self, frontend, config_name: str):
        self._fe = frontend
        self.config_name = config_name
        self._oracle = None

    # -- one-shot ------------------------------------------------------------------------------------
    def predict(self, images, state=None, prompt=None, noise=None) -> np.ndarray:
        """images: list (slot order) or dict (camera name -> image); None = masked slot. Returns a new
        [action_horizon, action_dim] float32 array of unnormalized robot actions."""
        return self._fe.predict(images, state=state, prompt=prompt, noise=noise)

    def set_prompt(self, prompt) -> float:
        """Validate + tokenize, then switch atomically. Returns the setup time in seconds."""
        return self._fe.set_prompt(prompt)

    # -- step API (preallocated buffers; what the ROS node uses) --------------------------------------
    def write_image(self, slot, image) -> None:
        self._fe.host.write_image(slot, image)

    def image_slot(self, slot) -> np.ndarray:
        """The [S, S, 3] uint8 buffer of a camera slot, for writers that resize straight into it."""
        return self._fe.host.images[self._fe.host.slot_index(slot)]

    def set_image_mask(self, slot, present: bool) -> None:
        self._fe.host.image_mask[self._fe.host.slot_index(slot)] = bool(present)

    def write_state(self, state) -> None:
        self._fe.host.write_state(state)

    def write_noise(self, noise) -> None:
        self._fe.host.write_noise(noise)

    def write_action_prefix(self, prefix, frozen: int, blend: int | None = None) -> None:
        """Real-time chunking (load_model(realtime_chunking=True)): constrain the next steps' chunks to start like
        the one executing. `prefix` [n, action_dim] in OUTPUT units (rows of what step()/predict returned, after
        unnormalization and the delta mask), row 0 = the action that executes at the new chunk's row 0; the first
        `frozen` rows come out equal to it, the next `blend` rows (default: the rest of the prefix) are pulled
        toward it with the RTC soft weights. Stays in effect until the next call; `write_action_prefix(None, 0)`
        clears it (plain sampling). Copies into preallocated buffers; converted to model space at the next step
        (it needs that observation's state). Semantics: docs/stable_api.md, models/pi05/rtc.py."""
        write = getattr(self._fe.host, "write_action_prefix", None)
        if write is None:
            raise NotImplementedError(f"{type(self._fe).__name__} has no real-time chunking (its host IO has no "
                                      "write_action_prefix)")
        write(prefix, frozen, blend)

    def step(self, noise=None) -> np.ndarray:
        """Run on the current buffers; returns a preallocated view that the next step overwrites."""
        return self._fe.step(noise)

    def warmup(self, steps: int = 1, noise=None) -> None:
        """Compile kernels / capture graphs on the current buffers (placeholder frames are fine) before the
        first real tick. GPU frontends do not calibrate FP8 on warm-up inputs (see calibration.md)."""
        self._fe.warmup(steps, noise)

    def prepare_inputs(self, noise=None) -> None:
        """Do a step's host work (state -> prompt tokens, noise) without running the model, e.g. before
        reference_chunk() when only the reference is wanted."""
        self._fe.host.prepare_step(noise)

    def calibrate(self, observations=None, percentile: float | None = None):
        return self._fe.calibrate(observations, percentile)

    def latency_stats(self) -> dict:
        return self._fe.latency.stats()

    @property
    def startup_phases(self) -> list:
        """Where the start-up time went: [(phase, seconds, detail)] in the order the phases ran ("open", "weights",
        "buffers", "warmup", and on GPU targets "capture" inside the warm-up and "calibration" on the first real
        tick when no cached FP8 calibration exists). Read it after load_model and again after the first step."""
        return list(self._fe.startup.phases)

    def reference_chunk(self, device: str = "cpu") -> np.ndarray:
        """The FP32 reference model's chunk for exactly the inputs of the last step (images, masks, prompt and
        state tokens, noise), unnormalized and sliced like step()'s output: the oracle for precision checks
        (rosbag reports, acceptance tests). Builds the reference on first use (holds an fp32 copy of the
        weights on `device`). The oracle is the frontend's (its model's reference): the facade imports no model."""
        if self._oracle is None or self._oracle_device != device:
            make = getattr(self._fe, "reference_oracle", None)
            if make is None:
                raise NotImplementedError(f"{type(self._fe).__name__} provides no reference oracle "
                                          "(a frontend's reference_oracle(device) method; docs/adding_new_model.md)")
            self._oracle, self._oracle_device = make(device), device
        return self._oracle.chunk(self._fe.host)

    # -- facts ---------------------------------------------------------------------------------------
    @property
    def config(self):
        return self._fe.cfg

    @property
    def hardware(self) -> str:
        return self._fe.hardware

    @property
    def num_views(self) -> int:
        return self._fe.num_views

    @property
    def camera_names(self) -> tuple:
        return self._fe.host.camera_names

    @property
    def action_horizon(self) -> int:
        return self._fe.cfg.action_horizon

    @property
    def action_dim(self) -> int:
        return self._fe.host.action_dim

    @property
    def state_dim(self):
        return self._fe.host.state_dim

    @property
    def action_delta_mask(self):
        """Which action dims get the observed state added back (tuple of bools, length action_dim), or None."""
        d = getattr(self._fe.host, "delta", None)
        return None if d is None else tuple(bool(v) for v in d.mask)

    @property
    def action_delta_mask_source(self):
        """Who said what action_delta_mask is: "action_delta_mask=" (the caller), the checkpoint file that declares
        it (lerobot layouts, also when they declare no delta dims), or None when nobody did (openpi layouts cannot
        declare it: a caller that must be sure, like the ROS node, should then require the mask)."""
        return getattr(self._fe, "delta_mask_source", None)

    @property
    def realtime_chunking(self) -> bool:
        return bool(getattr(self._fe.host, "realtime_chunking", False))

    @property
    def prompt(self):
        """The current prompt (what the next step uses)."""
        return self._fe.host.prompt_text

    @property
    def last_step_prompt(self):
        """The prompt the last step() actually used; label its output with this, not `prompt`, when prompts
        can be switched from another thread."""
        return self._fe.host.step_prompt

    @property
    def frontend(self):
        """The hardware frontend (internal API; for tests and benchmarks)."""
        return self._fe


def load_model(checkpoint, config: str = "pi05", framework: str = "auto", hardware: str = "auto",
               **options) -> Policy:
    """Load a checkpoint for (config, framework, hardware). See docs/stable_api.md for every option.

    The facade knows no model: it picks the frontend class from `_PIPELINE_MAP` and hands it exactly the options
    the caller gave -- the loader options every frontend takes (LOADER_OPTIONS), the model's own (Pi0.5:
    max_token_len, discrete_state_input) and the hardware's (e.g. precision="bf16" on GPU targets). Defaults are
    the frontend's. An option the frontend does not take raises TypeError naming it. `framework="auto"` reads the
    directory: model.safetensors -> "torch", an openpi Orbax params/ -> "jax".
    """
    configs = supported_configs()
    if config not in configs:
        raise HardwareError(f"config {config!r} is not supported; supported: {configs}")
    frameworks = supported_frameworks(config)
    from flash_rt.executors.checkpoint_format import check_framework, detect_framework
    if framework == "auto" and not os.path.exists(checkpoint):
        # nothing to read the framework from: the frontend reports the missing path, after its own hardware checks
        # (a thor config on a machine without CUDA names the hardware, not a placeholder checkpoint path)
        framework = "torch" if "torch" in frameworks else frameworks[0]
    elif framework == "auto":
        framework = detect_framework(checkpoint)   # model.safetensors -> torch, params/ (Orbax) -> jax
    elif framework in frameworks:
        check_framework(checkpoint, framework)
    if framework not in frameworks:
        raise HardwareError(f"framework {framework!r} is not supported for config {config!r}; supported: "
                            f"{frameworks}")
    hw = detect_hardware() if hardware == "auto" else hardware
    if hw not in SUPPORTED_HARDWARE:
        raise HardwareError(f"hardware {hw!r} is unknown; use 'auto' or one of {SUPPORTED_HARDWARE}")
    cls = resolve_frontend(config, framework, hw)
    check_options(cls, options, f"config={config!r}, framework={framework!r}, hardware={hw!r}")
    return Policy(cls(checkpoint, **options), config)
