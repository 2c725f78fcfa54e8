"""What every Pi0.5 torch frontend shares: checkpoint resolution, dims, tokenizer, norm stats, host IO and
the step/predict flow. A hardware frontend adds only its weights, its buffers and how the model runs
(`_load_weights`, `_alloc_buffers`, `_run_model`), so per-hardware files stay small and no hardware
decision is made here.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from flash_rt.errors import CheckpointError
from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.frontends.step_flow import StepFlow
from flash_rt.io.policy_io import open_policy_io
from flash_rt.latency import LatencyRecorder, StartupPhases
from flash_rt.models.pi05.config import infer_config
from flash_rt.models.pi05.host_io import Pi05HostIO
from flash_rt.models.pi05.keys import validate_shapes


def checkpoint_dir(checkpoint) -> Path:
    p = Path(checkpoint)
    if not p.exists():
        raise CheckpointError(f"checkpoint path {str(p)!r} does not exist; expected a directory holding "
                              "model.safetensors (openpi or lerobot layout), the .safetensors file itself, or an openpi "
                              "JAX/Orbax checkpoint directory (params/ + assets/)")
    return p if p.is_dir() else p.parent


def read_config_json(ckpt_dir: Path) -> dict:
    f = ckpt_dir / "config.json"
    if not f.exists():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f} is not valid JSON ({e}); fix or remove it") from e


class Pi05TorchFrontendBase(StepFlow):
    """A subclass may swap the checkpoint format through `open_source` (path, device=...) -> WeightSource with
    key_shapes(), `_checkpoint_dir` and `_config_json` (the jax cells read openpi's Orbax tree this way); the
    spec, the oracle and everything downstream see the same canonical tensors."""
    hardware = "?"
    open_source = staticmethod(open_checkpoint)
    # the model's checkpoint schema and normalization: Pi0.5's here; a Pi0-family model on this base (Pi0's GPU
    # cells) names its own instead of copying the base
    infer_config = staticmethod(infer_config)
    validate_shapes = staticmethod(validate_shapes)
    normalization = "quantile"

    def __init__(self, checkpoint, *, num_views: int | None = None, action_horizon: int | None = None,
                 num_steps: int | None = None, tokenizer=None, norm_stats=None, asset_id: str | None = None,
                 action_dim: int | None = None, state_dim: int | None = None, max_token_len: int | None = None,
                 discrete_state_input: bool | None = None, image_interpolation: str = "area",
                 seed: int | None = None, weight_cache: bool = True, cache_dir=None, action_delta_mask=None,
                 realtime_chunking: bool = False):
        self.startup = StartupPhases()
        t_open = time.perf_counter()
        self.checkpoint = Path(checkpoint)
        self.ckpt_dir = self._checkpoint_dir(checkpoint)
        self.weight_cache, self.cache_dir = weight_cache, cache_dir
        self.source = self.open_source(self.checkpoint)
        shapes = self.source.key_shapes()
        self.cfg = self.infer_config(shapes, self._config_json(), action_horizon=action_horizon,
                                     num_steps=num_steps, max_token_len=max_token_len,
                                     discrete_state_input=discrete_state_input)
        self.validate_shapes(shapes, self.cfg, source=str(self.checkpoint))
        io = open_policy_io(self.ckpt_dir, self.cfg.action_dim, self.normalization, tokenizer=tokenizer,
                            norm_stats=norm_stats, asset_id=asset_id, action_dim=action_dim, state_dim=state_dim,
                            action_delta_mask=action_delta_mask, vocab=self.cfg.vocab)
        self.normalizer, self.delta_mask_source = io.normalizer, io.delta_mask_source
        num_views = 3 if num_views is None else num_views   # base, left wrist, right wrist
        self.num_views = num_views
        self.realtime_chunking = bool(realtime_chunking)
        self.host = Pi05HostIO(self.cfg, num_views, io.tokenizer, io.normalizer, state_dim=io.state_dim,
                               action_dim=io.action_dim, image_interpolation=image_interpolation, seed=seed,
                               alloc=self._host_alloc, tokenizer_error=io.tokenizer_error,
                               action_delta_mask=io.delta_mask, realtime_chunking=realtime_chunking)
        self.latency = LatencyRecorder()
        self.startup.add("open", time.perf_counter() - t_open, "checkpoint index, config, tokenizer, norm stats")
        with self.startup.timed("weights") as ph:
            ph.detail = self._load_weights() or ""
        with self.startup.timed("buffers"):
            self._alloc_buffers()

    # -- checkpoint-format hooks (the jax cells override these) ------------------------------------------
    def _checkpoint_dir(self, checkpoint) -> Path:
        return checkpoint_dir(checkpoint)

    def _config_json(self) -> dict:
        return read_config_json(self.ckpt_dir)

    # -- hardware hooks ------------------------------------------------------------------------------
    def _host_alloc(self, shape, dtype) -> np.ndarray:
        return np.zeros(shape, dtype)

    def _load_weights(self) -> str | None:
        """Load the weights; may return a detail for the start-up log (e.g. "weight cache hit")."""
        raise NotImplementedError

    def _alloc_buffers(self) -> None:
        raise NotImplementedError

    def _run_model(self) -> None:
        """host buffers (images, masks, tokens, noise) -> self.host.model_out (model-space chunk)."""
        raise NotImplementedError

    def calibrate(self, observations=None, percentile: float | None = None):
        raise NotImplementedError(f"{type(self).__name__} runs exact FP32 on the CPU: there are no FP8 scales "
                                  "to calibrate (calibration applies to the GPU frontends)")

    def reference_oracle(self, device: str = "cpu"):
        """This model's FP32 oracle (Policy.reference_chunk): Pi0.5's reference on this checkpoint. The frontend
        provides it so that the facade imports no model."""
        from flash_rt.models.pi05.oracle import ReferenceOracle
        return ReferenceOracle(self.source, self.cfg, device=device)

