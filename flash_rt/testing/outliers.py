"""Inject activation outlier channels into a test checkpoint, the way real Gemma-family checkpoints carry them.

Why: real checkpoints (PaliGemma's LLM, the action expert) have a few hidden channels, persistent across layers,
10-100x above the median; random-weight checkpoints have none, so the GPU suite never saw what they do to per-tensor
FP8 (issue 16). Each KIND multiplies a handful of fixed channels of ONE place where an FP8 activation is produced by
`scale`, in every layer, by editing the parameters that produce it -- so the injected file is an ordinary
checkpoint whose FP32 semantics are exactly "that activation channel, times scale":

  llm_norm  prefix (PaliGemma LLM) pre-attention and pre-MLP RMSNorm scales: (1 + w_j) -> scale * (1 + w_j)
  ex_ada    expert adaRMS modulation (the time-conditioned scale and shift): the dense rows of scale_j and shift_j,
            so rms(x)_j * (1 + scale_j) + shift_j -> scale * (...) for every t
  v_proj    V projection rows (prefix and expert; the o_proj input channel d of every query head)
  up_proj   up projection rows (prefix and expert; GeGLU is linear in up, so the down_proj input channel)
  vis_ln    SigLIP layer_norm1 / layer_norm2 (every layer) and post_layernorm: weight_j and bias_j

The edited tensors are stored in fp32 (a bf16 value times 10 or 30 is not a bf16 value), so the scaling is exact
in FP32; the rest keep their dtype. The same `channels(width, n)` are used in every layer.

Each kind comes in two variants:
  <kind>          the channel times scale changes the model: its consumers see products `scale` times larger.
                  On the full-size random checkpoint at 30x, `ex_ada` then makes a model that BF16 itself no longer
                  follows (worst 0.991 vs FP32, H200): random weights do not adapt to the outlier, trained ones do.
  <kind>:matched  the same activation outlier with the consumer's input columns divided by `scale` (q/k/v and
                  gate/up of a norm, o_proj of V, down_proj of up, fc1 / the projector of a SigLIP norm): the FP32
                  function is unchanged and only the FP8 activation sees the outlier -- what a trained model with
                  outlier channels looks like to per-tensor activation scales. (`llm_norm:matched` is invisible on
                  the GPU: the prefix norm scales are folded into those very columns.)

Writing: `inject_checkpoint(src, out, kind, scale)` writes a full copy (small checkpoints). For the 7 GB full-size
one, `injection_base(src, base)` re-shards the checkpoint once so that every kind's tensors live in a shard of their
own; `inject_checkpoint(base, out, ...)` then links the untouched shards and writes only that kind's shard.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from flash_rt.executors.safetensors_io import open_checkpoint, write_safetensors_streaming
from flash_rt.models.pi05.config import EXP, LLM, PROJ, VIS, Pi05Config

KINDS = ("llm_norm", "ex_ada", "v_proj", "up_proj", "vis_ln")
MATCHED = ":matched"
VARIANTS = KINDS + tuple(k + MATCHED for k in KINDS)
N_CHANNELS = 6
BASE_MARKER = "injection_base.json"
_COPY = ("config.json", "assets", "tokenizer.model")


def channels(width: int, n: int = N_CHANNELS) -> list[int]:
    """n distinct fixed channels spread over [0, width) (the same in every layer)."""
    n = min(n, width)
    return sorted({(37 + i * (width // n)) % width for i in range(n)})


def parse_variant(variant: str) -> tuple[str, bool]:
    """'<kind>' | '<kind>:matched' -> (kind, matched); ValueError naming the variants otherwise."""
    kind, matched = (variant[:-len(MATCHED)], True) if variant.endswith(MATCHED) else (variant, False)
    if kind not in KINDS:
        raise ValueError(f"unknown outlier kind {variant!r}; expected one of {VARIANTS}")
    return kind, matched


def consumer_columns(kind: str, cfg: Pi05Config, n: int = N_CHANNELS) -> dict[str, list[int]]:
    """{consumer weight key: its input columns that read the injected channels} (what ':matched' divides)."""
    L, V, hd = cfg.layers, cfg.vis_layers, cfg.head_dim
    out: dict[str, list[int]] = {}
    if kind in ("llm_norm", "ex_ada"):
        b, width = (LLM, cfg.width) if kind == "llm_norm" else (EXP, cfg.ex_width)
        ch = channels(width, n)
        for i in range(L):
            for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"):
                out[b + f"layers.{i}.{m}.weight"] = ch
    elif kind == "v_proj":   # every query head reads its KV head's dims ch
        cols = [h * hd + c for h in range(cfg.heads) for c in channels(hd, n)]
        for b in (LLM, EXP):
            for i in range(L):
                out[b + f"layers.{i}.self_attn.o_proj.weight"] = cols
    elif kind == "up_proj":
        for b, mlp in ((LLM, cfg.mlp), (EXP, cfg.ex_mlp)):
            for i in range(L):
                out[b + f"layers.{i}.mlp.down_proj.weight"] = channels(mlp, n)
    elif kind == "vis_ln":
        ch = channels(cfg.vis_width, n)
        for i in range(V):
            for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.fc1"):
                out[VIS + f"encoder.layers.{i}.{m}.weight"] = ch
        out[PROJ + "weight"] = ch
    return out


def injected_keys(variant: str, cfg: Pi05Config) -> list[str]:
    """The checkpoint tensors `variant` edits (canonical openpi keys): the producers, plus the consumers when matched."""
    kind, matched = parse_variant(variant)
    keys = _producer_keys(kind, cfg)
    return keys + list(consumer_columns(kind, cfg)) if matched else keys


def _producer_keys(kind: str, cfg: Pi05Config) -> list[str]:
    L, V = cfg.layers, cfg.vis_layers
    if kind == "llm_norm":
        return [LLM + f"layers.{i}.{n}.weight" for i in range(L) for n in ("input_layernorm", "post_attention_layernorm")]
    if kind == "ex_ada":
        return [EXP + f"layers.{i}.{n}.dense.{p}" for i in range(L) for n in ("input_layernorm",
                                                                               "post_attention_layernorm")
                for p in ("weight", "bias")]
    if kind == "v_proj":
        return [b + f"layers.{i}.self_attn.v_proj.weight" for b in (LLM, EXP) for i in range(L)]
    if kind == "up_proj":
        return [b + f"layers.{i}.mlp.up_proj.weight" for b in (LLM, EXP) for i in range(L)]
    if kind == "vis_ln":
        return [VIS + f"encoder.layers.{i}.{n}.{p}" for i in range(V) for n in ("layer_norm1", "layer_norm2")
                for p in ("weight", "bias")] + [VIS + f"post_layernorm.{p}" for p in ("weight", "bias")]
    raise ValueError(f"unknown outlier kind {kind!r}; expected one of {KINDS}")


def inject_tensor(key: str, t: torch.Tensor, variant: str, scale: float, cfg: Pi05Config,
                  n: int = N_CHANNELS) -> torch.Tensor:
    """The fp32 tensor `variant` stores under `key` (which must be one of injected_keys)."""
    kind, matched = parse_variant(variant)
    x = t.detach().to(torch.float64).clone()   # float64 math, one rounding to fp32 at the end
    cols = consumer_columns(kind, cfg, n).get(key) if matched else None
    if cols is not None:
        x[:, cols] /= scale
    elif kind == "llm_norm":
        ch = channels(cfg.width, n)
        x[ch] = scale * (1.0 + x[ch]) - 1.0
    elif kind == "ex_ada":
        E = cfg.ex_width
        ch = torch.tensor(channels(E, n))
        rows = torch.cat([ch, ch + E])            # scale rows [0, E) and shift rows [E, 2E); gate rows untouched
        if key.endswith(".weight"):
            x[rows] *= scale
        else:
            x[ch] = scale * (1.0 + x[ch]) - 1.0
            x[ch + E] *= scale
    elif kind == "v_proj":
        hd = cfg.head_dim
        ch = channels(hd, n)
        rows = [g * hd + c for g in range(x.shape[0] // hd) for c in ch]   # every KV head, the same dims
        x[rows] *= scale
    elif kind == "up_proj":
        ch = channels(x.shape[0], n)
        x[ch] *= scale
    elif kind == "vis_ln":
        ch = channels(cfg.vis_width, n)
        x[ch] *= scale
    else:
        raise ValueError(f"unknown outlier kind {kind!r}; expected one of {KINDS}")
    return x.to(torch.float32)


def _copy_side_files(src_dir: Path, out: Path) -> None:
    for name in _COPY:
        p = src_dir / name
        if p.is_dir():
            shutil.copytree(p, out / name, dirs_exist_ok=True)
        elif p.is_file():
            shutil.copy2(p, out / name)


def _src_dir(src) -> Path:
    p = Path(src)
    return p if p.is_dir() else p.parent


def injection_base(src, out, cfg: Pi05Config) -> Path:
    """Re-shard `src` into out/ by which variants edit a tensor: one shard of the tensors no variant edits, then one
    per distinct set of editing variants (index json + marker), so that inject_checkpoint(out, variant, ...)
    rewrites only the shards holding that variant's tensors and links the rest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = open_checkpoint(src)
    shapes, dtypes = s.key_shapes(), s.key_dtypes()
    shapes = {k: v for k, v in shapes.items() if k not in s.aliased}   # stored keys only
    editors: dict[str, tuple] = {}
    for v in VARIANTS:
        for k in injected_keys(v, cfg):
            if k in shapes:
                editors[k] = editors.get(k, ()) + (v,)
    groups: dict[tuple, list[str]] = {(): [k for k in shapes if k not in editors]}
    for k, sig in editors.items():
        groups.setdefault(sig, []).append(k)
    n = len(groups)
    wmap, files = {}, {}
    for i, (sig, keys) in enumerate(groups.items()):
        fname = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        write_safetensors_streaming(out / fname, [(k, shapes[k], dtypes[k], (lambda k=k: s.get(k))) for k in keys],
                                    metadata={"format": "pt"})
        wmap.update({k: fname for k in keys})
        files[fname] = list(sig)
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wmap}))
    (out / BASE_MARKER).write_text(json.dumps(files))
    _copy_side_files(_src_dir(src), out)
    return out


def inject_checkpoint(src, out, variant: str, scale: float, cfg: Pi05Config, n: int = N_CHANNELS) -> Path:
    """Write the `variant` x `scale` injected copy of `src` to out/ (a directory)."""
    parse_variant(variant)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    s = open_checkpoint(src)
    shapes, dtypes = s.key_shapes(), s.key_dtypes()
    shapes = {k: v for k, v in shapes.items() if k not in s.aliased}   # stored keys only
    keys = set(injected_keys(variant, cfg))
    missing = sorted(keys - set(shapes))
    if missing:
        raise KeyError(f"{variant}: the checkpoint lacks {missing[:4]}{'...' if len(missing) > 4 else ''}")

    def item(k):
        if k in keys:
            return (k, shapes[k], torch.float32, lambda k=k: inject_tensor(k, s.get(k), variant, scale, cfg, n))
        return (k, shapes[k], dtypes[k], lambda k=k: s.get(k))

    base = _src_dir(src)
    if (base / BASE_MARKER).is_file():   # an injection base: rewrite the shards holding edited tensors, link the rest
        index = json.loads((base / "model.safetensors.index.json").read_text())
        wmap = index["weight_map"]
        edited = {wmap[k] for k in keys}
        for f in sorted(set(wmap.values())):
            if f in edited:
                write_safetensors_streaming(out / f, [item(k) for k, g in wmap.items() if g == f],
                                            metadata={"format": "pt"})
            else:
                os.symlink((base / f).resolve(), out / f)
        shutil.copy2(base / "model.safetensors.index.json", out / "model.safetensors.index.json")
    else:
        write_safetensors_streaming(out / "model.safetensors", [item(k) for k in shapes], metadata={"format": "pt"})
    _copy_side_files(_src_dir(src), out)
    return out
