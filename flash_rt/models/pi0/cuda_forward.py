"""Pi0 on the CUDA kernel catalogue: one graph-safe forward for every GPU target, a thin binding on the shared runtime.

The prefix is Pi0.5's (pi05_spec.md 1a), so `vision_forward`, `embed_prompt` and `prefix_forward` of
`flash_rt.models.pi05.cuda_forward` run unchanged (same buffer names, same FP8 sites). What Pi0 adds is written
here with the same kernels and the same quantization-context calls (runtime/quant.py), so production FP8, its
calibration twin and the BF16 rung are this one function:

* `state_forward`: the state token (`state_proj`) through the expert over [prefix | itself] -- its own attention
  site "state" with its own key bias (`st_bias`: the prefix's padding, 0 for itself, masked beyond), because the
  bias is one value per key and the action rows' keys must stay hidden from it. It sees neither the actions nor t,
  so its K/V (cache row P) are computed once per inference, before the flow loop.
* `action_step`: `action_time_mlp_out(swish(x_t @ at_ia_w + at_c_rows[s]))` in fp32 (action_in_proj folded into
  the action half of action_time_mlp_in at load; tiny, precision-critical, like Pi0.5's heads), then the expert
  layers with plain Gemma norms (the `1 + w` folded into qkv_w / gu_w at load; `rms_norm` / `add_rms_norm`, no
  adaRMS, no gates), the final norm with its `1 + w`, and `linear_flow_update` (action_out + the Euler step in one
  launch).

The expert's o and down projections go through `q.linear_partials`, as Pi0.5's do: in production the Triton split-K
FP8 GEMM writes fp32 partials [split_k, rows, W] that the next add_rms_norm sums in split order (no cuBLASLt launch
breaking the PDL chain twice a layer; on Pi0.5's expert o 3.01 vs 4.79 us and down 3.87 vs 6.14 us a call on an H100,
hardware/hopper/tuning.py); the twins and sites the split-K tiles do not cover return the [rows, W] output.

With real-time chunking (d.inpaint_times) every step's update is followed by the inpainting blend (`flow_inpaint`,
models/pi05/rtc.py), as in Pi0.5's unfused seam.
With `overlap` (the cells' overlap_first_step option) the state pass and flow step 0 run on a second stream beside
the prefix, layer by layer (prefix_with_state_and_first_step), as Pi0.5's step 0 does on Hopper.

Expert FP8 activation scales are per flow step (`ex.{step}.{layer}.*`), as Pi0.5's; the state pass has its own
(`st.{layer}.*`). Cache rows per layer: [0, P) prefix, P the state token, [P + 1, P + 1 + H) the actions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from flash_rt.kernels.triton import add_rms_norm, flow_inpaint, linear_flow_update, rms_norm
from flash_rt.models.pi05.cuda_forward import beside_prefix, embed_prompt, prefix_forward, vision_forward
from flash_rt.models.pi05.cuda_forward import quant_sites as pi05_quant_sites

LAYER_SITES = ("norm1", "attn", "norm2", "geglu")


def quant_sites(d) -> list[str]:
    """Every site where production quantizes an activation to FP8, in execution order."""
    s = [x for x in pi05_quant_sites(d) if not x.startswith("ex.")]
    for i in range(d.layers):
        s += [f"st.{i}.norm1"] + ([f"st.{i}.{n}" for n in LAYER_SITES[1:]] if i < d.layers - 1 else [])
    for st in range(d.num_steps):
        for i in range(d.layers):
            s += [f"ex.{st}.{i}.{n}" for n in LAYER_SITES]
    return s


def _expert_layer(w, b, d, attn, q, i, site, rows, down, pos, row0, keys, bias, attn_site, last=False):
    """Expert layer i on the residual rows `rows` (a dict of this pass's buffers); returns the MLP output."""
    x, eps = rows["x"], d.rms_eps
    hb, hs = q.act(site + "norm1", rows["h"], rows["h8"])
    if down is None:
        rms_norm(x, None, eps, out=hb, out_scale=hs)
    else:
        add_rms_norm(x, down, None, eps, out=hb, out_scale=hs)
    q.post(site + "norm1", hb)
    n = x.shape[0]
    kc, vc = b["k_cache"][i], b["v_cache"][i]
    q.linear_rope_qkv(hb, site + "norm1", f"ex.{i}.qkv_w", rows["qkv"], pos, rows["q"], kc[:, row0:row0 + n],
                      vc[:, row0:row0 + n], d.rope_theta)
    if last:
        return None     # the state pass: later rows read only this layer's K/V
    ab, as_ = q.act(site + "attn", rows["att"], rows["att8"])
    attn.run(attn_site, i, rows["q"][None], kc[None, :, :keys], vc[None, :, :keys], bias, ab[None], out_scale=as_)
    q.post(site + "attn", ab)
    o = q.linear_partials(ab, site + "attn", f"ex.{i}.o_w", rows["o"], rows["o_parts"])
    hb, hs = q.act(site + "norm2", rows["h"], rows["h8"])
    add_rms_norm(x, o, None, eps, out=hb, out_scale=hs)
    q.post(site + "norm2", hb)
    ab = q.linear_geglu(hb, site + "norm2", f"ex.{i}.gu_w", rows["gu"], site + "geglu", rows["act"], rows["act8"])
    return q.linear_partials(ab, site + "geglu", f"ex.{i}.down_w", rows["down"], rows["down_parts"])


def state_begin(w, b, d) -> None:
    """The state token's input row (state_proj) and its key bias (the prefix's padding, then itself)."""
    P = d.prefix_len
    torch.addmm(w["state_b"], b["state"][None], w["state_w"], out=b["st"]["x"])
    b["st_bias"][:P + 1].copy_(b["dec_bias"][:P + 1])       # the prefix's padding; row P (itself) is always 0


def state_layer(w, b, d, attn, q, i, down):
    """Layer i of the state pass (its K/V into cache row P); returns its MLP output (None after the last layer)."""
    return _expert_layer(w, b, d, attn, q, i, f"st.{i}.", b["st"], down, b["suffix_pos"][:1], d.prefix_len,
                         b["st_bias"].shape[0], b["st_bias"], "state", last=i == d.layers - 1)


def state_forward(w, b, d, attn, q) -> None:
    state_begin(w, b, d)
    down = None
    for i in range(d.layers):
        down = state_layer(w, b, d, attn, q, i, down)


def action_begin(w, b, d, s: int) -> None:
    """Flow step s's input rows: action_time_mlp_out(swish(action_in_proj(x_t) @ at_a + time_rows[s])), with
    action_in_proj folded into at_a at load (x_t @ at_ia_w + at_c_rows[s]: _pi0_cuda.unpack_weights)."""
    ac = b["ac"]
    torch.addmm(w["at_c_rows"][s], b["x_t"], w["at_ia_w"], out=ac["hid"])
    F.silu(ac["hid"], inplace=True)
    torch.addmm(w["at_out_b"], ac["hid"], w["at_out_w"], out=ac["x"])


def action_layer(w, b, d, attn, q, s: int, i: int, down):
    """Expert layer i of flow step s over the action rows (K/V into cache rows P + 1 ..)."""
    return _expert_layer(w, b, d, attn, q, i, f"ex.{s}.{i}.", b["ac"], down, b["suffix_pos"][1:], d.prefix_len + 1,
                         d.kv_len, b["dec_bias"], "decoder")


def action_end(w, b, d, s: int, down) -> None:
    """The final norm, action_out_proj and the Euler step of x_t; with real-time chunking (d.inpaint_times, a
    load-time choice) the inpainting blend at the time step s reached (models/pi05/rtc.py), as Pi0.5's unfused seam."""
    ac = b["ac"]
    add_rms_norm(ac["x"], down, w["ex_final_norm"], d.rms_eps, out=ac["hf"])
    linear_flow_update(b["x_t"], ac["hf"], w["action_out_w"], w["action_out_b"], d.dt, ws=b["flow_ws"])
    if d.inpaint_times:
        flow_inpaint(b["x_t"], b["noise"], b["rtc_target"], b["rtc_w"], b["rtc_w1"], d.inpaint_times[s])


def action_step(w, b, d, attn, q, s: int) -> None:
    action_begin(w, b, d, s)
    down = None
    for i in range(d.layers):
        down = action_layer(w, b, d, attn, q, s, i, down)
    action_end(w, b, d, s, down)


def prefix_with_state_and_first_step(w, b, d, attn, q, side, events) -> None:
    """The prefix on the current stream, and beside it on `side` (pi05's beside_prefix), layer by layer, the state
    pass and flow step 0: state layer i needs only prefix layer i's K/V, action layer i those and the state's row of
    layer i, so both run while prefix layer i+1 computes. The state pass is latency-bound at one row and would
    otherwise run alone on the GPU for 18 layers. Nothing written is shared: the prefix writes its own rows and
    cache rows [0, P), the side the "st" / "ac" rows (each with its own split-K partials) and cache rows P..; the
    attention sites keep their workspaces apart."""
    down = {"st": None, "ac": None}

    def begin():
        state_begin(w, b, d)
        action_begin(w, b, d, 0)

    def layer(i):
        down["st"] = state_layer(w, b, d, attn, q, i, down["st"])
        down["ac"] = action_layer(w, b, d, attn, q, 0, i, down["ac"])

    beside_prefix(w, b, d, attn, q, side, events, begin=begin, layer=layer,
                  end=lambda: action_end(w, b, d, 0, down["ac"]))


def forward(w, b, d, attn, q, overlap=None):
    """Observation buffers (+ the model-space state in b["state"]) -> model-space action chunk in b["x_t"].
    overlap: None, or (side stream, L + 2 events) to run the state pass and flow step 0 beside the prefix
    (prefix_with_state_and_first_step); the same kernels on the same buffers, so the same bits."""
    b["x_t"].copy_(b["noise"])
    vision_forward(w, b, d, attn, q)
    embed_prompt(w, b, d)
    if overlap is None:
        prefix_forward(w, b, d, attn, q)
        state_forward(w, b, d, attn, q)
        action_step(w, b, d, attn, q, 0)
    else:
        prefix_with_state_and_first_step(w, b, d, attn, q, *overlap)
    for s in range(1, d.num_steps):
        action_step(w, b, d, attn, q, s)
