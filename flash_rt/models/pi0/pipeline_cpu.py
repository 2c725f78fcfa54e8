"""STEP 4 of 5 (from the template) -- Pi0's forward as engine calls over preallocated buffers (exact FP32, CPU).

The prefix (SigLIP, prompt embedding, PaliGemma KV cache) is Pi0.5's, so `vision_forward`, `embed_prompt` and
`prefix_forward` of `flash_rt.models.pi05.pipeline_cpu` run unchanged over the same buffer names. What Pi0 adds:

| Pi0Reference (models/pi0/reference.py)                          | here                                          |
|-----------------------------------------------------------------|-----------------------------------------------|
| `state_proj(state)` -> the first suffix token                    | `state_forward`: `addmm(state_b, state, state_w)` |
| the state row sees the prefix and itself (ar = [1 | 1, 0...])    | its own site "state" over cache rows [0, P] -- and since it sees neither the actions nor t, its K/V are the same at every flow step: computed ONCE per inference, before the loop (exact, not an approximation) |
| `cat(action_in_proj(x_t), sincos(t))` -> `action_time_mlp_in` -> swish -> `action_time_mlp_out` | `mm(action, at_a_w)` + `time_rows[s]` (the time half with the bias, precomputed per step at load), `silu_`, `addmm(at_out_b, .., at_out_w)` |
| expert layer: `rms(x) * (1 + w)` norms, no adaRMS, no gates       | `K.rms_norm(x, None)` (the `1 + w` is folded into qkv_w / gu_w), plain residual adds |
| final `rms(x) * (1 + norm.weight)`, `action_out_proj`, `x_t += dt * v` | `K.rms_norm(.., w["ex_final_norm"])`, `addmm`, `K.flow_update` |

Cache layout per layer: rows [0, P) the prefix, row P the state token, rows [P + 1, P + 1 + H) the actions.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from flash_rt.kernels import reference as K
from flash_rt.models.pi05.dims import Pi05Dims
from flash_rt.models.pi05.flow import flow_schedule
from flash_rt.models.pi05.pipeline_cpu import embed_prompt, prefix_forward, vision_forward


def pi0_dims(cfg, num_views: int, realtime_chunking: bool = False) -> Pi05Dims:
    """Pi0.5's dims object with Pi0's key length: prefix + the state token + the action rows (no alignment);
    realtime_chunking adds the inpainting blend's times (models/pi05/rtc.py), as for Pi0.5."""
    times, dt = flow_schedule(cfg.num_steps)
    d = Pi05Dims.of(cfg, num_views, len(times), dt, realtime_chunking=realtime_chunking)
    return dataclasses.replace(d, kv_len=d.prefix_len + 1 + d.horizon)


@torch.no_grad()
def time_rows(w, cfg) -> torch.Tensor:
    """The time half of action_time_mlp_in (+ its bias) for every step of the fixed schedule: [steps, ex_width].
    `w["at_in_w"]` is [W, 2W] over cat(action, time) (pi05_spec.md 1b: the action embedding first)."""
    times, _ = flow_schedule(cfg.num_steps)
    dev = w["at_in_w"].device
    t = torch.tensor(times, dtype=torch.float32, device=dev)
    te = K.time_embedding(t, cfg.ex_width, cfg.min_period, cfg.max_period,
                          out=torch.empty(len(times), cfg.ex_width, device=dev))
    return torch.addmm(w["at_in_b"], te, w["at_in_w"][:, cfg.ex_width:].t())


def _expert_layer(w, b, d, attn, i: int, x, t: dict, pos, row0: int, kv_len: int, site: str, last: bool) -> None:
    """One expert layer on the rows `x`: K/V at cache rows row0.., attention over cache rows [0, kv_len)."""
    rows = x.shape[0]
    kc, vc = b["k_cache"][i], b["v_cache"][i]
    K.rms_norm(x, None, d.rms_eps, out=t["h"])
    torch.mm(t["h"], w[f"ex.{i}.qkv_w"], out=t["qkv"])
    K.rope_qkv_split(t["qkv"], pos, q_out=t["q"], k_out=kc[:, row0:row0 + rows], v_out=vc[:, row0:row0 + rows],
                     theta=d.rope_theta)
    if last:
        return     # the state row: later rows read only this layer's K/V
    attn.run(site, i, t["q"][None], kc[None, :, :kv_len], vc[None, :, :kv_len], b["dec_bias"][:kv_len], t["att"][None])
    torch.mm(t["att"], w[f"ex.{i}.o_w"], out=t["o"])
    x.add_(t["o"])
    K.rms_norm(x, None, d.rms_eps, out=t["h"])
    torch.mm(t["h"], w[f"ex.{i}.gu_w"], out=t["gu"])
    K.geglu(t["gu"], out=t["act"])
    torch.mm(t["act"], w[f"ex.{i}.down_w"], out=t["o"])
    x.add_(t["o"])


def state_forward(w, b, d, attn) -> None:
    """The state token through every expert layer over the prefix + itself; leaves its K/V at cache row P."""
    P, t = d.prefix_len, b["st"]
    torch.addmm(w["state_b"], b["state"][None], w["state_w"], out=t["x"])
    for i in range(d.layers):
        _expert_layer(w, b, d, attn, i, t["x"], t, b["suffix_pos"][:1], P, P + 1, "state", i == d.layers - 1)


def action_step(w, b, d, attn, s: int) -> None:
    """One flow step: the action tokens over [prefix | state | actions], v, then x_t += dt * v."""
    P, t = d.prefix_len, b["ac"]
    x = t["x"]
    torch.addmm(w["action_in_b"], b["x_t"], w["action_in_w"], out=t["emb"])
    torch.mm(t["emb"], w["at_a_w"], out=t["hid"])
    t["hid"].add_(b["time_rows"][s])
    F.silu(t["hid"], inplace=True)
    torch.addmm(w["at_out_b"], t["hid"], w["at_out_w"], out=x)
    for i in range(d.layers):
        _expert_layer(w, b, d, attn, i, x, t, b["suffix_pos"][1:], P + 1, d.kv_len, "decoder", False)
    K.rms_norm(x, w["ex_final_norm"], d.rms_eps, out=t["h"])
    torch.addmm(w["action_out_b"], t["h"], w["action_out_w"], out=b["v"])
    K.flow_update(b["x_t"], b["v"], None, b["dt"])
    if d.inpaint_times:   # real-time chunking (load-time structure, not data): models/pi05/rtc.py
        K.flow_inpaint(b["x_t"], b["noise"], b["rtc_target"], b["rtc_w"], b["rtc_w1"], d.inpaint_times[s])


def forward(w, b, d, attn) -> None:
    """Observation buffers (+ the model-space state in b["state"]) -> model-space action chunk in b["x_t"]."""
    b["x_t"].copy_(b["noise"])
    vision_forward(w, b, d, attn)
    embed_prompt(w, b, d)
    prefix_forward(w, b, d, attn)
    state_forward(w, b, d, attn)
    for s in range(d.num_steps):
        action_step(w, b, d, attn, s)
