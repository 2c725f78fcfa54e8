"""Pi05Dims: every shape and constant one Pi0.5 forward needs, as one typed, frozen object.

Why: the pipelines used to take an untyped `d` dict built separately by each frontend (a typo was a KeyError at the
first forward, on the device). Like gpt-fast's ModelArgs, the model's shapes live in one dataclass (Pi05Config,
read off the checkpoint); Pi05Dims adds the shapes of one deployment (camera views, horizon, prompt slots, flow
steps) and the layout rule of a target (`align`: the GPU kernels want 16-aligned key lengths).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from flash_rt.models.pi05.config import Pi05Config
from flash_rt.models.pi05.rtc import inpaint_times


def round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


@dataclass(frozen=True)
class Pi05Dims:
    num_views: int
    num_patches: int
    patch_size: int
    vis_width: int
    vis_heads: int
    vis_layers: int
    layers: int
    max_tokens: int      # prompt slots (tokens, padded)
    prefix_len: int      # image tokens + prompt slots, rounded up to `align`
    horizon: int         # action rows
    kv_len: int          # keys of the decoder: prefix + horizon, rounded up to `align`
    num_steps: int
    dt: float            # the flow step (negative: t runs from 1 to 0)
    rms_eps: float
    ln_eps: float
    rope_theta: float
    embed_scale: float
    # real-time chunking: the time of each flow step's inpainting blend (models/pi05/rtc.py); () = off, and the
    # forward is then exactly the plain one (no blend kernels, no RTC buffers read)
    inpaint_times: tuple = ()
    # rows the prefix computes: prefix_len, or fewer in a prompt-length bucket (models/pi05/prompt_buckets.py),
    # whose prefix runs image tokens + its own slots while the expert's keys may stay where the full length has
    # them (the bucket's bit-identical layout). 0 = prefix_len
    prefix_rows: int = 0

    def __post_init__(self):
        if not self.prefix_rows:
            object.__setattr__(self, "prefix_rows", self.prefix_len)
        if not self.image_tokens < self.prefix_rows <= self.prefix_len:
            raise ValueError(f"Pi05Dims: prefix_rows {self.prefix_rows} must be in ({self.image_tokens}, "
                             f"{self.prefix_len}]")

    @property
    def image_tokens(self) -> int:
        return self.num_views * self.num_patches

    @classmethod
    def of(cls, cfg: Pi05Config, num_views: int, num_steps: int, dt: float, align: int = 1,
           realtime_chunking: bool = False) -> "Pi05Dims":
        P = round_up(num_views * cfg.num_patches + cfg.max_token_len, align)
        S = cfg.action_horizon
        return cls(num_views=num_views, num_patches=cfg.num_patches, patch_size=cfg.patch_size,
                   vis_width=cfg.vis_width, vis_heads=cfg.vis_heads, vis_layers=cfg.vis_layers, layers=cfg.layers,
                   max_tokens=cfg.max_token_len, prefix_len=P, horizon=S, kv_len=round_up(P + S, align),
                   num_steps=num_steps, dt=float(dt), rms_eps=cfg.rms_eps, ln_eps=cfg.ln_eps,
                   rope_theta=cfg.rope_theta, embed_scale=math.sqrt(cfg.width),
                   inpaint_times=inpaint_times(num_steps) if realtime_chunking else ())
