"""STEP 2 of 5 -- the weights: which checkpoint tensor becomes which engine tensor, and the model's dims.

Copy to `flash_rt/frontends/torch/_mymodel_cpu_spec.py` (a plugin: `<pkg>/_mymodel_cpu_spec.py`).

What you translate (your source model's state dict -> this table):

| your checkpoint / source model                        | here                                              |
|-------------------------------------------------------|---------------------------------------------------|
| every `state_dict` key the forward reads              | one right-hand side of `KEYS` (edit the names)    |
| `q_proj/k_proj/v_proj` (+ the norm before them)       | `FusedQKV(..., norm_fuse=...)`: one [in, q+k+v] GEMM, Gemma's `x * (1 + w)` folded in fp32 |
| `gate_proj/up_proj` (+ the norm before them)          | `FusedGateUp(..., norm_fuse=...)`                  |
| an `nn.Linear` weight [out, in]                       | `tT()`: stored [in, out] so the pipeline runs `addmm(bias, x, W)` into a preallocated output |
| a conv patch embedding [D, 3, p, p]                   | reshaped to a GEMM [3*p*p, D] (patches are flattened channel-major) |
| hidden sizes, layer count                             | `infer_config`: read off the tensor shapes; what shapes cannot say (head counts, head dim, image size, horizon, prompt slots) from `config.json` |

Rules: a missing key is reported with every other missing key before anything loads (WeightLoader); never
guess a dim that a shape can tell; a norm that the source computes as `x_hat * (1 + w)` must be folded as
`1 + w` (FusedQKV / FusedGateUp do), one computed as `x_hat * w` must not be folded that way -- the routing
table in docs/plugin_model_template.md shows the cosine each mistake gives.
When a second cell (a GPU target) comes, move `MyModelConfig` / `infer_config` to `models/mymodel/config.py`
and make this file the shared table with per-target storage callbacks (see `_pi05_spec_common.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from flash_rt.errors import CheckpointError
from flash_rt.executors.torch_weights import DictSink, FusedGateUp, FusedQKV, ToFp32, tT
from flash_rt.executors.weight_loader import Item, LayerBlock, ModelWeightSpec

# engine name -> checkpoint key ({i}: the layer). EDIT THE RIGHT-HAND SIDES to your checkpoint's names.
KEYS = {
    "patch_w": "mymodel.vision.patch_embed.weight",         # [D, 3, p, p]
    "patch_b": "mymodel.vision.patch_embed.bias",           # [D]
    "pos_emb": "mymodel.vision.pos_embed",                   # [num_patches, D]
    "embed": "mymodel.text.embed_tokens.weight",             # [vocab, D]
    "norm1": "mymodel.layers.{i}.input_norm.weight",         # [D]     x_hat * (1 + w)
    "q": "mymodel.layers.{i}.attn.q_proj.weight",            # [H*hd, D]
    "k": "mymodel.layers.{i}.attn.k_proj.weight",            # [Hkv*hd, D]
    "v": "mymodel.layers.{i}.attn.v_proj.weight",            # [Hkv*hd, D]
    "o": "mymodel.layers.{i}.attn.o_proj.weight",            # [D, H*hd]
    "norm2": "mymodel.layers.{i}.post_attn_norm.weight",     # [D]     x_hat * (1 + w)
    "gate": "mymodel.layers.{i}.mlp.gate_proj.weight",       # [F, D]
    "up": "mymodel.layers.{i}.mlp.up_proj.weight",           # [F, D]
    "down": "mymodel.layers.{i}.mlp.down_proj.weight",       # [D, F]
    "final_norm": "mymodel.final_norm.weight",               # [D]     x_hat * (1 + w)
    "state_w": "mymodel.state_proj.weight",                  # [D, state]
    "state_b": "mymodel.state_proj.bias",
    "action_in_w": "mymodel.action_in_proj.weight",          # [D, action]
    "action_in_b": "mymodel.action_in_proj.bias",
    "time_in_w": "mymodel.time_mlp_in.weight",               # [D, D]  (sinusoidal time embedding of width D)
    "time_in_b": "mymodel.time_mlp_in.bias",
    "time_out_w": "mymodel.time_mlp_out.weight",             # [D, D]
    "time_out_b": "mymodel.time_mlp_out.bias",
    "action_out_w": "mymodel.action_out_proj.weight",        # [action, D]
    "action_out_b": "mymodel.action_out_proj.bias",
}

# config.json field -> MyModelConfig field, for what the shapes cannot tell (EDIT the left-hand names)
CONFIG_JSON = {"num_attention_heads": "heads", "num_key_value_heads": "kv_heads", "head_dim": "head_dim",
               "image_size": "image_size", "action_horizon": "action_horizon", "max_token_len": "max_token_len",
               "num_inference_steps": "num_steps"}


@dataclass(frozen=True)
class MyModelConfig:
    width: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 1
    head_dim: int = 16
    mlp: int = 128
    vocab: int = 256
    patch_size: int = 8
    image_size: int = 32
    state_dim: int = 8
    action_dim: int = 8
    action_horizon: int = 10
    max_token_len: int = 16
    num_steps: int = 10
    rms_eps: float = 1e-6
    rope_theta: float = 10000.0
    discrete_state_input: bool = False    # the host IO's prompt format: BOS + text + "\n", state not in the text

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def embed_scale(self) -> float:
        return math.sqrt(self.width)


def infer_config(shapes: dict, config_json: dict, **overrides) -> MyModelConfig:
    """Dims from tensor shapes (never guessed), the rest from config.json, then explicit load options."""
    def shape(name, i=None):
        key = KEYS[name].format(i=i)
        if key not in shapes:
            raise CheckpointError(f"checkpoint has no {key!r} ({name}); edit KEYS in the weights spec")
        return tuple(shapes[key])
    layers = 0
    while KEYS["q"].format(i=layers) in shapes:
        layers += 1
    vocab, width = shape("embed")
    f = dict(width=width, vocab=vocab, layers=layers, mlp=shape("gate", 0)[0], patch_size=shape("patch_w")[-1],
             state_dim=shape("state_w")[1], action_dim=shape("action_in_w")[1])
    for src, dst in CONFIG_JSON.items():
        if src in config_json:
            f[dst] = config_json[src]
    f.update({k: v for k, v in overrides.items() if v is not None})
    cfg = MyModelConfig(**f)
    if shape("q", 0)[0] != cfg.heads * cfg.head_dim or shape("k", 0)[0] != cfg.kv_heads * cfg.head_dim:
        raise CheckpointError(f"q/k rows {shape('q', 0)[0]}/{shape('k', 0)[0]} do not match heads={cfg.heads}, "
                              f"kv_heads={cfg.kv_heads}, head_dim={cfg.head_dim} (config.json)")
    if shape("pos_emb")[0] != cfg.num_patches:
        raise CheckpointError(f"pos_emb has {shape('pos_emb')[0]} rows; image_size {cfg.image_size} / patch "
                              f"{cfg.patch_size} gives {cfg.num_patches} patches")
    return cfg


def build_spec(cfg: MyModelConfig) -> ModelWeightSpec:
    """The CPU (exact FP32) storage: GEMM weights fp32 [in, out]; vectors fp32."""
    w = DictSink("w")

    def gemm(name, key):
        return Item(name, key, [ToFp32(), tT()], w)

    def vec(name, key):
        return Item(name, key, [ToFp32()], w)

    k = KEYS
    layers = LayerBlock("layers", cfg.layers, [
        gemm("{i}.qkv_w", FusedQKV(k["q"], k["k"], k["v"], norm_fuse=k["norm1"], head_dim=cfg.head_dim)),
        gemm("{i}.o_w", k["o"]),
        gemm("{i}.gu_w", FusedGateUp(k["gate"], k["up"], norm_fuse=k["norm2"])),
        gemm("{i}.down_w", k["down"]),
    ])
    singletons = [vec("patch_w", k["patch_w"]), vec("patch_b", k["patch_b"]), vec("pos_emb", k["pos_emb"]),
                  vec("embed", k["embed"]), vec("final_norm", k["final_norm"])]
    for name in ("state", "action_in", "time_in", "time_out", "action_out"):
        singletons += [gemm(f"{name}_w", k[f"{name}_w"]), vec(f"{name}_b", k[f"{name}_b"])]
    return ModelWeightSpec(framework="torch", blocks=[layers], singletons=singletons)
