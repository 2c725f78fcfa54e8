"""openpi's JAX/Orbax `params/` as a `WeightSource`: the canonical (openpi PyTorch) tensors the torch specs read.

Why a source and not a second spec: openpi's Orbax tree is layer-stacked and einsum-shaped, but every canonical
tensor is a slice of one leaf under a fixed transpose/reshape (the same mapping openpi's own converter applies,
written down in shared/reference/openpi_orbax_layout.md §2-§3). Presenting the canonical keys keeps one spec and
one FP32 oracle for every framework, and a transpose or reshape moves bytes without touching them, so a tensor read
from Orbax is bit-identical to the same tensor converted to safetensors.

Reading: tensorstore alone (zarr v2 arrays in an OCDBT key-value store; no JAX at run time). `_METADATA` lists
the leaves; each leaf is opened lazily (metadata only) when the source is built, so shapes are known without
reading data. A leaf's data is read on the first `get()` of a canonical key that slices it, and kept only until
every canonical key cut from it has been handed out: at full size each stored chunk spans all layers, so reading a
layer slice would decompress the whole leaf again per layer. Host memory therefore peaks at the stacked leaves of
one layer block in flight (the weight loader walks layer by layer), never the whole tree.

Both models load: Pi0.5 and Pi0 share the vision tower, the PaliGemma LLM and the expert's attention/MLP leaves;
they differ in the expert's norms (Pi0.5: adaRMS `*_1/Dense_0`; Pi0: plain `*_1/scale`) and the heads (Pi0.5:
`time_mlp_*`; Pi0: `state_proj`, `action_time_mlp_*`). The tree itself says which model it is; a cell asks for its
model, and a tree of the other one is refused naming the config that loads it.

Both openpi variants load: released checkpoints (a plain dict, float32) and checkpoints written by openpi training
(every key path ends in `value`; leaves the training config froze are bfloat16, kept as torch.bfloat16).
The checkpoint directory may be `<ckpt>` (holding `params/` and `assets/`) or `<ckpt>/params` itself.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from flash_rt.errors import CheckpointError
from flash_rt.models.pi05.config import EMBED_LM_HEAD, EMBED_TOKENS, EXP, LLM, PROJ, VIS

PARAMS_DIR = "params"
METADATA_FILE = "_METADATA"
MANIFEST_FILE = "manifest.ocdbt"
_TMP_MARK = ".orbax-checkpoint-tmp"
_EXPECTED = ("an openpi Orbax checkpoint: a directory holding params/ (with _METADATA, manifest.ocdbt and the "
             "OCDBT data files orbax writes) and usually assets/<asset_id>/norm_stats.json, or that params/ "
             "directory itself")

# Leaves of openpi's Pi0 / Pi0.5 trees (under `params/`, without the leading "params" key or a trailing "value").
IMG = "PaliGemma/img/"
BLK = "PaliGemma/img/Transformer/encoderblock/"
LYR = "PaliGemma/llm/layers/"
MODELS = ("pi05", "pi0")
# leaves only one of the two models has: the tree's fingerprint (openpi_orbax_layout.md, pi05_spec.md 1g)
MODEL_MARKS = {
    "pi05": ("time_mlp_in/kernel", "time_mlp_out/kernel", LYR + "pre_attention_norm_1/Dense_0/kernel",
             LYR + "pre_ffw_norm_1/Dense_0/kernel", "PaliGemma/llm/final_norm_1/Dense_0/kernel"),
    "pi0": ("state_proj/kernel", "action_time_mlp_in/kernel", "action_time_mlp_out/kernel",
            LYR + "pre_attention_norm_1/scale", LYR + "pre_ffw_norm_1/scale", "PaliGemma/llm/final_norm_1/scale"),
}
MODEL_NAMES = {"pi05": "Pi0.5", "pi0": "Pi0"}
PI0_ONLY = MODEL_MARKS["pi0"]


def tree_model(leaves) -> str | None:
    """"pi05" or "pi0": the model whose marks the tree holds more of (None when it holds neither's)."""
    hits = {m: sum(k in leaves for k in marks) for m, marks in MODEL_MARKS.items()}
    best = max(hits, key=hits.get)
    return best if hits[best] and list(hits.values()).count(hits[best]) == 1 else None


# --------------------------------------------------------------------------------------------------------------
# locating and fingerprinting
# --------------------------------------------------------------------------------------------------------------
def params_dir(path: str | os.PathLike) -> Path:
    """The Orbax `params/` directory of a checkpoint given as `<ckpt>` or `<ckpt>/params`. Raises CheckpointError
    naming what is missing when the directory is not a complete Orbax checkpoint (a half-written one included)."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint path '{p}' does not exist; expected {_EXPECTED}")
    if p.is_dir() and (p / PARAMS_DIR).is_dir():
        p = p / PARAMS_DIR
    if not p.is_dir():
        raise CheckpointError(f"'{p}' is not a directory; expected {_EXPECTED}")
    tmp = sorted(q.name for q in p.parent.iterdir() if _TMP_MARK in q.name)
    if tmp:
        raise CheckpointError(f"'{p.parent}' holds an unfinished Orbax write ({tmp}): the checkpoint is still being "
                              "written or its writer died; wait for it to finish or write it again")
    missing = [n for n in (METADATA_FILE, MANIFEST_FILE) if not (p / n).is_file()]
    if missing:
        present = sorted(q.name for q in p.iterdir())[:12]
        raise CheckpointError(f"Orbax params directory '{p}' lacks {missing} (it holds {present}): a partly written "
                              f"or truncated checkpoint; expected {_EXPECTED}")
    return p


def orbax_checkpoint_hash(path: str | os.PathLike, index_root: str | os.PathLike | None = None) -> str:
    """The weight and calibration caches' key of an Orbax `params/`: every byte of every file under it (`_METADATA`,
    the OCDBT manifests, every data file), named by its path relative to params/, hashed once per file identity and
    remembered in the index next to the weight cache (executors/checkpoint_hash.py; the same full-content key as the
    safetensors checkpoints: two fine-tunes that differ in one tensor never share a cache entry)."""
    from flash_rt.executors.checkpoint_hash import files_hash
    p = params_dir(path)
    files = sorted(f for f in p.rglob("*") if f.is_file())
    return files_hash(files, [f.relative_to(p).as_posix() for f in files], index_root, tag=b"flash_rt-orbax-v2")


# --------------------------------------------------------------------------------------------------------------
# the canonical view
# --------------------------------------------------------------------------------------------------------------
def _t(x):          # Dense / Linear kernel [in, out] -> [out, in]
    return x.T


def _ident(x):
    return x


class _Slot:
    """One canonical tensor: leaf path, the layer (None = unstacked), the part (index of axis 1 after the layer
    axis, e.g. k/v of kv_einsum, gate/up of gating_einsum) and the numpy transform to the canonical layout."""

    __slots__ = ("leaf", "layer", "part", "fn")

    def __init__(self, leaf: str, layer: int | None, fn: Callable, part: int | None = None):
        self.leaf, self.layer, self.fn, self.part = leaf, layer, fn, part


def _heads_to_rows(x):   # SigLIP q/k/v kernel [D, H, hd] -> [H*hd, D]
    return x.reshape(x.shape[0], -1).T


def _heads_to_cols(x):   # SigLIP out kernel / Gemma attn_vec [H, hd, D] -> [D, H*hd]
    return x.reshape(-1, x.shape[-1]).T


def _einsum_rows(x):     # Gemma q (or one of k/v) [H, D, hd] -> [H*hd, D]
    return x.transpose(0, 2, 1).reshape(-1, x.shape[1])


def _flat(x):
    return x.reshape(-1)


def pi05_slots(shapes: dict[str, tuple], model: str = "pi05") -> dict[str, _Slot]:
    """canonical key -> _Slot for a Pi0.5 (or, model="pi0", a Pi0) tree with these leaf shapes (layer counts read
    off the stacked leaves). The canonical keys are those the model's torch specs read (models/<model>/keys.py)."""
    s: dict[str, _Slot] = {}
    s[VIS + "embeddings.patch_embedding.weight"] = _Slot(IMG + "embedding/kernel", None,
                                                         lambda x: x.transpose(3, 2, 0, 1))
    s[VIS + "embeddings.patch_embedding.bias"] = _Slot(IMG + "embedding/bias", None, _ident)
    s[VIS + "embeddings.position_embedding.weight"] = _Slot(IMG + "pos_embedding", None,
                                                            lambda x: x.reshape(x.shape[-2], x.shape[-1]))
    vl = shapes[BLK + "LayerNorm_0/scale"][0]
    att = BLK + "MultiHeadDotProductAttention_0/"
    for i in range(vl):
        p = f"{VIS}encoder.layers.{i}."
        for n, leaf in (("layer_norm1", "LayerNorm_0"), ("layer_norm2", "LayerNorm_1")):
            s[p + n + ".weight"] = _Slot(BLK + leaf + "/scale", i, _ident)
            s[p + n + ".bias"] = _Slot(BLK + leaf + "/bias", i, _ident)
        for n, leaf in (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value")):
            s[p + f"self_attn.{n}.weight"] = _Slot(att + leaf + "/kernel", i, _heads_to_rows)
            s[p + f"self_attn.{n}.bias"] = _Slot(att + leaf + "/bias", i, _flat)
        s[p + "self_attn.out_proj.weight"] = _Slot(att + "out/kernel", i, _heads_to_cols)
        s[p + "self_attn.out_proj.bias"] = _Slot(att + "out/bias", i, _ident)
        for n, leaf in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
            s[p + f"mlp.{n}.weight"] = _Slot(BLK + f"MlpBlock_0/{leaf}/kernel", i, _t)
            s[p + f"mlp.{n}.bias"] = _Slot(BLK + f"MlpBlock_0/{leaf}/bias", i, _ident)
    s[VIS + "post_layernorm.weight"] = _Slot(IMG + "Transformer/encoder_norm/scale", None, _ident)
    s[VIS + "post_layernorm.bias"] = _Slot(IMG + "Transformer/encoder_norm/bias", None, _ident)
    s[PROJ + "weight"] = _Slot(IMG + "head/kernel", None, _t)
    s[PROJ + "bias"] = _Slot(IMG + "head/bias", None, _ident)
    s[EMBED_LM_HEAD] = _Slot("PaliGemma/llm/embedder/input_embedding", None, _ident)
    ll = shapes[LYR + "attn/q_einsum/w"][0]
    for pre, sfx in ((LLM, ""), (EXP, "_1")):
        for i in range(ll):
            p = f"{pre}layers.{i}."
            s[p + "self_attn.q_proj.weight"] = _Slot(LYR + f"attn/q_einsum{sfx}/w", i, _einsum_rows)
            s[p + "self_attn.k_proj.weight"] = _Slot(LYR + f"attn/kv_einsum{sfx}/w", i, _einsum_rows, part=0)
            s[p + "self_attn.v_proj.weight"] = _Slot(LYR + f"attn/kv_einsum{sfx}/w", i, _einsum_rows, part=1)
            s[p + "self_attn.o_proj.weight"] = _Slot(LYR + f"attn/attn_vec_einsum{sfx}/w", i, _heads_to_cols)
            s[p + "mlp.gate_proj.weight"] = _Slot(LYR + f"mlp{sfx}/gating_einsum", i, _t, part=0)
            s[p + "mlp.up_proj.weight"] = _Slot(LYR + f"mlp{sfx}/gating_einsum", i, _t, part=1)
            s[p + "mlp.down_proj.weight"] = _Slot(LYR + f"mlp{sfx}/linear", i, _t)
            for n, leaf in (("input_layernorm", "pre_attention_norm"), ("post_attention_layernorm", "pre_ffw_norm")):
                if sfx and model == "pi05":   # Pi0.5 expert's adaRMS: a Dense_0 (scale, shift, gate), not a scale
                    s[p + n + ".dense.weight"] = _Slot(LYR + f"{leaf}{sfx}/Dense_0/kernel", i, _t)
                    s[p + n + ".dense.bias"] = _Slot(LYR + f"{leaf}{sfx}/Dense_0/bias", i, _ident)
                else:         # the LLM's (and Pi0 expert's) Gemma RMSNorm scale
                    s[p + n + ".weight"] = _Slot(LYR + f"{leaf}{sfx}/scale", i, _ident)
    s[LLM + "norm.weight"] = _Slot("PaliGemma/llm/final_norm/scale", None, _ident)
    if model == "pi05":
        s[EXP + "norm.dense.weight"] = _Slot("PaliGemma/llm/final_norm_1/Dense_0/kernel", None, _t)
        s[EXP + "norm.dense.bias"] = _Slot("PaliGemma/llm/final_norm_1/Dense_0/bias", None, _ident)
        heads = ("action_in_proj", "action_out_proj", "time_mlp_in", "time_mlp_out")
    else:        # Pi0: plain Gemma RMSNorm; the state enters through state_proj, time through action_time_mlp_*
        s[EXP + "norm.weight"] = _Slot("PaliGemma/llm/final_norm_1/scale", None, _ident)
        heads = ("action_in_proj", "action_out_proj", "state_proj", "action_time_mlp_in", "action_time_mlp_out")
    for n in heads:
        s[n + ".weight"] = _Slot(n + "/kernel", None, _t)
        s[n + ".bias"] = _Slot(n + "/bias", None, _ident)
    return s


class _AnchorError(Exception):
    """A leaf the expected shapes are derived from is missing or of the wrong rank."""


def pi05_leaf_shapes(shapes: dict[str, tuple], model: str = "pi05") -> dict[str, tuple]:
    """The leaf shapes a Pi0.5 (model="pi0": Pi0) tree must have, derived from its own q_einsum, kv_einsum, query
    kernel, embedder, action_in_proj (and Pi0's state_proj) -- the tree describes itself; used to name every
    mis-shaped leaf at once."""
    def dims(leaf: str, rank: int) -> tuple:
        if leaf not in shapes:
            raise _AnchorError(f"missing    {leaf}  (needed to read the model's dimensions)")
        if len(shapes[leaf]) != rank:
            raise _AnchorError(f"mis-shaped {leaf}  has {list(shapes[leaf])}, expected {rank} dimensions")
        return shapes[leaf]

    vl, vd, vh, vhd = dims(BLK + "MultiHeadDotProductAttention_0/query/kernel", 4)
    vf = dims(BLK + "MlpBlock_0/Dense_0/kernel", 3)[2]
    ps = dims(IMG + "embedding/kernel", 4)[0]
    npatch = dims(IMG + "pos_embedding", 3)[1]
    ll, h, d, hd = dims(LYR + "attn/q_einsum/w", 4)
    k = dims(LYR + "attn/kv_einsum/w", 5)[2]
    f = dims(LYR + "mlp/gating_einsum", 4)[3]
    v = dims("PaliGemma/llm/embedder/input_embedding", 2)[0]
    ed = dims(LYR + "attn/q_einsum_1/w", 4)[2]
    ef = dims(LYR + "mlp_1/gating_einsum", 4)[3]
    a = dims("action_in_proj/kernel", 2)[0]
    att = BLK + "MultiHeadDotProductAttention_0/"
    e = {IMG + "embedding/kernel": (ps, ps, 3, vd), IMG + "embedding/bias": (vd,),
         IMG + "pos_embedding": (1, npatch, vd),
         IMG + "Transformer/encoder_norm/scale": (vd,), IMG + "Transformer/encoder_norm/bias": (vd,),
         IMG + "head/kernel": (vd, d), IMG + "head/bias": (d,),
         BLK + "MlpBlock_0/Dense_0/kernel": (vl, vd, vf), BLK + "MlpBlock_0/Dense_0/bias": (vl, vf),
         BLK + "MlpBlock_0/Dense_1/kernel": (vl, vf, vd), BLK + "MlpBlock_0/Dense_1/bias": (vl, vd),
         att + "out/kernel": (vl, vh, vhd, vd), att + "out/bias": (vl, vd),
         "PaliGemma/llm/embedder/input_embedding": (v, d), "PaliGemma/llm/final_norm/scale": (d,),
         "action_in_proj/kernel": (a, ed), "action_in_proj/bias": (ed,),
         "action_out_proj/kernel": (ed, a), "action_out_proj/bias": (a,)}
    if model == "pi05":
        e.update({"PaliGemma/llm/final_norm_1/Dense_0/kernel": (ed, 3 * ed),
                  "PaliGemma/llm/final_norm_1/Dense_0/bias": (3 * ed,),
                  "time_mlp_in/kernel": (ed, ed), "time_mlp_in/bias": (ed,),
                  "time_mlp_out/kernel": (ed, ed), "time_mlp_out/bias": (ed,)})
    else:
        sd = dims("state_proj/kernel", 2)[0]
        e.update({"PaliGemma/llm/final_norm_1/scale": (ed,),
                  "state_proj/kernel": (sd, ed), "state_proj/bias": (ed,),
                  "action_time_mlp_in/kernel": (2 * ed, ed), "action_time_mlp_in/bias": (ed,),
                  "action_time_mlp_out/kernel": (ed, ed), "action_time_mlp_out/bias": (ed,)})
    for n in ("LayerNorm_0", "LayerNorm_1"):
        e[BLK + n + "/scale"] = e[BLK + n + "/bias"] = (vl, vd)
    for n in ("query", "key", "value"):
        e[att + n + "/kernel"], e[att + n + "/bias"] = (vl, vd, vh, vhd), (vl, vh, vhd)
    for sfx, dd, ff in (("", d, f), ("_1", ed, ef)):
        e[LYR + f"attn/q_einsum{sfx}/w"] = (ll, h, dd, hd)
        e[LYR + f"attn/kv_einsum{sfx}/w"] = (ll, 2, k, dd, hd)
        e[LYR + f"attn/attn_vec_einsum{sfx}/w"] = (ll, h, hd, dd)
        e[LYR + f"mlp{sfx}/gating_einsum"] = (ll, 2, dd, ff)
        e[LYR + f"mlp{sfx}/linear"] = (ll, ff, dd)
    for n in ("pre_attention_norm", "pre_ffw_norm"):
        e[LYR + n + "/scale"] = (ll, d)
        if model == "pi05":
            e[LYR + n + "_1/Dense_0/kernel"] = (ll, ed, 3 * ed)
            e[LYR + n + "_1/Dense_0/bias"] = (ll, 3 * ed)
        else:
            e[LYR + n + "_1/scale"] = (ll, ed)
    return e


class OrbaxSource:
    """Lazy canonical-key view over openpi's Orbax `params/` (see the module docstring).

    `path`: `<ckpt>` or `<ckpt>/params`. `device`: where `get()` puts tensors. `model`: "pi05" or "pi0", the model
    the caller loads (a tree of the other one is refused naming the config that loads it); None takes the model the
    tree is (`self.model`). Raises CheckpointError naming the path and what was found vs expected for a
    half-written directory, a tree of another model, a missing or mis-shaped leaf, or a data file that cannot be read.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu", model: str | None = "pi05"):
        if model is not None and model not in MODELS:
            raise ValueError(f"model must be one of {MODELS} or None, got {model!r}")
        try:
            import tensorstore as ts
        except ImportError as e:
            raise CheckpointError(f"reading the Orbax checkpoint '{path}' needs tensorstore, which is not installed: "
                                  "pip install -r requirements-orbax.txt (or pip install 'flash_rt[orbax]')") from e
        self._ts = ts
        self.params = params_dir(path)
        self.device = device
        meta_f = self.params / METADATA_FILE
        try:
            meta = json.loads(meta_f.read_text())
            tree = meta["tree_metadata"]
            paths = [tuple(k["key"] for k in v["key_metadata"]) for v in tree.values()]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"'{meta_f}' is not Orbax tree metadata ({type(e).__name__}: {e}); the file is "
                                  "truncated or this is not an Orbax PyTree checkpoint. "
                                  f"Expected {_EXPECTED}") from None
        if not paths or any(not kp or kp[0] != "params" for kp in paths):
            raise CheckpointError(f"'{meta_f}': openpi saves its weights as {{'params': <tree>}}, but the top-level "
                                  f"keys here are {sorted({kp[0] if kp else '' for kp in paths})}")
        # openpi training checkpoints (nnx.State) end every key path in "value"; openpi's reader drops it
        self.training_layout = all(kp[-1] == "value" for kp in paths)
        self._zarr = "zarr3" if meta.get("use_zarr3") else "zarr"
        self._base = {"driver": "ocdbt", "base": self.params.resolve().as_uri() + "/"}
        self._ctx = ts.Context()   # one context: the leaves share the OCDBT database's manifest and b-tree reads
        self._leaf_key: dict[str, str] = {}
        for kp in paths:
            name = "/".join(kp[1:-1] if self.training_layout else kp[1:])
            self._leaf_key[name] = ".".join(str(k) for k in kp)
        self._arrays = {name: self._open(name) for name in self._leaf_key}
        self.leaf_shapes = {n: tuple(int(d) for d in a.shape) for n, a in self._arrays.items()}
        self.leaf_dtypes = {n: str(a.dtype.numpy_dtype) for n, a in self._arrays.items()}
        self.model = self._check_tree(model)
        self._slots = pi05_slots(self.leaf_shapes, self.model)
        self.aliased = {EMBED_TOKENS: EMBED_LM_HEAD}
        self._cached: dict[str, np.ndarray] = {}
        self._reset_refcounts()
        self._shapes = {k: tuple(self._slot_array(k, meta_only=True)) for k in self._slots}

    # -- reading ---------------------------------------------------------------------------------------------
    def _open(self, name: str):
        key = self._leaf_key[name]
        try:
            return self._ts.open({"driver": self._zarr, "kvstore": {**self._base, "path": key}}, open=True,
                                 context=self._ctx).result()
        except Exception as e:   # tensorstore raises ValueError / its own status errors
            raise CheckpointError(f"cannot open leaf '{name}' (stored as '{key}') in '{self.params}': {e}. The OCDBT "
                                  "store is truncated or partly written; write the checkpoint again") from None

    def _read_leaf(self, name: str) -> np.ndarray:
        try:
            x = self._arrays[name].read().result()
        except Exception as e:
            raise CheckpointError(f"cannot read leaf '{name}' from '{self.params}': {e}. A data file of the OCDBT "
                                  "store is truncated or corrupt; write the checkpoint again") from None
        return x.view(np.uint16) if x.dtype.name == "bfloat16" else x   # bf16 travels as its bits

    def _check_tree(self, model: str | None) -> str:
        """Validate the tree against `model` (None: the model the tree is) and return the model it is read as."""
        have = self.leaf_shapes
        marks = ("time_mlp_in/kernel", "state_proj/kernel", LYR + "attn/q_einsum_1/w",
                 "PaliGemma/llm/embedder/input_embedding", BLK + "MultiHeadDotProductAttention_0/query/kernel")
        if not any(k in have for k in marks):
            shown = sorted(have)[:8]
            raise CheckpointError(f"the Orbax tree in '{self.params}' is not an openpi Pi0/Pi0.5 tree: it has none of "
                                  f"{list(marks)}; its leaves start with {shown}")
        found = tree_model(have)
        if model is not None and found is not None and found != model:
            raise CheckpointError(
                f"the Orbax tree in '{self.params}' is a {MODEL_NAMES[found]} tree (it has "
                f"{[k for k in MODEL_MARKS[found] if k in have]}), but {MODEL_NAMES[model]} was asked for "
                f"(config='{model}'): load it with config='{found}'")
        model = model or found or "pi05"
        name = MODEL_NAMES[model]
        lora = sorted(k for k in have if "lora" in k)
        if lora:
            raise CheckpointError(f"the Orbax tree in '{self.params}' holds LoRA leaves ({lora[:4]}...): merge the "
                                  f"LoRA weights into the base before loading; expected a plain {name} tree")
        try:
            exp = pi05_leaf_shapes(have, model)
        except _AnchorError as e:
            exp = None
            anchor = str(e)
        problems = []
        if exp is None:
            problems.append(f"  {anchor}")
        else:
            for k, shp in exp.items():
                if k not in have:
                    problems.append(f"  missing    {k}  expected {list(shp)}")
                elif have[k] != shp:
                    problems.append(f"  mis-shaped {k}  has {list(have[k])}, expected {list(shp)}")
            for k in sorted(set(have) - set(exp)):
                problems.append(f"  unexpected {k}  {list(have[k])}")
        if problems:
            raise CheckpointError(f"the Orbax tree in '{self.params}' does not match openpi's {name} param tree "
                                  f"({len(problems)} problem(s)):\n" + "\n".join(problems))
        bad = sorted(f"{n}: {d}" for n, d in self.leaf_dtypes.items() if d not in ("float32", "bfloat16", "float16"))
        if bad:
            raise CheckpointError(f"Orbax leaves in '{self.params}' have dtypes flash_rt does not read: {bad}; "
                                  "expected float32, bfloat16 or float16")
        return model

    def _slot_array(self, key: str, meta_only: bool = False):
        sl = self._slots[key]
        if meta_only:
            shape = self.leaf_shapes[sl.leaf]
            dummy = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), shape=shape, strides=(0,) * len(shape))
            x = dummy
        else:
            x = self._cached.get(sl.leaf)
            if x is None:
                x = self._cached[sl.leaf] = self._read_leaf(sl.leaf)
        if sl.layer is not None:
            x = x[sl.layer]
        if sl.part is not None:
            x = x[sl.part]
        x = sl.fn(x)
        return x.shape if meta_only else x

    def _reset_refcounts(self) -> None:
        """Every leaf's canonical keys are pending again and nothing is decoded (a key read twice counts once)."""
        self._leaf_keys: dict[str, frozenset] = {}
        for k, sl in self._slots.items():
            self._leaf_keys[sl.leaf] = self._leaf_keys.get(sl.leaf, frozenset()) | {k}
        self._pending = {leaf: set(ks) for leaf, ks in self._leaf_keys.items()}
        self._cached.clear()

    # -- WeightSource ----------------------------------------------------------------------------------------------
    def has(self, key: str) -> bool:
        return key in self._slots or key in self.aliased

    def keys(self) -> list[str]:
        return list(self._slots) + list(self.aliased)

    def get(self, key: str) -> torch.Tensor:
        key = self.aliased.get(key, key)
        if key not in self._slots:
            raise KeyError(key)
        sl = self._slots[key]
        leaf = sl.leaf
        x = self._slot_array(key)
        # a slice of a stacked leaf must not alias the cached leaf (a consumer may write into what it gets, and a
        # view would keep the whole stack alive); an unstacked leaf has one key and is dropped right below
        x = np.array(x, order="C", copy=True) if sl.layer is not None or sl.part is not None else \
            np.ascontiguousarray(x)
        pending = self._pending[leaf]
        pending.discard(key)
        if not pending:   # every canonical key of this leaf handed out: free it (a later pass decodes it again)
            self._cached.pop(leaf, None)
            self._pending[leaf] = set(self._leaf_keys[leaf])
        bf16 = self.leaf_dtypes[leaf] == "bfloat16"
        t = torch.from_numpy(x if x.flags.writeable else x.copy())
        if bf16:
            t = t.view(torch.bfloat16)
        return t.to(self.device) if self.device != "cpu" else t

    def release(self) -> None:
        """Drop any decoded leaf still held (a spec that read only part of a leaf leaves it cached)."""
        self._reset_refcounts()

    # -- metadata without tensor reads -----------------------------------------------------------------------------
    def key_shapes(self) -> dict[str, tuple]:
        out = dict(self._shapes)
        for a, c in self.aliased.items():
            out[a] = out[c]
        return out

    def config_hints(self) -> dict:
        """Head geometry, read off the tree (a safetensors checkpoint needs config.json for the SigLIP head count)."""
        vh, vhd = self.leaf_shapes[BLK + "MultiHeadDotProductAttention_0/query/kernel"][2:]
        _, _, k, _, hd = self.leaf_shapes[LYR + "attn/kv_einsum/w"]
        return {"vision_num_heads": int(vh), "head_dim": int(hd), "num_key_value_heads": int(k)}

    def fingerprint(self) -> str:
        return orbax_checkpoint_hash(self.params)

    def __contains__(self, key: str) -> bool:
        return self.has(key)

    def __len__(self) -> int:
        return len(self._slots) + len(self.aliased)

    def close(self) -> None:
        self._cached.clear()

    def __repr__(self) -> str:
        return (f"OrbaxSource('{self.params}', model={self.model}, leaves={len(self.leaf_shapes)}, keys={len(self)}, "
                f"training_layout={self.training_layout})")


def open_orbax_checkpoint(path: str | os.PathLike, device: str = "cpu") -> OrbaxSource:
    """An `OrbaxSource` over a Pi0.5 `<ckpt>` or `<ckpt>/params` (the pi05 jax cells' `open_checkpoint`)."""
    return OrbaxSource(path, device=device, model="pi05")


def open_pi0_orbax_checkpoint(path: str | os.PathLike, device: str = "cpu") -> OrbaxSource:
    """An `OrbaxSource` over a Pi0 `<ckpt>` or `<ckpt>/params` (the pi0 jax cells' `open_checkpoint`)."""
    return OrbaxSource(path, device=device, model="pi0")

