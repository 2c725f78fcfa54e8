"""How the shared Pi0.5 GPU frontend (_pi05_cuda.py) stores a model on the device: the weights as the kernels read
them (the GPU spec's flat dict, which the weight cache stores, and its unpacking: aligned FP8 scales, folded biases,
precomputed modulation) and every device buffer of one forward. Functions of the checkpoint and the shapes alone, so
Pi0's GPU frontend builds on them and the CPU tests (the interpreter forwards, the compile check) build the very
same buffers and weights without a GPU.
"""
from __future__ import annotations

import types

import torch

from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.executors.weight_loader import WeightLoader
from flash_rt.frontends.torch._pi05_cuda_spec import build_spec, gemm_names
from flash_rt.models.pi05.dims import Pi05Dims
from flash_rt.models.pi05.flow import flow_schedule, precompute_modulation
from flash_rt.runtime.quant import FP8, aligned_scalars
from flash_rt.runtime.smoothing import SmoothingPlan

__all__ = ["weight_spec_tag", "build_weights", "weight_scales", "unpack_weights", "device_buffers"]


def weight_spec_tag(hardware: str, precision: str, smoothing: str | None = None) -> str:
    """The weight cache's spec tag of a cell: part of a file name, so only [A-Za-z0-9.+-] (rtx_sm120's underscore
    made every rtx_sm120 load fail before this, on the first device run). `smoothing`: the digest of the folded
    smoothing factors (SmoothingPlan.digest), so smoothed and unsmoothed weights never share a file.
    v2: the prefix norm weights (llm.{i}.norm{1,2}_w) are part of the weights."""
    return f"pi05-{hardware.replace('_', '-')}-{precision}-v2" + (f"-sq{smoothing}" if smoothing else "")


def build_weights(checkpoint, cfg, precision: str, device, open_source=open_checkpoint,
                  smoothing: dict | None = None) -> dict:
    """The checkpoint through the GPU spec on `device` (FP8 quantization there): a flat {name: tensor} dict, what
    the weight cache stores ("w.<name>" weights, "s.<group>" per-family FP8 scales). `open_source` reads another
    checkpoint format (the jax cells pass the Orbax source). `smoothing`: {group: factors} (runtime/smoothing.py)
    folded in fp32 before quantization or the bf16 cast (the frontend smooths fp8 only; the bf16 build takes factors
    too, for the CPU test that the folds are exact)."""
    plan = SmoothingPlan(cfg, smoothing)
    src = open_source(checkpoint, device=str(device))
    target = types.SimpleNamespace(w={})
    WeightLoader(build_spec(cfg, precision, plan), src).run(target)
    plan.fold_vectors(target.w)
    flat = {f"w.{k}": v for k, v in target.w.items()}
    for _, grp, _ in gemm_names(cfg) if precision == "fp8" else []:
        flat.setdefault(f"s.{grp}", getattr(target, grp))
    return flat


def weight_scales(flat: dict, names, device) -> tuple[dict, torch.Tensor]:
    """The FP8 GEMMs' weight scales as views of one aligned device block: ({gemm: 0-d view}, the block). `names`:
    (gemm, scale group, index or None) of a model's spec; the values come from the cached flat dict's `s.<group>`."""
    ws = {}
    store, views = aligned_scalars(len(names), device)
    for (name, grp, i), view in zip(names, views):
        view.copy_(flat[f"s.{grp}"][0 if i is None else i])
        ws[name] = view
    return ws, store


def unpack_weights(flat: dict, cfg, precision: str, device, norm_weights: bool = False):
    """(w, FP8 weight scales by name, their aligned storage, the per-step modulation, dt) from a flat dict: the
    scales on 256-byte boundaries (cuBLASLt), the patch kernel as a GEMM operand, pos + patch bias folded, the
    action head in the seam kernel's layout, and every t-dependent modulation precomputed (then dropped).
    norm_weights: give the prefix norms weight vectors (zeros where the flat dict has none) -- with smoothing on,
    the graph is captured before the factors are measured, so the vectors must exist from the start. Without them
    the prefix norms run weightless, the kernels of a build without smoothing."""
    flat = {k: v.to(device) for k, v in flat.items()}
    w = {k[2:]: v for k, v in flat.items() if k.startswith("w.")}
    if norm_weights:   # smoothing on: the prefix norms read a weight vector (zeros until factors are measured)
        for i in range(cfg.layers):
            for n in ("norm1_w", "norm2_w"):
                w.setdefault(f"llm.{i}.{n}", torch.zeros(cfg.width, dtype=torch.float32, device=device))
    ws, store = weight_scales(flat, gemm_names(cfg), device) if precision == "fp8" else ({}, None)
    w["patch_w"] = w["patch_w"].reshape(cfg.vis_width, -1).contiguous()
    w["pos_emb_b"] = (w.pop("pos_emb") + w.pop("patch_b")).contiguous()
    w["action_out_rows"] = w["action_out_w"].t().contiguous()   # [A, D], as the flow_boundary kernel reads it
    times, dt = flow_schedule(cfg.num_steps)
    mods = precompute_modulation(w, cfg, times).to(device)
    for k in [k for k in w if ".ada" in k or k.startswith(("time_", "ex_final"))]:
        del w[k]  # only needed for the precompute (~0.5 GB fp32 at full size)
    return w, ws, store, mods, dt


def device_buffers(c, d: Pi05Dims, split_k: int, dev, mods) -> dict:
    """Every device buffer of one Pi0.5 GPU forward but the per-tick inputs (which the frontend adds, staged or
    zero-copy), allocated once. A function of the shapes alone, so the CI compile check builds the very same
    buffers on the CPU to record the forward's kernel launches (test/unit/test_kernels_compile.py)."""
    from flash_rt.kernels.triton.misc import LinearFlowWorkspace
    nv, P, S, L, n_img = d.num_views, d.prefix_len, d.horizon, d.kv_len, d.image_tokens
    qn, kvn, sk = c.heads * c.head_dim, c.kv_heads * c.head_dim, split_k

    def z(*shape, dtype=torch.bfloat16):
        return torch.zeros(*shape, dtype=dtype, device=dev)

    f32, bf = torch.float32, torch.bfloat16
    b = {
        "x_t": z(S, c.action_dim, dtype=f32),
        "img": z(nv, 3, c.image_size, c.image_size), "patches": z(n_img, 3 * c.patch_size ** 2),
        "vx": z(n_img, c.vis_width, dtype=f32), "vh": z(n_img, c.vis_width), "vh8": z(n_img, c.vis_width, dtype=FP8),
        "vo": z(n_img, c.vis_width), "vqkv": z(n_img, 3 * c.vis_width), "vatt": z(n_img, c.vis_width),
        "vatt8": z(n_img, c.vis_width, dtype=FP8), "vf1": z(n_img, c.vis_mlp), "vf1a": z(n_img, c.vis_mlp),
        "vf1a8": z(n_img, c.vis_mlp, dtype=FP8), "proj_out": z(n_img, c.width),
        "emb_rows": z(c.max_token_len, c.width),
        "x": z(P, c.width, dtype=f32), "h": z(P, c.width), "h8": z(P, c.width, dtype=FP8),
        "qkv": z(P, qn + 2 * kvn), "q": z(c.heads, P, c.head_dim), "att": z(P, qn),
        "att8": z(P, qn, dtype=FP8), "o": z(P, c.width), "gu": z(P, 2 * c.mlp), "act": z(P, c.mlp),
        "act8": z(P, c.mlp, dtype=FP8), "down": z(P, c.width),
        "o_t": z(c.width, P), "down_t": z(c.width, P),   # transposed GEMM results (transposed_gemms)
        "pad": z(P, dtype=torch.bool), "pos": z(P, dtype=torch.int64), "suffix_pos": z(S, dtype=torch.int64),
        "dec_bias": z(L, dtype=bf), "k_cache": z(c.layers, c.kv_heads, L, c.head_dim),
        "v_cache": z(c.layers, c.kv_heads, L, c.head_dim),
        "mods": mods, "ex_x": z(S, c.ex_width, dtype=f32), "ex_h": z(S, c.ex_width),
        "ex_h8": z(S, c.ex_width, dtype=FP8), "ex_hf": z(S, c.ex_width, dtype=f32),
        "ex_qkv": z(S, qn + 2 * kvn), "ex_q": z(c.heads, S, c.head_dim), "ex_att": z(S, qn),
        "ex_att8": z(S, qn, dtype=FP8), "ex_o": z(S, c.ex_width), "ex_gu": z(S, 2 * c.ex_mlp),
        "ex_act": z(S, c.ex_mlp), "ex_act8": z(S, c.ex_mlp, dtype=FP8), "ex_down": z(S, c.ex_width),
        "ex_o_parts": z(sk, S, c.ex_width, dtype=f32), "ex_down_parts": z(sk, S, c.ex_width, dtype=f32),
        "flow_ws": LinearFlowWorkspace(S, c.ex_width, c.action_dim, dev),
    }
    # the transposed gate+up result [2F, P] shares gu's storage (a layer writes one or the other; 38 MB full-size)
    b["gu_t"] = b["gu"].view(-1).view(2 * c.mlp, P)
    # key bias: the suffix's own keys are always visible, the unused tail never
    b["dec_bias"][P + S:] = -2.3819763e38
    return b
