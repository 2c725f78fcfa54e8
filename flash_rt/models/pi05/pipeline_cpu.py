"""Pi0.5 compute path on the CPU (exact FP32): the production forward and its calibration twin.

Same structure as the GPU pipelines: the frontend preallocates every buffer (`b`), loads the transformed
weights (`w`, see _pi05_cpu_spec.py) and a dims dict (`d`); the forward only calls kernels from
`flash_rt.kernels.reference` and GEMMs into those buffers, and attention goes through `attn.run(site, ...)`.
The residual stream is fused the same way as on the GPU (add + norm in one kernel), the last prefix layer
only writes its K/V (the expert reads nothing else from it), and all t-dependent work is precomputed.

`observe(site, tensor)` is the calibration hook: None in production; the calibration twin passes a
recorder of activation amax at every site where the FP8 pipelines quantize.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from flash_rt.kernels import reference as K

Observer = Callable[[str, torch.Tensor], None]


def _noop(site: str, x: torch.Tensor) -> None:
    pass


def vision_forward(w, b, d, attn, observe: Observer = _noop):
    """Images (uint8, [V,S,S,3]) -> projected image tokens in b["x"][:V*np]."""
    nv, npch, vw, nh = d.num_views, d.num_patches, d.vis_width, d.vis_heads
    K.uint8_to_model(b["images_u8"], out=b["img"])
    patches = F.conv2d(b["img"], w["patch_w"], w["patch_b"], stride=d.patch_size)
    x, h, o = b["vx"], b["vh"], b["vo"]
    x.view(nv, npch, vw).copy_(patches.flatten(2).transpose(1, 2)).add_(w["pos_emb"])
    qkv = b["vqkv"].view(nv, npch, 3, nh, vw // nh).permute(2, 0, 3, 1, 4)
    for i in range(d.vis_layers):
        p = f"vis.{i}."
        if i == 0:
            K.layer_norm(x, w[p + "ln1_w"], w[p + "ln1_b"], d.ln_eps, out=h)
        else:
            K.add_layer_norm(x, o, w[p + "ln1_w"], w[p + "ln1_b"], d.ln_eps, out=h)
        observe(p + "ln1", h)
        torch.addmm(w[p + "qkv_b"], h, w[p + "qkv_w"], out=b["vqkv"])
        attn.run("siglip", i, qkv[0], qkv[1], qkv[2], None, b["vatt"].view(nv, npch, vw))
        observe(p + "attn", b["vatt"])
        torch.addmm(w[p + "o_b"], b["vatt"], w[p + "o_w"], out=o)
        K.add_layer_norm(x, o, w[p + "ln2_w"], w[p + "ln2_b"], d.ln_eps, out=h)
        observe(p + "ln2", h)
        torch.addmm(w[p + "fc1_b"], h, w[p + "fc1_w"], out=b["vf1"])
        K.gelu_tanh(b["vf1"], out=b["vf1"])
        observe(p + "gelu", b["vf1"])
        torch.addmm(w[p + "fc2_b"], b["vf1"], w[p + "fc2_w"], out=o)
    K.add_layer_norm(x, o, w["post_ln_w"], w["post_ln_b"], d.ln_eps, out=h)
    observe("vis.post_ln", h)
    torch.addmm(w["proj_b"], h, w["proj_w"], out=b["x"][: nv * npch])


def embed_prompt(w, b, d):
    """Token ids -> scaled language embeddings in b["x"][V*np:]; masks, key bias and positions."""
    n_img = d.num_views * d.num_patches
    torch.index_select(w["embed"], 0, b["token_ids"], out=b["emb_rows"])
    torch.mul(b["emb_rows"], d.embed_scale, out=b["x"][n_img:])
    b["pad"][:n_img].view(d.num_views, d.num_patches).copy_(b["image_mask"][:, None])
    b["pad"][n_img:].copy_(b["token_mask"])
    K.key_padding_bias(b["pad"], out=b["dec_bias"][: d.prefix_len])
    K.prefix_positions(b["pad"], out=b["pos"], suffix_out=b["suffix_pos"])


def prefix_forward(w, b, d, attn, observe: Observer = _noop):
    """Gemma over the prefix; writes the per-layer K/V cache (after RoPE)."""
    P, eps = d.prefix_len, d.rms_eps
    x, h = b["x"], b["h"]
    bias = b["dec_bias"][:P]
    for i in range(d.layers):
        p = f"llm.{i}."
        if i == 0:
            K.rms_norm(x, None, eps, out=h)
        else:
            K.add_rms_norm(x, b["down"], None, eps, out=h)
        observe(p + "norm1", h)
        torch.mm(h, w[p + "qkv_w"], out=b["qkv"])
        kc, vc = b["k_cache"][i], b["v_cache"][i]
        K.rope_qkv_split(b["qkv"], b["pos"], q_out=b["q"], k_out=kc[:, :P], v_out=vc[:, :P], theta=d.rope_theta)
        if i == d.layers - 1:
            break  # the expert reads only this layer's K/V
        attn.run("prefix", i, b["q"][None], kc[None, :, :P], vc[None, :, :P], bias, b["att"][None])
        observe(p + "attn", b["att"])
        torch.mm(b["att"], w[p + "o_w"], out=b["o"])
        K.add_rms_norm(x, b["o"], None, eps, out=h)
        observe(p + "norm2", h)
        torch.mm(h, w[p + "gu_w"], out=b["gu"])
        K.geglu(b["gu"], out=b["act"])
        observe(p + "geglu", b["act"])
        torch.mm(b["act"], w[p + "down_w"], out=b["down"])


def expert_step(w, b, d, attn, s: int, observe: Observer = _noop):
    """One flow step: velocity of the expert at time index s, then x_t += dt * v (and, with real-time chunking,
    the inpainting blend at the time reached)."""
    P, S, eps = d.prefix_len, d.horizon, d.rms_eps
    x, h, mods = b["ex_x"], b["ex_h"], b["mods"][s]
    torch.addmm(w["action_in_b"], b["x_t"], w["action_in_w"], out=x)
    for i in range(d.layers):
        p, m1, m2 = f"ex.{i}.", mods[2 * i], mods[2 * i + 1]
        if i == 0:
            K.ada_rms_norm(x, m1[0], m1[1], eps, out=h)
        else:
            K.gated_add_ada_rms_norm(x, b["ex_down"], mods[2 * i - 1][2], m1[0], m1[1], eps, out=h)
        observe(p + "norm1", h)
        torch.mm(h, w[p + "qkv_w"], out=b["ex_qkv"])
        kc, vc = b["k_cache"][i], b["v_cache"][i]
        K.rope_qkv_split(b["ex_qkv"], b["suffix_pos"], q_out=b["ex_q"], k_out=kc[:, P:P + S],
                         v_out=vc[:, P:P + S], theta=d.rope_theta)
        attn.run("decoder", i, b["ex_q"][None], kc[None], vc[None], b["dec_bias"], b["ex_att"][None])
        observe(p + "attn", b["ex_att"])
        torch.mm(b["ex_att"], w[p + "o_w"], out=b["ex_o"])
        K.gated_add_ada_rms_norm(x, b["ex_o"], m1[2], m2[0], m2[1], eps, out=h)
        observe(p + "norm2", h)
        torch.mm(h, w[p + "gu_w"], out=b["ex_gu"])
        K.geglu(b["ex_gu"], out=b["ex_act"])
        observe(p + "geglu", b["ex_act"])
        torch.mm(b["ex_act"], w[p + "down_w"], out=b["ex_down"])
    L = d.layers
    K.gated_add_ada_rms_norm(x, b["ex_down"], mods[2 * L - 1][2], mods[2 * L][0], mods[2 * L][1], eps, out=h)
    observe("ex.final", h)
    torch.addmm(w["action_out_b"], h, w["action_out_w"], out=b["v"])
    K.flow_update(b["x_t"], b["v"], None, b["dt"])
    if d.inpaint_times:   # real-time chunking (load-time structure, not data): models/pi05/rtc.py
        K.flow_inpaint(b["x_t"], b["noise"], b["rtc_target"], b["rtc_w"], b["rtc_w1"], d.inpaint_times[s])


def forward(w, b, d, attn, observe: Observer = _noop):
    """Observation buffers -> model-space action chunk in b["x_t"]. With `observe` it is the calibration twin:
    the same computation, reporting every quantization site's activation (production passes none)."""
    b["x_t"].copy_(b["noise"])
    vision_forward(w, b, d, attn, observe)
    embed_prompt(w, b, d)
    prefix_forward(w, b, d, attn, observe)
    for s in range(d.num_steps):
        expert_step(w, b, d, attn, s, observe)
