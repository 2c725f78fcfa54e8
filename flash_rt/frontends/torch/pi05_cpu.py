"""Pi05TorchFrontendCpu: exact FP32 Pi0.5 on the CPU (CI, the embedded default, the oracle's twin).

Weights come through the declarative spec (_pi05_cpu_spec.build_spec) from a streamed safetensors source;
every activation buffer is allocated once here, sized for the fixed prefix (num_views x 256 image tokens +
max_token_len text tokens, padding masked) and the horizon, so a step only writes into existing memory.
The torch tensors that the pipeline reads for images, masks, tokens and noise share memory with the host
IO's numpy buffers: on the CPU there is no upload.
"""
from __future__ import annotations

import numpy as np
import torch

from flash_rt.executors.weight_loader import WeightLoader
from flash_rt.frontends.torch._pi05_base import Pi05TorchFrontendBase
from flash_rt.frontends.torch._pi05_cpu_spec import build_spec
from flash_rt.hardware.cpu.attn_backend import CpuAttnBackend
from flash_rt.models.pi05 import pipeline_cpu
from flash_rt.models.pi05.attention_sites import pi05_attention_spec
from flash_rt.models.pi05.dims import Pi05Dims
from flash_rt.models.pi05.flow import flow_schedule, precompute_modulation


class Pi05TorchFrontendCpu(Pi05TorchFrontendBase):
    hardware = "cpu"

    def __init__(self, checkpoint, *, num_threads: int | None = None, **kw):
        """num_threads: torch intra-op threads (process-wide). On a loaded 2-core machine OpenMP spinning
        made a tiny GEMM 20x slower with 2 threads than with 1 (12.6 vs 0.64 ms, measured 2026-11-26), so
        the ROS CPU config pins 1; None leaves torch's default (all cores) for the full-size model."""
        if num_threads is not None:
            if num_threads < 1:
                raise ValueError(f"num_threads must be >= 1, got {num_threads}")
            torch.set_num_threads(num_threads)
        super().__init__(checkpoint, **kw)

    def _load_weights(self) -> str:
        self.w: dict[str, torch.Tensor] = {}
        WeightLoader(build_spec(self.cfg), self.source).run(self)
        times, dt = flow_schedule(self.cfg.num_steps)
        self.mods = precompute_modulation(self.w, self.cfg, times)
        self.dt = dt
        return "fp32 from the checkpoint (no cache on the CPU)"

    def dims(self) -> Pi05Dims:
        return Pi05Dims.of(self.cfg, self.num_views, len(self.mods), self.dt,   # exact lengths: no alignment
                           realtime_chunking=self.realtime_chunking)

    def _alloc_buffers(self) -> None:
        c, nv, h = self.cfg, self.num_views, self.host
        self.d = d = self.dims()
        P, S, L = d.prefix_len, d.horizon, d.kv_len
        nimg, qn, kvn = d.image_tokens, c.heads * c.head_dim, c.kv_heads * c.head_dim
        f32 = dict(dtype=torch.float32)
        z = torch.zeros
        self.b = {
            # host-shared inputs/outputs
            "images_u8": torch.from_numpy(h.images), "image_mask": torch.from_numpy(h.image_mask),
            "token_ids": torch.from_numpy(h.token_ids), "token_mask": torch.from_numpy(h.token_mask),
            "noise": torch.from_numpy(h.noise), "x_t": torch.from_numpy(h.model_out),
            # vision
            "img": z(nv, 3, c.image_size, c.image_size, **f32), "vx": z(nimg, c.vis_width, **f32),
            "vh": z(nimg, c.vis_width, **f32), "vo": z(nimg, c.vis_width, **f32),
            "vqkv": z(nimg, 3 * c.vis_width, **f32), "vatt": z(nimg, c.vis_width, **f32),
            "vf1": z(nimg, c.vis_mlp, **f32),
            # prefix
            "emb_rows": z(c.max_token_len, c.width, dtype=self.w["embed"].dtype),
            "x": z(P, c.width, **f32), "h": z(P, c.width, **f32), "qkv": z(P, qn + 2 * kvn, **f32),
            "q": z(c.heads, P, c.head_dim, **f32), "att": z(P, qn, **f32), "o": z(P, c.width, **f32),
            "gu": z(P, 2 * c.mlp, **f32), "act": z(P, c.mlp, **f32), "down": z(P, c.width, **f32),
            "pad": z(P, dtype=torch.bool), "pos": z(P, dtype=torch.int64),
            "suffix_pos": z(S, dtype=torch.int64), "dec_bias": z(L, **f32),
            "k_cache": z(c.layers, c.kv_heads, L, c.head_dim, **f32),
            "v_cache": z(c.layers, c.kv_heads, L, c.head_dim, **f32),
            "dt": torch.tensor(d.dt, **f32),   # a tensor: no per-step torch.tensor()
            # expert
            "mods": self.mods, "ex_x": z(S, c.ex_width, **f32), "ex_h": z(S, c.ex_width, **f32),
            "ex_qkv": z(S, qn + 2 * kvn, **f32), "ex_q": z(c.heads, S, c.head_dim, **f32),
            "ex_att": z(S, qn, **f32), "ex_o": z(S, c.ex_width, **f32), "ex_gu": z(S, 2 * c.ex_mlp, **f32),
            "ex_act": z(S, c.ex_mlp, **f32), "ex_down": z(S, c.ex_width, **f32), "v": z(S, c.action_dim, **f32),
        }
        if h.rtc is not None:   # real-time chunking's weights and model-space prefix, shared with the host
            self.b.update(rtc_w=torch.from_numpy(h.rtc.w), rtc_w1=torch.from_numpy(h.rtc.w1),
                          rtc_target=torch.from_numpy(h.rtc.target))
        self.attn = CpuAttnBackend(pi05_attention_spec(c, d))

    @torch.no_grad()
    def _run_model(self) -> None:
        pipeline_cpu.forward(self.w, self.b, self.d, self.attn)

    @torch.no_grad()
    def run_calibration_twin(self, observe) -> np.ndarray:
        """Run the calibration twin on the current buffers (used to test the calibration plumbing)."""
        pipeline_cpu.forward(self.w, self.b, self.d, self.attn, observe)
        return self.host.model_out.copy()
