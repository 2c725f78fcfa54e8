"""Pi0.5 on the CUDA kernel catalogue: one graph-safe forward for every GPU target, run under a quantization context.

The per-target compute files (pipeline_hopper.py, pipeline_thor.py, pipeline_rtx.py) bind this forward; what
differs between targets is data -- the tuning table's tiles, carried by `q` (GEMM tiles, the flow seam's),
`attn` (attention tiles) and the buffers (split-K partials) -- never a branch here.

`forward(w, b, d, attn, q, overlap)` is the whole inference -- SigLIP x views -> projector -> Gemma prefix + KV ->
num_steps unrolled expert steps -- written once. With `overlap` (production on Hopper), flow step 0 runs on a second
stream beside the prefix, layer by layer (prefix_with_first_step): same kernels, same bits, ~0.6 ms less on an H100.
`q` decides precision (see runtime/quant.py): Fp8Context is the production path captured
into one CUDA graph, CalibContext is its calibration twin (bf16 activations, amax per site), Bf16Context the
BF16 rung of the precision ladder.

Graph safety: every tensor read or written is preallocated by the frontend (`b`), weights are in `w`,
dims are a frozen Pi05Dims `d`; no .item(), no host sync, no branching on data. Per-tick inputs (uint8
images, masks, token ids, noise) are device buffers the frontend fills before replay; positions and key
padding are rebuilt from the masks inside the graph, so a new prompt or a new state-token count never
forces a recapture.
The prefix computes d.prefix_rows rows (image tokens + prompt slots): prefix_len at full length, fewer in a
prompt-length bucket (models/pi05/prompt_buckets.py), whose `b` holds views of the full length's buffers; the expert
reads its keys up to d.kv_len with its own rows at d.prefix_len, as ever.

Residual streams are fp32 (the fused norm kernels add in fp32 and store fp32); GEMM outputs are bf16.
The expert keeps its own FP8 activation scales per flow step (`ex.{step}.{layer}.*`): activation ranges
move with t, and the steps are unrolled anyway. action_in/action_out stay fp32 (tiny, precision-critical).
Between two steps, the final norm, action_out + Euler step, action_in and the next layer-0 norm are one kernel
in production (step_boundary).
In the expert, `q.linear_rope_qkv` and `q.linear_geglu` are one fused FP8 kernel each in production
(kernels/triton/gemm_fused.py) and GEMM + RoPE / GEMM + GeGLU in the twins; `q.linear_partials` returns the
o / down output either as [M, N] or as split-K partials [S, M, N] that the next gated norm sums.
"""
from __future__ import annotations

import torch

from flash_rt.kernels.triton import (ada_rms_norm, add_layer_norm, add_rms_norm, flow_boundary, flow_inpaint,
                                     gated_add_ada_rms_norm, geglu, gelu_tanh, key_padding_bias, layer_norm,
                                     linear_flow_update, prefix_positions, rms_norm, rope_qkv_split, uint8_to_model)
from flash_rt.models.pi05.dims import Pi05Dims
from flash_rt.runtime.layout import im2col_patches


def quant_sites(d: Pi05Dims) -> list[str]:
    """Every site where production quantizes an activation to FP8, in execution order."""
    s = []
    for i in range(d.vis_layers):
        s += [f"vis.{i}.ln1", f"vis.{i}.attn", f"vis.{i}.ln2", f"vis.{i}.gelu"]
    s.append("vis.post_ln")
    for i in range(d.layers):
        s.append(f"llm.{i}.norm1")
        if i < d.layers - 1:
            s += [f"llm.{i}.attn", f"llm.{i}.norm2", f"llm.{i}.geglu"]
    for st in range(d.num_steps):
        for i in range(d.layers):
            s += [f"ex.{st}.{i}.norm1", f"ex.{st}.{i}.attn", f"ex.{st}.{i}.norm2", f"ex.{st}.{i}.geglu"]
    return s


def flow_step_bytes(w, b, d) -> dict:
    """The bytes one flow step after step 0 must read from memory, by what they are (issue 17's weight-streaming
    floor): the expert's GEMM weights (FP8 or BF16, as built), the two fp32 action projections of the seam, each
    layer's keys and values over d.kv_len (bf16, one KV head), and the step's adaRMS modulation rows (fp32).
    Activations are left out: they are a few hundred KB a layer and live in L2. Floor time = total / bandwidth."""
    ex = sum(t.numel() * t.element_size() for k, t in w.items() if k.startswith("ex.") and k.endswith("_w"))
    seam = sum(w[k].numel() * w[k].element_size() for k in ("action_in_w", "action_out_rows"))
    kv = sum(c[:, :, :d.kv_len].numel() * c.element_size() for c in (b["k_cache"], b["v_cache"]))
    mods = b["mods"][0].numel() * b["mods"].element_size()
    return {"expert_weights": ex, "seam_weights": seam, "kv_cache": kv, "modulation": mods,
            "total": ex + seam + kv + mods}


def vision_forward(w, b, d, attn, q):
    nv, npch, vw, nh = d.num_views, d.num_patches, d.vis_width, d.vis_heads
    uint8_to_model(b["images_u8"], out=b["img"])
    im2col_patches(b["img"], d.patch_size, b["patches"])
    x, o = b["vx"], b["vo"]
    torch.mm(b["patches"], w["patch_w"].t(), out=o)
    torch.add(o.view(nv, npch, vw), w["pos_emb_b"], out=x.view(nv, npch, vw))  # pos + patch bias, fp32
    qkv = b["vqkv"].view(nv, npch, 3, nh, vw // nh).permute(2, 0, 3, 1, 4)
    for i in range(d.vis_layers):
        p = f"vis.{i}."
        hb, hs = q.act(p + "ln1", b["vh"], b["vh8"])
        if i == 0:
            layer_norm(x, w[p + "ln1_w"], w[p + "ln1_b"], d.ln_eps, out=hb, out_scale=hs)
        else:
            add_layer_norm(x, o, w[p + "ln1_w"], w[p + "ln1_b"], d.ln_eps, out=hb, out_scale=hs)
        q.post(p + "ln1", hb)
        q.linear(hb, p + "ln1", p + "qkv_w", b["vqkv"], bias=w[p + "qkv_b"])
        ab, as_ = q.act(p + "attn", b["vatt"], b["vatt8"])
        attn.run("siglip", i, qkv[0], qkv[1], qkv[2], None, ab.view(nv, npch, vw), out_scale=as_)
        q.post(p + "attn", ab)
        q.linear(ab, p + "attn", p + "o_w", o, bias=w[p + "o_b"])
        hb, hs = q.act(p + "ln2", b["vh"], b["vh8"])
        add_layer_norm(x, o, w[p + "ln2_w"], w[p + "ln2_b"], d.ln_eps, out=hb, out_scale=hs)
        q.post(p + "ln2", hb)
        q.linear(hb, p + "ln2", p + "fc1_w", b["vf1"], bias=w[p + "fc1_b"])
        fb, fs = q.act(p + "gelu", b["vf1a"], b["vf1a8"])
        gelu_tanh(b["vf1"], out=fb, out_scale=fs)
        q.post(p + "gelu", fb)
        q.linear(fb, p + "gelu", p + "fc2_w", o, bias=w[p + "fc2_b"])
    hb, hs = q.act("vis.post_ln", b["vh"], b["vh8"])
    add_layer_norm(x, o, w["post_ln_w"], w["post_ln_b"], d.ln_eps, out=hb, out_scale=hs)
    q.post("vis.post_ln", hb)
    q.linear(hb, "vis.post_ln", "proj_w", b["proj_out"], bias=w["proj_b"])
    b["x"][: nv * npch].copy_(b["proj_out"])


def embed_prompt(w, b, d):
    n_img = d.num_views * d.num_patches
    P = d.prefix_rows   # prefix_len, or a prompt-length bucket's rows (models/pi05/prompt_buckets.py)
    torch.index_select(w["embed"], 0, b["token_ids"], out=b["emb_rows"])
    torch.mul(b["emb_rows"], d.embed_scale, out=b["x"][n_img:n_img + d.max_tokens])
    b["pad"][:n_img].view(d.num_views, d.num_patches).copy_(b["image_mask"][:, None])
    b["pad"][n_img:n_img + d.max_tokens].copy_(b["token_mask"])
    key_padding_bias(b["pad"], out=b["dec_bias"][:P])
    prefix_positions(b["pad"], out=b["pos"], suffix_out=b["suffix_pos"])


def prefix_forward(w, b, d, attn, q, after_kv=None):
    """after_kv(i), if given, is called as soon as layer i's K/V are in the cache (see forward's overlap)."""
    P, eps = d.prefix_rows, d.rms_eps   # the rows this prefix computes (a bucket's b holds that many)
    x = b["x"]
    bias = b["dec_bias"][:P]
    down = None
    for i in range(d.layers):
        p = f"llm.{i}."
        hb, hs = q.act(p + "norm1", b["h"], b["h8"])
        # norm weights: 1/s - 1 of the FP8 smoothing (runtime/smoothing.py), present only with smoothing on (then
        # from capture on). The Gemma norm scales themselves are folded into the next projection
        if i == 0:
            rms_norm(x, w.get(p + "norm1_w"), eps, out=hb, out_scale=hs)
        else:
            add_rms_norm(x, down, w.get(p + "norm1_w"), eps, out=hb, out_scale=hs)
        q.post(p + "norm1", hb)
        q.linear(hb, p + "norm1", p + "qkv_w", b["qkv"])
        kc, vc = b["k_cache"][i], b["v_cache"][i]
        rope_qkv_split(b["qkv"], b["pos"], q_out=b["q"], k_out=kc[:, :P], v_out=vc[:, :P], theta=d.rope_theta)
        if after_kv is not None:
            after_kv(i)
        if i == d.layers - 1:
            break  # the expert reads only this layer's K/V
        ab, as_ = q.act(p + "attn", b["att"], b["att8"])
        attn.run("prefix", i, b["q"][None], kc[None, :, :P], vc[None, :, :P], bias, ab[None], out_scale=as_)
        q.post(p + "attn", ab)
        o = q.linear_transposable(ab, p + "attn", p + "o_w", b["o"], b["o_t"])
        hb, hs = q.act(p + "norm2", b["h"], b["h8"])
        add_rms_norm(x, o, w.get(p + "norm2_w"), eps, out=hb, out_scale=hs)
        q.post(p + "norm2", hb)
        gu = q.linear_transposable(hb, p + "norm2", p + "gu_w", b["gu"], b["gu_t"])
        ab, as_ = q.act(p + "geglu", b["act"], b["act8"])
        geglu(gu, out=ab, out_scale=as_)
        q.post(p + "geglu", ab)
        down = q.linear_transposable(ab, p + "geglu", p + "down_w", b["down"], b["down_t"])


def expert_begin(w, b, d, q, s: int) -> None:
    """Flow step s begins: action_in_proj of x_t into the expert's residual stream, then layer 0's input adaRMS.
    Only step 0 runs this; every later step is begun by the seam after the step before it (step_boundary)."""
    torch.addmm(w["action_in_b"], b["x_t"], w["action_in_w"], out=b["ex_x"])
    m1, site = b["mods"][s][0], f"ex.{s}.0.norm1"
    hb, hs = q.act(site, b["ex_h"], b["ex_h8"])
    ada_rms_norm(b["ex_x"], m1[0], m1[1], d.rms_eps, out=hb, out_scale=hs)
    q.post(site, hb)


def expert_layer(w, b, d, attn, q, s: int, i: int, down):
    """Layer i of flow step s; `down` is layer i-1's MLP output (None for i = 0, whose input norm the step's
    beginning wrote). Returns this layer's."""
    P, S, eps, kv_len = d.prefix_len, d.horizon, d.rms_eps, d.kv_len
    x, mods = b["ex_x"], b["mods"][s]
    p, site, m1, m2 = f"ex.{i}.", f"ex.{s}.{i}.", mods[2 * i], mods[2 * i + 1]
    hb, hs = q.act(site + "norm1", b["ex_h"], b["ex_h8"])
    if i > 0:
        gated_add_ada_rms_norm(x, down, mods[2 * i - 1][2], m1[0], m1[1], eps, out=hb, out_scale=hs)
        q.post(site + "norm1", hb)
    kc, vc = b["k_cache"][i][:, :kv_len], b["v_cache"][i][:, :kv_len]
    q.linear_rope_qkv(hb, site + "norm1", p + "qkv_w", b["ex_qkv"], b["suffix_pos"], b["ex_q"],
                      kc[:, P:P + S], vc[:, P:P + S], d.rope_theta)
    ab, as_ = q.act(site + "attn", b["ex_att"], b["ex_att8"])
    attn.run("decoder", i, b["ex_q"][None], kc[None], vc[None], b["dec_bias"], ab[None], out_scale=as_)
    q.post(site + "attn", ab)
    o = q.linear_partials(ab, site + "attn", p + "o_w", b["ex_o"], b["ex_o_parts"])
    hb, hs = q.act(site + "norm2", b["ex_h"], b["ex_h8"])
    gated_add_ada_rms_norm(x, o, m1[2], m2[0], m2[1], eps, out=hb, out_scale=hs)
    q.post(site + "norm2", hb)
    ab = q.linear_geglu(hb, site + "norm2", p + "gu_w", b["ex_gu"], site + "geglu", b["ex_act"], b["ex_act8"])
    return q.linear_partials(ab, site + "geglu", p + "down_w", b["ex_down"], b["ex_down_parts"])


def step_boundary(w, b, d, q, s: int, down) -> None:
    """Flow step s ends (final gated adaRMS, action_out_proj + Euler step of x_t) and, unless it was the last,
    step s+1 begins (expert_begin). With q.fused_flow_boundary (production) that is one kernel, one program per
    action row (kernels/triton/flow_boundary.py); the twins run the pieces: a norm, the split-K flow kernel, and
    expert_begin's addmm + norm.
    With real-time chunking (d.inpaint_times, a load-time choice) the Euler step is followed by the inpainting blend
    at the time it reached (models/pi05/rtc.py): inside the seam kernel, or flow_inpaint in the pieces. Its weights
    and model-space prefix are device buffers written per tick; without it this is the plain graph."""
    L, mods, last = d.layers, b["mods"][s], s + 1 == d.num_steps
    gate, fin = mods[2 * L - 1][2], mods[2 * L]
    inpaint = ((b["noise"], b["rtc_target"], b["rtc_w"], b["rtc_w1"], d.inpaint_times[s]) if d.inpaint_times
               else None)
    if not q.fused_flow_boundary:
        gated_add_ada_rms_norm(b["ex_x"], down, gate, fin[0], fin[1], d.rms_eps, out=b["ex_hf"])
        linear_flow_update(b["x_t"], b["ex_hf"], w["action_out_w"], w["action_out_b"], d.dt, ws=b["flow_ws"])
        if inpaint is not None:
            flow_inpaint(b["x_t"], *inpaint)
        if not last:
            expert_begin(w, b, d, q, s + 1)
        return
    nxt = {}
    if not last:
        m1, site = b["mods"][s + 1][0], f"ex.{s + 1}.0.norm1"
        hb, hs = q.act(site, b["ex_h"], b["ex_h8"])
        nxt = dict(w_in=w["action_in_w"], b_in=w["action_in_b"], next_scale=m1[0], next_shift=m1[1], out=hb,
                   out_scale=hs)
    flow_boundary(b["x_t"], b["ex_x"], down, gate, fin[0], fin[1], w["action_out_rows"], w["action_out_b"],
                  d.dt, d.rms_eps, chunk=q.flow_tiles.chunk, num_warps=q.flow_tiles.num_warps, inpaint=inpaint, **nxt)
    if not last:
        q.post(site, hb)


def expert_step(w, b, d, attn, q, s: int):
    """The layers of flow step s (begun by expert_begin or the seam before it), then the seam after it."""
    down = None
    for i in range(d.layers):
        down = expert_layer(w, b, d, attn, q, s, i, down)
    step_boundary(w, b, d, q, s, down)


def beside_prefix(w, b, d, attn, q, side, events, begin, layer, end) -> None:
    """The prefix on the current stream and, on `side`: begin(), then layer(i) as soon as prefix layer i's K/V are in
    the cache (while prefix layer i+1 computes), then end(). `events` are L + 2 preallocated CUDA events (fork, one
    per layer, join). The side's work must share no written buffer with the prefix's (it writes its own rows and
    cache rows from d.prefix_len on; the prefix writes rows :P). Pi0.5's step 0 (prefix_with_first_step) and Pi0's
    state pass + step 0 (models/pi0/cuda_forward.py) are scheduled by it.
    Not for the calibration twin, whose dequantization scratch is shared by all its GEMMs."""
    main = torch.cuda.current_stream()
    events[0].record(main)
    side.wait_event(events[0])
    with torch.cuda.stream(side):
        begin()

    def after_kv(i):
        events[i + 1].record(main)
        side.wait_event(events[i + 1])
        with torch.cuda.stream(side):
            layer(i)

    prefix_forward(w, b, d, attn, q, after_kv=after_kv)
    with torch.cuda.stream(side):
        end()
        events[-1].record(side)
    main.wait_event(events[-1])


def prefix_with_first_step(w, b, d, attn, q, side, events):
    """The prefix on the current stream and flow step 0 of the expert on `side`, layer by layer (beside_prefix):
    expert layer i needs only prefix layer i's K/V (and the prompt's positions / key bias), so it can run while
    prefix layer i+1 computes. The two share no written buffer: the expert writes its own K/V rows P:P+S of each
    cache layer, the prefix rows :P."""
    down = [None]

    def layer(i):
        down[0] = expert_layer(w, b, d, attn, q, 0, i, down[0])

    beside_prefix(w, b, d, attn, q, side, events, begin=lambda: expert_begin(w, b, d, q, 0), layer=layer,
                  end=lambda: step_boundary(w, b, d, q, 0, down[0]))


def forward(w, b, d, attn, q, overlap=None):
    """Observation buffers -> model-space action chunk in b["x_t"] (fp32 [horizon, 32]).
    overlap: None, or (side stream, L + 2 events) to run flow step 0 beside the prefix (prefix_with_first_step)."""
    b["x_t"].copy_(b["noise"])
    vision_forward(w, b, d, attn, q)
    embed_prompt(w, b, d)
    if overlap is None:
        prefix_forward(w, b, d, attn, q)
        expert_begin(w, b, d, q, 0)
        expert_step(w, b, d, attn, q, 0)
    else:
        prefix_with_first_step(w, b, d, attn, q, *overlap)
    for s in range(1, d.num_steps):
        expert_step(w, b, d, attn, q, s)
