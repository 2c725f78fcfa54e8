"""Flow-matching schedule and the per-step adaRMS modulation, computed once at load time.

openpi integrates from t=1 (noise) to t=0 with `t += dt` accumulated in fp32 (pi05_spec.md 1d); the times
are therefore fixed per num_steps, and so is everything that depends only on t: the sinusoidal time
embedding, the time MLP, and every adaRMS `dense(cond)` (18 layers x 2 norms + the final norm). Precomputing
them removes 37 GEMVs per step from the hot path (h100_roofline.md) and is exact: the same fp32 math runs,
just earlier.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from flash_rt.kernels.reference import time_embedding
from flash_rt.models.pi05.config import Pi05Config


def flow_schedule(num_steps: int) -> tuple[list[float], float]:
    """(times, dt) exactly as openpi's loop visits them: t=1.0, then t += dt in fp32 while t >= -dt/2."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    dt = torch.tensor(-1.0 / num_steps, dtype=torch.float32)
    t = torch.tensor(1.0, dtype=torch.float32)
    times = []
    while t >= -dt / 2:
        times.append(float(t))
        t = t + dt
    return times, float(dt)


def precompute_modulation(w: dict, cfg: Pi05Config, times: list[float]) -> torch.Tensor:
    """[steps, 2*layers + 1, 3, ex_width] fp32: (scale, shift, gate) for every expert norm at every step.

    Row 2i is layer i's pre-attention norm, 2i+1 its pre-FFW norm, the last row the final norm (its gate is
    unused). `w` holds the fp32 dense/time-MLP weights under the _pi05_*_spec names.
    """
    dev = w["time_in_w"].device
    t = torch.tensor(times, dtype=torch.float32, device=dev)
    te = torch.empty(len(times), cfg.ex_width, dtype=torch.float32, device=dev)
    time_embedding(t, cfg.ex_width, cfg.min_period, cfg.max_period, out=te)
    cond = F.silu(F.linear(F.silu(F.linear(te, w["time_in_w"], w["time_in_b"])), w["time_out_w"], w["time_out_b"]))
    rows = []
    for i in range(cfg.layers):
        rows.append(F.linear(cond, w[f"ex.{i}.ada1_w"], w[f"ex.{i}.ada1_b"]))
        rows.append(F.linear(cond, w[f"ex.{i}.ada2_w"], w[f"ex.{i}.ada2_b"]))
    rows.append(F.linear(cond, w["ex_final_w"], w["ex_final_b"]))
    return torch.stack(rows, 1).reshape(len(times), 2 * cfg.layers + 1, 3, cfg.ex_width).contiguous()
