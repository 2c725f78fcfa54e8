"""STEP 5 of 5 -- the frontend: one (model, framework, hardware) cell, what `_PIPELINE_MAP` points at.

Copy to `flash_rt/frontends/torch/mymodel_cpu.py` (a plugin: `<pkg>/mymodel_cpu.py`), class
`MyModelTorchFrontendCpu` (`<Model><Fw>Frontend<Hw>`), then add ONE map line:
`("mymodel", "torch", "cpu"): ("flash_rt.frontends.torch.mymodel_cpu", "MyModelTorchFrontendCpu")` in
`flash_rt/hardware/__init__.py` -- or, for a plugin, `flash_rt.register_pipeline("mymodel", "torch", "cpu",
"<pkg>.mymodel_cpu:MyModelTorchFrontendCpu")` (docs/plugin_model_template.md). Nothing else in flash_rt changes.

What you translate (your source model's inference wrapper -> this class):

| your source / policy wrapper                             | here                                              |
|----------------------------------------------------------|---------------------------------------------------|
| the load options your model has                          | the keywords of `__init__`: the loader options every frontend takes (`flash_rt.api.LOADER_OPTIONS`) plus your own; `load_model` passes exactly what the caller gave and raises TypeError for anything else |
| `load_state_dict` / `from_pretrained`                    | `open_checkpoint` + `infer_config` + `WeightLoader(build_spec(cfg), source)` |
| images / prompt / state / noise preprocessing            | the host IO (`self.host`): Pi0-family inputs (cameras, prompt tokens, state, noise); write your own when your inputs differ |
| tokenizer, norm stats, action / state dims, delta mask   | `open_policy_io` (flash_rt/io/policy_io.py), with `normalization` "zscore" or "quantile" as your training did |
| tensors created per call                                 | `_alloc_buffers`: every buffer once; `_run_model` only writes into them |
| `predict` / the inference loop                           | inherited from `StepFlow` (flash_rt/frontends/step_flow.py): set_prompt, step, warmup, predict around your `_run_model` |
| your FP32 reference (the oracle)                         | `reference_oracle(device)`: what `Policy.reference_chunk` runs on the last step's exact inputs |

Your FP32 reference lives in `flash_rt/models/mymodel/reference.py` (a plugin: `<pkg>/reference.py`) and is
written FIRST (step 1, README.md): `MyModelReference(weights: dict[str, Tensor], cfg, device)` with
`sample_actions(images, image_mask, token_ids, token_mask, state, noise) -> [horizon, action_dim]`, images
[V, 3, S, S] in [-1, 1], everything else as the host IO holds it (state in model space).
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
from flash_rt.frontends.torch._mymodel_cpu_spec import build_spec, infer_config
from flash_rt.hardware.cpu.attn_backend import CpuAttnBackend
from flash_rt.io.policy_io import open_policy_io
from flash_rt.latency import LatencyRecorder, StartupPhases
from flash_rt.models.mymodel import pipeline_cpu
from flash_rt.models.mymodel.attention_sites import mymodel_attention_spec
from flash_rt.models.pi05.host_io import Pi05HostIO as HostIO   # the Pi0-family host IO (cameras, prompt, state)


class MyModelTorchFrontendCpu(StepFlow):
    hardware = "cpu"
    normalization = "zscore"    # how your training normalized state/actions: "zscore" (Pi0) or "quantile" (Pi0.5)

    def __init__(self, checkpoint, *, num_views: int | None = None, action_horizon: int | None = None,
                 num_steps: int | None = None, tokenizer=None, norm_stats=None, asset_id: str | None = None,
                 action_dim: int | None = None, state_dim: int | None = None, max_token_len: int | None = None,
                 image_interpolation: str = "area", seed: int | None = None, weight_cache: bool = True,
                 cache_dir=None, action_delta_mask=None):
        """weight_cache / cache_dir: accepted (loader options) and unused: the CPU cell keeps exact FP32
        weights, a cast and a transpose away from the checkpoint. action_delta_mask: delta action dims, as every
        cell takes them (the host's output stage adds the observed state; docs/stable_api.md "Delta actions")."""
        self.startup = StartupPhases()
        t0 = time.perf_counter()
        path = Path(checkpoint)
        if not path.exists():
            raise CheckpointError(f"checkpoint path {str(path)!r} does not exist; expected a directory holding "
                                  "model.safetensors or the .safetensors file itself")
        self.checkpoint, ckpt_dir = path, (path if path.is_dir() else path.parent)
        self.source = open_checkpoint(path)
        cfg_json = json.loads((ckpt_dir / "config.json").read_text()) if (ckpt_dir / "config.json").exists() else {}
        self.cfg = infer_config(self.source.key_shapes(), cfg_json, action_horizon=action_horizon,
                                num_steps=num_steps, max_token_len=max_token_len)
        io = open_policy_io(ckpt_dir, self.cfg.action_dim, self.normalization, tokenizer=tokenizer,
                            norm_stats=norm_stats, asset_id=asset_id, action_dim=action_dim, state_dim=state_dim,
                            action_delta_mask=action_delta_mask)
        self.normalizer, self.delta_mask_source = io.normalizer, io.delta_mask_source
        self.num_views = 3 if num_views is None else num_views
        self.host = HostIO(self.cfg, self.num_views, io.tokenizer, io.normalizer, state_dim=io.state_dim,
                           action_dim=io.action_dim, image_interpolation=image_interpolation, seed=seed,
                           tokenizer_error=io.tokenizer_error, action_delta_mask=io.delta_mask)
        self.latency = LatencyRecorder()
        self.startup.add("open", time.perf_counter() - t0, "checkpoint index, config, tokenizer, norm stats")
        with self.startup.timed("weights", "fp32 from the checkpoint"):
            self._load_weights()
        with self.startup.timed("buffers"):
            self._alloc_buffers()

    def _load_weights(self) -> None:
        self.w: dict[str, torch.Tensor] = {}
        WeightLoader(build_spec(self.cfg), self.source).run(self)
        c = self.cfg
        self.w["patch_w"] = self.w["patch_w"].reshape(c.width, -1).t().contiguous()   # conv -> [3*p*p, D]
        self.time_rows = pipeline_cpu.time_rows(self.w, c)

    def _alloc_buffers(self) -> None:
        c, h = self.cfg, self.host
        self.d = d = pipeline_cpu.MyModelDims.of(c, self.num_views)
        P, S, D = d.prefix_len, d.suffix_len, c.width
        qkv, qn = (c.heads + 2 * c.kv_heads) * c.head_dim, c.heads * c.head_dim
        z = torch.zeros

        def layer_bufs(rows):
            return {"h": z(rows, D), "qkv": z(rows, qkv), "q": z(c.heads, rows, c.head_dim), "att": z(rows, qn),
                    "o": z(rows, D), "gu": z(rows, 2 * c.mlp), "act": z(rows, c.mlp)}

        cache = {"k_cache": z(c.layers, c.kv_heads, P + S, c.head_dim),
                 "v_cache": z(c.layers, c.kv_heads, P + S, c.head_dim)}
        self.state = np.zeros(c.state_dim, np.float32)    # model-space state, filled from the host each step
        self.b = {
            "images_u8": torch.from_numpy(h.images), "image_mask": torch.from_numpy(h.image_mask),
            "token_ids": torch.from_numpy(h.token_ids), "token_mask": torch.from_numpy(h.token_mask),
            "noise": torch.from_numpy(h.noise), "x_t": torch.from_numpy(h.model_out),
            "state": torch.from_numpy(self.state), "time_rows": self.time_rows, "dt": torch.tensor(d.dt),
            "img": z(d.num_views, 3, c.image_size, c.image_size), "patches": z(d.image_tokens, 3 * c.patch_size ** 2),
            "x": z(P, D), "pad": z(P, dtype=torch.bool), "pos": z(P, dtype=torch.int64),
            "suffix_pos": z(S, dtype=torch.int64), "bias": z(P + S), "sx": z(S, D), "v": z(d.horizon, c.action_dim),
            "pre": {**layer_bufs(P), **cache}, "suf": {**layer_bufs(S), **cache},
        }
        self.attn = CpuAttnBackend(mymodel_attention_spec(c, P, S))


    @torch.no_grad()
    def _run_model(self) -> None:
        self.host.write_model_state(self.state)   # the host's normalized state, zero-padded, in place
        pipeline_cpu.forward(self.w, self.b, self.d, self.attn)

    def calibrate(self, observations=None, percentile=None):
        raise NotImplementedError(f"{type(self).__name__} runs exact FP32: there are no FP8 scales to calibrate")

    def reference_oracle(self, device: str = "cpu") -> "MyModelOracle":
        return MyModelOracle(self, device)


class MyModelOracle:
    """Runs the FP32 reference on exactly what the last step consumed and unnormalizes like the host IO."""

    def __init__(self, fe: MyModelTorchFrontendCpu, device: str = "cpu"):
        from flash_rt.models.mymodel.reference import MyModelReference
        self.fe = fe
        self.model = MyModelReference({k: fe.source.get(k) for k in fe.source.keys()}, fe.cfg, device=device)

    @torch.no_grad()
    def chunk(self, host) -> np.ndarray:
        img = torch.from_numpy(np.ascontiguousarray(host.images)).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
        m = self.model.sample_actions(img, torch.from_numpy(host.image_mask.copy()),
                                      torch.from_numpy(host.token_ids.copy()), torch.from_numpy(host.token_mask.copy()),
                                      torch.from_numpy(host.write_model_state(np.zeros_like(self.fe.state))),
                                      torch.from_numpy(host.noise.copy()))
        m = m.cpu().numpy().astype(np.float32)
        a = host.to_output(m, np.zeros((m.shape[0], host.action_dim), np.float32))   # step()'s output stage
        return a
