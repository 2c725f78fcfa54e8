"""STEP 4 of 5 -- the compute path: your reference forward as engine calls over preallocated buffers.

Copy to `flash_rt/models/mymodel/pipeline_cpu.py` (a plugin: `<pkg>/pipeline_cpu.py`); each further target gets
its own `pipeline_<hw>.py` (no hardware branch in here). The frontend allocates every buffer in `b` and loads
`w` (weights_spec.py); a forward only writes into existing memory, and attention goes through `attn.run(site,
...)`, so the same code shape can be captured as one CUDA graph on a GPU target.

What you translate, line by line (left: your FP32 reference; right: this file):

| reference (plain PyTorch, FP32)                          | engine call here                                          |
|----------------------------------------------------------|-----------------------------------------------------------|
| `img = uint8 / 255 * 2 - 1` (NHWC -> NCHW)               | `K.uint8_to_model(b["images_u8"], out=b["img"])`          |
| `F.conv2d(img, patch_w, patch_b, stride=p)` + `pos_emb`  | patches gathered into `b["patches"]`, `torch.addmm(patch_b, patches, patch_w, out=x)`, `add_(pos_emb)` |
| `embed(ids) * sqrt(width)`                               | `torch.index_select(w["embed"], 0, ids, out=...)`, `mul_` |
| padding mask -> attention mask, positions `cumsum - 1`   | `K.key_padding_bias`, `K.prefix_positions` (suffix continues after the real prefix tokens) |
| `h = rms(x) * (1 + norm1)`; `q, k, v = h @ Wq.T, ...`    | `K.rms_norm(x, None, ...)` + `torch.mm(h, w["{i}.qkv_w"])` (the norm is folded into qkv_w) |
| `q, k = rope(q, pos), rope(k, pos)` (rotate_half)         | `K.rope_qkv_split(qkv, pos, q_out=, k_out=cache rows, v_out=cache rows)` |
| `softmax(q k^T / sqrt(hd) + mask) v`, GQA repeat         | `attn.run(site, layer, q, k_cache, v_cache, key_bias, out)` (sites: attention.py) |
| `x = x + o_proj(att)`                                    | `torch.mm(att, w["{i}.o_w"], out=o)`; `x.add_(o)`          |
| `gelu_tanh(gate(h)) * up(h)`; `x = x + down(...)`        | `torch.mm(h, w["{i}.gu_w"])`, `K.geglu`, `torch.mm(.., w["{i}.down_w"])`, `x.add_` |
| `state_proj(state)` -> one suffix token                  | `torch.addmm(w["state_b"], state, w["state_w"], out=sx[:1])` |
| `action_in(x_t) + time_mlp_out(silu(time_mlp_in(sincos(t))))` | `torch.addmm(...)` + `time_rows[s]` (`time_rows`: the time MLP for the fixed schedule, once at load) |
| `v = action_out(rms(x_actions) * (1 + final_norm))`; `x_t = x_t + dt * v` | `K.rms_norm(.., w["final_norm"])`, `torch.addmm`, `K.flow_update(x_t, v, None, dt)` |

Order of work: get `embed_prefix` + `prefix_forward` equal to your reference's prefix K/V first (compare the
caches), then one `suffix_step`, then the loop. The first-light cosine routing table
(docs/plugin_model_template.md) maps a wrong cosine to the likely line.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from flash_rt.kernels import reference as K


@dataclass(frozen=True)
class MyModelDims:
    """The shapes of one deployment (views, horizon, prompt slots, flow steps) beside the model's dims."""
    num_views: int
    num_patches: int
    grid: int             # patches per image side
    patch_size: int
    width: int
    layers: int
    prefix_len: int       # image tokens + prompt slots
    suffix_len: int       # state token + action rows
    horizon: int
    num_steps: int
    dt: float
    rms_eps: float
    rope_theta: float
    embed_scale: float

    @property
    def image_tokens(self) -> int:
        return self.num_views * self.num_patches

    @classmethod
    def of(cls, cfg, num_views: int) -> "MyModelDims":
        return cls(num_views=num_views, num_patches=cfg.num_patches, grid=cfg.image_size // cfg.patch_size,
                   patch_size=cfg.patch_size, width=cfg.width, layers=cfg.layers,
                   prefix_len=num_views * cfg.num_patches + cfg.max_token_len, suffix_len=1 + cfg.action_horizon,
                   horizon=cfg.action_horizon, num_steps=cfg.num_steps, dt=-1.0 / cfg.num_steps,
                   rms_eps=cfg.rms_eps, rope_theta=cfg.rope_theta, embed_scale=cfg.embed_scale)


def flow_times(num_steps: int) -> list:
    """t of each Euler step: 1, 1 + dt, ... (dt = -1 / num_steps)."""
    return [1.0 - s / num_steps for s in range(num_steps)]


@torch.no_grad()
def time_rows(w, cfg) -> torch.Tensor:
    """time_mlp_out(silu(time_mlp_in(sincos(t)))) for every step of the fixed schedule: [num_steps, width]."""
    t = torch.tensor(flow_times(cfg.num_steps), dtype=torch.float32)
    emb = K.time_embedding(t, cfg.width, out=torch.empty(len(t), cfg.width))
    hid = F.silu(torch.addmm(w["time_in_b"], emb, w["time_in_w"]))
    return torch.addmm(w["time_out_b"], hid, w["time_out_w"])


def embed_prefix(w, b, d: MyModelDims) -> None:
    """Images + prompt tokens -> b["x"]; key bias and positions of the prefix and the suffix."""
    V, g, p, n = d.num_views, d.grid, d.patch_size, d.image_tokens
    K.uint8_to_model(b["images_u8"], out=b["img"])
    b["patches"].view(V, g, g, 3, p, p).copy_(b["img"].view(V, 3, g, p, g, p).permute(0, 2, 4, 1, 3, 5))
    torch.addmm(w["patch_b"], b["patches"], w["patch_w"], out=b["x"][:n])
    b["x"][:n].view(V, d.num_patches, d.width).add_(w["pos_emb"])
    torch.index_select(w["embed"], 0, b["token_ids"], out=b["x"][n:])
    b["x"][n:].mul_(d.embed_scale)
    b["pad"][:n].view(V, d.num_patches).copy_(b["image_mask"][:, None])
    b["pad"][n:].copy_(b["token_mask"])
    K.key_padding_bias(b["pad"], out=b["bias"][:d.prefix_len])   # the suffix part of the bias stays 0
    K.prefix_positions(b["pad"], out=b["pos"], suffix_out=b["suffix_pos"])


def block(w, i: int, x, t: dict, pos, row0: int, kv_len: int, bias, site: str, attn, d: MyModelDims) -> None:
    """One transformer layer on the rows `x` (the prefix, or the suffix); writes their K/V at cache rows
    row0.. and attends over cache rows [0, kv_len)."""
    kc, vc = t["k_cache"][i], t["v_cache"][i]
    rows = x.shape[0]
    K.rms_norm(x, None, d.rms_eps, out=t["h"])
    torch.mm(t["h"], w[f"{i}.qkv_w"], out=t["qkv"])
    K.rope_qkv_split(t["qkv"], pos, q_out=t["q"], k_out=kc[:, row0:row0 + rows], v_out=vc[:, row0:row0 + rows],
                     theta=d.rope_theta)
    attn.run(site, i, t["q"][None], kc[None, :, :kv_len], vc[None, :, :kv_len], bias[:kv_len], t["att"][None])
    torch.mm(t["att"], w[f"{i}.o_w"], out=t["o"])
    x.add_(t["o"])
    K.rms_norm(x, None, d.rms_eps, out=t["h"])
    torch.mm(t["h"], w[f"{i}.gu_w"], out=t["gu"])
    K.geglu(t["gu"], out=t["act"])
    torch.mm(t["act"], w[f"{i}.down_w"], out=t["o"])
    x.add_(t["o"])


def prefix_forward(w, b, d: MyModelDims, attn) -> None:
    P = d.prefix_len
    for i in range(d.layers):
        block(w, i, b["x"], b["pre"], b["pos"], 0, P, b["bias"], "prefix", attn, d)


def suffix_step(w, b, d: MyModelDims, attn, s: int) -> None:
    """One flow step: the state token + action tokens through every layer over the cached prefix, x_t += dt*v."""
    sx, t = b["sx"], b["suf"]
    torch.addmm(w["state_b"], b["state"][None], w["state_w"], out=sx[:1])
    torch.addmm(w["action_in_b"], b["x_t"], w["action_in_w"], out=sx[1:])
    sx[1:].add_(b["time_rows"][s])
    for i in range(d.layers):
        block(w, i, sx, t, b["suffix_pos"], d.prefix_len, d.prefix_len + d.suffix_len, b["bias"], "suffix", attn, d)
    K.rms_norm(sx[1:], w["final_norm"], d.rms_eps, out=t["h"][1:])
    torch.addmm(w["action_out_b"], t["h"][1:], w["action_out_w"], out=b["v"])
    K.flow_update(b["x_t"], b["v"], None, b["dt"])


def forward(w, b, d: MyModelDims, attn) -> None:
    """Observation buffers -> model-space action chunk in b["x_t"]."""
    b["x_t"].copy_(b["noise"])
    embed_prefix(w, b, d)
    prefix_forward(w, b, d, attn)
    for s in range(d.num_steps):
        suffix_step(w, b, d, attn, s)
