"""openpi-layout Orbax checkpoints from a canonical (openpi PyTorch) state dict, written WITH orbax as openpi does.

For tests and the device benchmark: the same weights as a safetensors checkpoint (Pi0.5 or Pi0), stored the way
openpi stores them, so the two loaders can be compared bit for bit. The torch -> JAX direction is the inverse of the mapping in
flash_rt/executors/orbax_source.py (shared/reference/openpi_orbax_layout.md §3.1), written out independently here
so that a mistake on either side shows up as a mismatch, not as two agreeing bugs.

Variants (openpi_orbax_layout.md §1):
* "released": `<out>/params/` holds `{"params": <pure dict>}`, float32 leaves, saved by one standalone
  `PyTreeCheckpointer` as replicated jax.Arrays on a 1-device ("x",) mesh (the pi05_base recipe);
* "training": what openpi training writes: a CheckpointManager step `<run>/<step>/` with the items params/ and
  train_state/; every key path ends in "value" (nnx.State) and the leaves a freeze filter matched are bfloat16
  (here: the vision tower, `bf16_prefix`).
Norm stats go to `<out>/assets/<asset_id>/norm_stats.json` beside `params/`. Needs jax and orbax-checkpoint
(requirements-orbax.txt); reading them back does not.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from flash_rt.models.pi05.config import EMBED_LM_HEAD, EMBED_TOKENS, EXP, LLM, PROJ, VIS

DEFAULT_BF16_PREFIX = "PaliGemma/img/"   # a "freeze the vision tower" training config


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).cpu().numpy()


def jax_tree_from_state_dict(sd: Mapping[str, torch.Tensor], vis_heads: int, heads: int,
                             kv_heads: int = 1) -> dict[str, np.ndarray]:
    """{"PaliGemma/img/...": array} (openpi's Pi0.5 leaves, float32) from canonical tensors; a Pi0 state dict
    (one with `state_proj.weight`) gives openpi's Pi0 leaves (plain expert norm scales, state_proj,
    action_time_mlp_in/out)."""
    g = lambda k: _np(sd[k])  # noqa: E731
    pi0 = "state_proj.weight" in sd
    emb = sd[EMBED_LM_HEAD] if EMBED_LM_HEAD in sd else sd[EMBED_TOKENS]
    vl = 1 + max(int(k[len(VIS + "encoder.layers."):].split(".")[0]) for k in sd if k.startswith(VIS + "encoder.layers."))
    ll = 1 + max(int(k[len(LLM + "layers."):].split(".")[0]) for k in sd if k.startswith(LLM + "layers."))
    stack = lambda f, n: np.stack([f(i) for i in range(n)])  # noqa: E731
    t: dict[str, np.ndarray] = {}
    img, blk = "PaliGemma/img/", "PaliGemma/img/Transformer/encoderblock/"
    t[img + "embedding/kernel"] = g(VIS + "embeddings.patch_embedding.weight").transpose(2, 3, 1, 0)
    t[img + "embedding/bias"] = g(VIS + "embeddings.patch_embedding.bias")
    pos = g(VIS + "embeddings.position_embedding.weight")
    t[img + "pos_embedding"] = pos.reshape(1, *pos.shape)
    V = lambda i, n: g(f"{VIS}encoder.layers.{i}.{n}")  # noqa: E731
    for leaf, n in (("LayerNorm_0", "layer_norm1"), ("LayerNorm_1", "layer_norm2")):
        t[blk + leaf + "/scale"] = stack(lambda i: V(i, n + ".weight"), vl)
        t[blk + leaf + "/bias"] = stack(lambda i: V(i, n + ".bias"), vl)
    att = blk + "MultiHeadDotProductAttention_0/"
    for leaf, n in (("query", "q_proj"), ("key", "k_proj"), ("value", "v_proj")):
        def kern(i, n=n):
            w = V(i, f"self_attn.{n}.weight")          # [H*hd, D]
            return w.T.reshape(w.shape[1], vis_heads, -1)
        t[att + leaf + "/kernel"] = stack(kern, vl)
        t[att + leaf + "/bias"] = stack(lambda i, n=n: V(i, f"self_attn.{n}.bias").reshape(vis_heads, -1), vl)
    t[att + "out/kernel"] = stack(lambda i: V(i, "self_attn.out_proj.weight").T.reshape(vis_heads, -1,
                                                                                         V(i, "self_attn.out_proj.weight").shape[0]), vl)
    t[att + "out/bias"] = stack(lambda i: V(i, "self_attn.out_proj.bias"), vl)
    for leaf, n in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
        t[blk + f"MlpBlock_0/{leaf}/kernel"] = stack(lambda i, n=n: V(i, f"mlp.{n}.weight").T, vl)
        t[blk + f"MlpBlock_0/{leaf}/bias"] = stack(lambda i, n=n: V(i, f"mlp.{n}.bias"), vl)
    t[img + "Transformer/encoder_norm/scale"] = g(VIS + "post_layernorm.weight")
    t[img + "Transformer/encoder_norm/bias"] = g(VIS + "post_layernorm.bias")
    t[img + "head/kernel"] = g(PROJ + "weight").T
    t[img + "head/bias"] = g(PROJ + "bias")
    t["PaliGemma/llm/embedder/input_embedding"] = _np(emb)
    lyr = "PaliGemma/llm/layers/"
    for pre, sfx in ((LLM, ""), (EXP, "_1")):
        L = lambda i, n, pre=pre: g(f"{pre}layers.{i}.{n}")  # noqa: E731

        def q(i, L=L):
            w = L(i, "self_attn.q_proj.weight")         # [H*hd, D] -> [H, D, hd]
            return w.reshape(heads, -1, w.shape[1]).transpose(0, 2, 1)

        def kv(i, L=L):
            ks = [L(i, f"self_attn.{n}_proj.weight") for n in ("k", "v")]
            return np.stack([w.reshape(kv_heads, -1, w.shape[1]).transpose(0, 2, 1) for w in ks])

        def o(i, L=L):
            w = L(i, "self_attn.o_proj.weight")         # [D, H*hd] -> [H, hd, D]
            return w.T.reshape(heads, -1, w.shape[0])

        t[lyr + f"attn/q_einsum{sfx}/w"] = stack(q, ll)
        t[lyr + f"attn/kv_einsum{sfx}/w"] = stack(kv, ll)
        t[lyr + f"attn/attn_vec_einsum{sfx}/w"] = stack(o, ll)
        t[lyr + f"mlp{sfx}/gating_einsum"] = stack(
            lambda i, L=L: np.stack([L(i, "mlp.gate_proj.weight").T, L(i, "mlp.up_proj.weight").T]), ll)
        t[lyr + f"mlp{sfx}/linear"] = stack(lambda i, L=L: L(i, "mlp.down_proj.weight").T, ll)
        for leaf, n in (("pre_attention_norm", "input_layernorm"), ("pre_ffw_norm", "post_attention_layernorm")):
            if sfx and pi0:        # Pi0's expert: a Gemma RMSNorm scale, like the LLM's
                t[lyr + f"{leaf}_1/scale"] = stack(lambda i, n=n, L=L: L(i, n + ".weight"), ll)
            elif sfx:
                t[lyr + f"{leaf}_1/Dense_0/kernel"] = stack(lambda i, n=n, L=L: L(i, n + ".dense.weight").T, ll)
                t[lyr + f"{leaf}_1/Dense_0/bias"] = stack(lambda i, n=n, L=L: L(i, n + ".dense.bias"), ll)
            else:
                t[lyr + f"{leaf}/scale"] = stack(lambda i, n=n, L=L: L(i, n + ".weight"), ll)
    t["PaliGemma/llm/final_norm/scale"] = g(LLM + "norm.weight")
    if pi0:
        t["PaliGemma/llm/final_norm_1/scale"] = g(EXP + "norm.weight")
        heads = ("action_in_proj", "action_out_proj", "state_proj", "action_time_mlp_in", "action_time_mlp_out")
    else:
        t["PaliGemma/llm/final_norm_1/Dense_0/kernel"] = g(EXP + "norm.dense.weight").T
        t["PaliGemma/llm/final_norm_1/Dense_0/bias"] = g(EXP + "norm.dense.bias")
        heads = ("action_in_proj", "action_out_proj", "time_mlp_in", "time_mlp_out")
    for n in heads:
        t[n + "/kernel"] = g(n + ".weight").T
        t[n + "/bias"] = g(n + ".bias")
    return {k: np.ascontiguousarray(v) for k, v in t.items()}


def _nested(tree: Mapping[str, np.ndarray], training: bool, bf16_leaves) -> dict:
    """Nested dicts from the "/" paths, replicated jax.Arrays on a 1-device ("x",) mesh (openpi's restore sharding);
    `training` appends "value" to every path (nnx.State); `bf16_leaves` are stored as bfloat16."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    sharding = NamedSharding(Mesh(np.array(jax.devices()[:1]), ("x",)), PartitionSpec())
    nested: dict = {}
    for name, arr in tree.items():
        node = nested
        parts = name.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        x = jax.device_put(jnp.asarray(arr, dtype=jnp.bfloat16 if name in bf16_leaves else arr.dtype), sharding)
        node[parts[-1]] = {"value": x} if training else x
    return nested


def _use_cpu_jax() -> None:
    # JAX on the CPU unless told otherwise: on a GPU machine it would claim most of the GPU's memory for itself
    os.environ.setdefault("JAX_PLATFORMS", "cpu")


def write_orbax_params(tree: Mapping[str, np.ndarray], params: str | Path, *, training: bool = False,
                       bf16_leaves=()) -> Path:
    """Save `{"params": tree}` with one standalone PyTreeCheckpointer at `params` (which must not exist): the
    released checkpoints' recipe (see `_nested` for the leaves)."""
    _use_cpu_jax()
    import orbax.checkpoint as ocp

    params = Path(params)
    params.parent.mkdir(parents=True, exist_ok=True)
    ckptr = ocp.PyTreeCheckpointer()
    ckptr.save(str(params.resolve()), {"params": _nested(tree, training, bf16_leaves)})
    if hasattr(ckptr, "close"):
        ckptr.close()
    return params


def write_training_step(tree: Mapping[str, np.ndarray], run_dir: str | Path, step: int, *, bf16_leaves=()) -> Path:
    """What openpi training writes: a CheckpointManager over `run_dir` saving step `step` with the items `params`
    (`{"params": <nnx.State>}`, every path ending in "value") and `train_state` (here just the step); the
    `_CHECKPOINT_METADATA` sits in `<run_dir>/<step>/`. Returns `<run_dir>/<step>`."""
    _use_cpu_jax()
    import jax.numpy as jnp
    import orbax.checkpoint as ocp

    run_dir = Path(run_dir).resolve()
    mngr = ocp.CheckpointManager(str(run_dir), item_names=("params", "train_state"))
    mngr.save(step, args=ocp.args.Composite(
        params=ocp.args.PyTreeSave({"params": _nested(tree, True, bf16_leaves)}),
        train_state=ocp.args.PyTreeSave({"step": jnp.asarray(step)})))
    mngr.wait_until_finished()
    mngr.close()
    return run_dir / str(step)


def build_orbax_checkpoint(out, sd: Mapping[str, torch.Tensor], *, vis_heads: int, heads: int, kv_heads: int = 1,
                           variant: str = "released", norm_stats: dict | None = None, asset_id: str = "robot",
                           bf16_prefix: str = DEFAULT_BF16_PREFIX, step: int = 1000) -> Path:
    """Write an openpi Orbax checkpoint from canonical tensors and return its directory (the one holding params/):
    "released": `<out>/params/`; "training": a run directory `<out>` with `<out>/<step>/params/` (+ train_state/),
    the leaves under `bf16_prefix` in bfloat16. Norm stats, when given, go to `assets/<asset_id>/norm_stats.json`
    beside params/."""
    if variant not in ("released", "training"):
        raise ValueError(f"variant must be 'released' or 'training', got {variant!r}")
    tree = jax_tree_from_state_dict(sd, vis_heads, heads, kv_heads)
    if variant == "training":
        ckpt = write_training_step(tree, out, step, bf16_leaves=[k for k in tree if k.startswith(bf16_prefix)])
    else:
        ckpt = write_orbax_params(tree, Path(out) / "params").parent
    if norm_stats is not None:
        (ckpt / "assets" / asset_id).mkdir(parents=True, exist_ok=True)
        (ckpt / "assets" / asset_id / "norm_stats.json").write_text(json.dumps(norm_stats, indent=1))
    return ckpt


def bf16_rounded(sd: Mapping[str, torch.Tensor], tree_bf16_prefix: str = DEFAULT_BF16_PREFIX) -> dict:
    """The canonical tensors a "training" checkpoint holds: those cut from bf16 leaves (the vision tower and its
    projector, under the default prefix) rounded to bf16, the rest unchanged. For the safetensors twin of it."""
    assert tree_bf16_prefix == DEFAULT_BF16_PREFIX, "only the vision-tower freeze is mapped to canonical keys"
    return {k: (v.to(torch.bfloat16) if k.startswith((VIS, PROJ)) else v) for k, v in sd.items()}


def build_tiny_pi0_orbax(root: str | Path) -> dict:
    """The tiny Pi0 checkpoint (flash_rt.testing.pi0_checkpoint) and its openpi Orbax twins, for the CPU and GPU
    tests: {"safetensors": the openpi safetensors checkpoint, "released": `<root>/pi0_tiny` (params/ + assets/),
    "training": an openpi training step of the same weights (vision tower in bf16), "training_twin": safetensors
    holding those bf16 roundings}. The tokenizer is copied beside params/, as a user puts it there."""
    import shutil

    from safetensors.torch import load_file, save_file

    from flash_rt.testing.checkpoint import TINY_ASSET_ID, tiny_norm_stats
    from flash_rt.testing.pi0_checkpoint import TINY_PI0_CONFIG, build_tiny_pi0_checkpoint
    root = Path(root)
    st = build_tiny_pi0_checkpoint(root / "pi0_st", layout="openpi")
    sd = load_file(str(st / "model.safetensors"))
    kw = dict(vis_heads=TINY_PI0_CONFIG.vis_heads, heads=TINY_PI0_CONFIG.heads, norm_stats=tiny_norm_stats(),
              asset_id=TINY_ASSET_ID)
    out = {"safetensors": st,
           "released": build_orbax_checkpoint(root / "pi0_tiny", sd, variant="released", **kw),
           "training": build_orbax_checkpoint(root / "train_run", sd, variant="training", step=500, **kw)}
    twin = root / "training_twin"
    shutil.copytree(st, twin)
    save_file(bf16_rounded(sd), str(twin / "model.safetensors"), metadata={"format": "pt"})
    out["training_twin"] = twin
    for ck in (out["released"], out["training"]):
        shutil.copy(st / "tokenizer.model", ck / "tokenizer.model")
    return out
