"""Pi0TorchFrontendCpu: exact FP32 Pi0 on the CPU -- STEP 5 of 5 of the template, filled for Pi0.

Copied from `flash_rt/frontends/torch/_template/frontend.py` and renamed by its README; registered by ONE map line
`("pi0", "torch", "cpu")` in `flash_rt/hardware/__init__.py`. What Pi0 fills in:

| Pi0 / openpi policy wrapper                       | here                                                  |
|---------------------------------------------------|-------------------------------------------------------|
| load options                                      | the loader options + `max_token_len` (default 48) + `num_threads` (as Pi0.5's CPU cell) + `action_delta_mask` (the host's output stage) |
| `load_state_dict` (openpi or lerobot keys)         | `open_checkpoint` (strips lerobot's `model.`, aliases the tied embedding) + `infer_config` + `validate_shapes` + `WeightLoader` |
| prompt `BOS + text + "\n"`, state not in the text | the Pi0-family host IO with `cfg.discrete_state_input=False` |
| z-score normalization of state and actions        | `normalization = "zscore"` (`open_policy_io` builds the Normalizer) |
| the continuous state -> `state_proj`              | `self.state`: the host's normalized state, zero-padded to the model's state width, each step |
| the FP32 reference                                | `reference_oracle` -> `flash_rt.models.pi0.oracle.Pi0Oracle` |
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from flash_rt.errors import CheckpointError
from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.executors.weight_loader import WeightLoader
from flash_rt.frontends.step_flow import StepFlow
from flash_rt.frontends.torch._pi0_cpu_spec import build_spec
from flash_rt.hardware.cpu.attn_backend import CpuAttnBackend
from flash_rt.io.policy_io import open_policy_io
from flash_rt.latency import LatencyRecorder, StartupPhases
from flash_rt.models.pi0 import pipeline_cpu
from flash_rt.models.pi0.attention_sites import pi0_attention_spec
from flash_rt.models.pi0.config import infer_config
from flash_rt.models.pi0.keys import validate_shapes
from flash_rt.models.pi0.oracle import Pi0Oracle
from flash_rt.models.pi05.host_io import Pi05HostIO as HostIO   # the Pi0-family host IO (cameras, prompt, state)


class Pi0TorchFrontendCpu(StepFlow):
    hardware = "cpu"
    normalization = "zscore"    # Pi0 trained on mean/std normalized state and actions (pi05_spec.md 1f)
    # the checkpoint format's hooks, as Pi0.5's base has them: the (pi0, jax, cpu) cell swaps these for the Orbax
    # source (frontends/jax/_orbax_cell.py); the spec, the oracle and everything downstream are unchanged
    open_source = staticmethod(open_checkpoint)

    def __init__(self, checkpoint, *, num_views: int | None = None, action_horizon: int | None = None,
                 num_steps: int | None = None, tokenizer=None, norm_stats=None, asset_id: str | None = None,
                 action_dim: int | None = None, state_dim: int | None = None, max_token_len: int | None = None,
                 image_interpolation: str = "area", seed: int | None = None, weight_cache: bool = True,
                 cache_dir=None, num_threads: int | None = None, action_delta_mask=None,
                 realtime_chunking: bool = False):
        """weight_cache / cache_dir: accepted (loader options) and unused: the CPU cell keeps exact FP32
        weights, a cast and a transpose away from the checkpoint. num_threads: torch intra-op threads
        (process-wide), as Pi0.5's CPU cell (the ROS CPU config pins 1). action_delta_mask: as every cell's
        (the host's output stage; docs/stable_api.md "Delta actions"). realtime_chunking: the inpainting blend after
        every flow step toward the prefix of write_action_prefix (models/pi05/rtc.py), as Pi0.5's cells."""
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            torch.set_num_threads(num_threads)
        self.startup = StartupPhases()
        t0 = time.perf_counter()
        path = Path(checkpoint)
        if not path.exists():
            raise CheckpointError(f"checkpoint path {str(path)!r} does not exist; expected a directory holding "
                                  "model.safetensors or the .safetensors file itself")
        self.checkpoint = path
        self.ckpt_dir = ckpt_dir = self._checkpoint_dir(path)
        self.source = self.open_source(path)
        cfg_json = self._config_json()
        self.cfg = infer_config(self.source.key_shapes(), cfg_json, action_horizon=action_horizon,
                                num_steps=num_steps, max_token_len=max_token_len)
        validate_shapes(self.source.key_shapes(), self.cfg, source=str(path))
        io = open_policy_io(ckpt_dir, self.cfg.action_dim, self.normalization, tokenizer=tokenizer,
                            norm_stats=norm_stats, asset_id=asset_id, action_dim=action_dim, state_dim=state_dim,
                            action_delta_mask=action_delta_mask)
        self.normalizer, self.delta_mask_source = io.normalizer, io.delta_mask_source
        self.num_views = 3 if num_views is None else num_views
        self.host = HostIO(self.cfg, self.num_views, io.tokenizer, io.normalizer, state_dim=io.state_dim,
                           action_dim=io.action_dim, image_interpolation=image_interpolation, seed=seed,
                           tokenizer_error=io.tokenizer_error, action_delta_mask=io.delta_mask,
                           realtime_chunking=realtime_chunking)
        self.realtime_chunking = bool(realtime_chunking)
        self.latency = LatencyRecorder()
        self.startup.add("open", time.perf_counter() - t0, "checkpoint index, config, tokenizer, norm stats")
        with self.startup.timed("weights", "fp32 from the checkpoint"):
            self._load_weights()
        with self.startup.timed("buffers"):
            self._alloc_buffers()

    def _checkpoint_dir(self, checkpoint) -> Path:
        return checkpoint if checkpoint.is_dir() else checkpoint.parent

    def _config_json(self) -> dict:
        f = self.ckpt_dir / "config.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def _load_weights(self) -> None:
        self.w: dict[str, torch.Tensor] = {}
        WeightLoader(build_spec(self.cfg), self.source).run(self)
        W = self.cfg.ex_width
        self.w["at_a_w"] = self.w["at_in_w"][:, :W].t().contiguous()   # the action half of action_time_mlp_in
        self.time_rows = pipeline_cpu.time_rows(self.w, self.cfg)       # the time half, per flow step

    def _alloc_buffers(self) -> None:
        c, h, nv = self.cfg, self.host, self.num_views
        self.d = d = pipeline_cpu.pi0_dims(c, nv, self.realtime_chunking)
        P, S, L, nimg = d.prefix_len, d.horizon, d.kv_len, d.image_tokens
        qkv, qn, W = (c.heads + 2 * c.kv_heads) * c.head_dim, c.heads * c.head_dim, c.ex_width
        z = torch.zeros

        def expert_bufs(rows):
            return {"x": z(rows, W), "h": z(rows, W), "qkv": z(rows, qkv), "q": z(c.heads, rows, c.head_dim),
                    "att": z(rows, qn), "o": z(rows, W), "gu": z(rows, 2 * c.ex_mlp), "act": z(rows, c.ex_mlp)}

        self.state = np.zeros(c.state_dim, np.float32)    # model-space state, filled from the host each step
        self.b = {
            "images_u8": torch.from_numpy(h.images), "image_mask": torch.from_numpy(h.image_mask),
            "token_ids": torch.from_numpy(h.token_ids), "token_mask": torch.from_numpy(h.token_mask),
            "noise": torch.from_numpy(h.noise), "x_t": torch.from_numpy(h.model_out),
            "state": torch.from_numpy(self.state), "time_rows": self.time_rows, "dt": torch.tensor(d.dt),
            # vision + prefix: Pi0.5's pipeline functions, Pi0.5's buffer names
            "img": z(nv, 3, c.image_size, c.image_size), "vx": z(nimg, c.vis_width), "vh": z(nimg, c.vis_width),
            "vo": z(nimg, c.vis_width), "vqkv": z(nimg, 3 * c.vis_width), "vatt": z(nimg, c.vis_width),
            "vf1": z(nimg, c.vis_mlp),
            "emb_rows": z(c.max_token_len, c.width, dtype=self.w["embed"].dtype),
            "x": z(P, c.width), "h": z(P, c.width), "qkv": z(P, qkv), "q": z(c.heads, P, c.head_dim),
            "att": z(P, qn), "o": z(P, c.width), "gu": z(P, 2 * c.mlp), "act": z(P, c.mlp), "down": z(P, c.width),
            "pad": z(P, dtype=torch.bool), "pos": z(P, dtype=torch.int64), "suffix_pos": z(1 + S, dtype=torch.int64),
            "dec_bias": z(L), "k_cache": z(c.layers, c.kv_heads, L, c.head_dim),
            "v_cache": z(c.layers, c.kv_heads, L, c.head_dim),
            # the state row and the action rows of the expert
            "st": expert_bufs(1), "ac": {**expert_bufs(S), "emb": z(S, W), "hid": z(S, W)},
            "v": z(S, c.action_dim),
        }
        if h.rtc is not None:   # real-time chunking's weights and model-space prefix, shared with the host
            self.b.update(rtc_w=torch.from_numpy(h.rtc.w), rtc_w1=torch.from_numpy(h.rtc.w1),
                          rtc_target=torch.from_numpy(h.rtc.target))
        self.attn = CpuAttnBackend(pi0_attention_spec(c, d))

    @torch.no_grad()
    def _run_model(self) -> None:
        self.host.write_model_state(self.state)     # the host's normalized state -> state_proj's input
        pipeline_cpu.forward(self.w, self.b, self.d, self.attn)

    def calibrate(self, observations=None, percentile=None):
        raise NotImplementedError(f"{type(self).__name__} runs exact FP32: there are no FP8 scales to calibrate")

    def reference_oracle(self, device: str = "cpu") -> Pi0Oracle:
        """Pi0's FP32 reference on this checkpoint, fed the last step's exact inputs (Policy.reference_chunk)."""
        return Pi0Oracle(self.source, self.cfg, device=device)
