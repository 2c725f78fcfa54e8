"""SmoothQuant-style per-channel smoothing of the FP8 GEMM inputs, folded offline into the GPU weights.

Why: per-tensor FP8 activation scales are set by the largest channel. Real Gemma-family checkpoints carry a few
hidden channels 10-100x above the median (persistent across layers); the other channels then use a small part of
e4m3's range, and the GEMM is dominated by the rounding of a handful of large terms (issue 16: FP8 worst cosine 0.993
at 10x, 0.988 at 30x on an H200). Smoothing divides activation channel j by s_j where it is produced and multiplies
the consuming GEMM's weight column j by s_j: exact in real arithmetic, so no run-time cost (nothing changes in the
captured graph but the bytes of its weights). With

    s_j = max|X_j|^alpha / max|W_j|^(1 - alpha)

(max over the calibration observations / over the weight column) the outlier moves half-way (alpha = 0.5) into the
weights. s_j is rounded to a power of two, so the fold itself adds no rounding in any float format (the smoothed
bf16 / fp32 weights are the unsmoothed ones times 2^e, column by column).

Where each FP8 site's activation is produced, and what the fold divides (the "groups", one factor vector each):

  vis.{i}.ln1 / vis.{i}.ln2 / vis.post_ln   the LayerNorm's weight and bias    -> qkv / fc1 / proj columns
  vis.{i}.attn                              V rows (+ V bias) of the fused qkv  -> o_w columns
  llm.{i}.norm1 / llm.{i}.norm2             a norm weight (the Gemma norms are folded into the next projection on
                                            the GPU, so the kernel gets llm.{i}.norm{1,2}_w = 1/s - 1)
                                                                                -> qkv / gate-up columns
  llm.{i}.geglu / ex.{i}.geglu              up rows of the fused gate-up (GeGLU is linear in up) -> down columns
  ex.{i}.norm1 / ex.{i}.norm2               the adaRMS dense rows of scale and shift (every flow step: one factor
                                            per layer, since the weights are shared by the steps) -> qkv / gate-up
  attn.{i}                                  V rows of prefix layer i AND expert layer i: the expert attends over
                                            both KV caches, so they share s; with GQA the query heads of one KV head
                                            share it too -> llm.{i}.o_w and ex.{i}.o_w columns

SigLIP's gelu site (fc1 then tanh-GELU: not linear) has no producer to fold into, and is left alone.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from flash_rt.errors import CacheError
from flash_rt.executors.signed_json import read_signed_json, write_signed_json

ALPHA_DEFAULT = 0.5
MIN_RATIO = 6.0      # smooth a site only when max / median of its channel maxima reaches this
S_MIN, S_MAX = 2.0 ** -24, 2.0 ** 24
VERSION = 1


@dataclass(frozen=True)
class Group:
    """One factor vector: `width` channels of the producer; consumer columns repeat it `repeat` times (GQA)."""
    name: str
    width: int
    consumers: tuple[str, ...]
    repeat: int = 1


def groups(cfg) -> list[Group]:
    c = cfg
    kvn, rep = c.kv_heads * c.head_dim, c.heads // c.kv_heads
    g = []
    for i in range(c.vis_layers):
        g += [Group(f"vis.{i}.ln1", c.vis_width, (f"vis.{i}.qkv_w",)),
              Group(f"vis.{i}.attn", c.vis_width, (f"vis.{i}.o_w",)),
              Group(f"vis.{i}.ln2", c.vis_width, (f"vis.{i}.fc1_w",))]
    g.append(Group("vis.post_ln", c.vis_width, ("proj_w",)))
    for i in range(c.layers):
        g += [Group(f"llm.{i}.norm1", c.width, (f"llm.{i}.qkv_w",))]
        if i < c.layers - 1:
            g += [Group(f"llm.{i}.norm2", c.width, (f"llm.{i}.gu_w",)),
                  Group(f"llm.{i}.geglu", c.mlp, (f"llm.{i}.down_w",))]
        g += [Group(f"attn.{i}", kvn, ((f"llm.{i}.o_w",) if i < c.layers - 1 else ()) + (f"ex.{i}.o_w",), rep),
              Group(f"ex.{i}.norm1", c.ex_width, (f"ex.{i}.qkv_w",)),
              Group(f"ex.{i}.norm2", c.ex_width, (f"ex.{i}.gu_w",)),
              Group(f"ex.{i}.geglu", c.ex_mlp, (f"ex.{i}.down_w",))]
    return g


def group_of_site(site: str) -> str | None:
    """The factor group an FP8 site's activation belongs to (cuda_forward.quant_sites names), or None."""
    p = site.split(".")
    if p[0] == "vis":
        return None if p[-1] == "gelu" else site
    if p[0] == "llm":
        return f"attn.{p[1]}" if p[2] == "attn" else site
    if p[0] == "ex":                       # ex.<step>.<layer>.<what>: one factor per layer over the steps
        return f"attn.{p[2]}" if p[3] == "attn" else f"ex.{p[2]}.{p[3]}"
    return None


class ChannelRecorder:
    """Per-channel max|x| per group, filled by the calibration twin (CalibContext.post). Eager torch ops: the twin
    never runs in the captured graph."""

    def __init__(self):
        self.max: dict[str, torch.Tensor] = {}

    def __call__(self, site: str, t: torch.Tensor) -> None:
        g = group_of_site(site)
        if g is None:
            return
        m = t.detach().reshape(-1, t.shape[-1]).abs().amax(0).float()
        if g in self.max:
            torch.maximum(self.max[g], m, out=self.max[g])
        else:
            self.max[g] = m.clone()


def expand(s: torch.Tensor, grp: Group, kv_heads: int) -> torch.Tensor:
    """[width] factors -> the consumer's [repeat * width] columns (query head h uses KV head h // repeat)."""
    if grp.repeat == 1:
        return s
    return s.view(kv_heads, 1, -1).expand(kv_heads, grp.repeat, -1).reshape(-1)


def reduce_heads(v: torch.Tensor, grp: Group, kv_heads: int) -> torch.Tensor:
    """[repeat * width] consumer-side values -> [width], the max over the query heads of each KV head."""
    if grp.repeat == 1:
        return v
    return v.view(kv_heads, grp.repeat, -1).amax(1).reshape(-1)


def pow2(s: torch.Tensor) -> torch.Tensor:
    return torch.exp2(torch.round(torch.log2(s)))


def outlier_ratio(x: torch.Tensor) -> float:
    """max / median of the per-channel maxima: ~1.5-3 for a site without outlier channels."""
    x = x.float()
    med = float(x.median())
    return float(x.max()) / med if med > 0 else float("inf")


def compute_factors(cfg, chan_max: dict[str, torch.Tensor], col_max: dict[str, torch.Tensor],
                    alpha: float = ALPHA_DEFAULT, previous: dict[str, torch.Tensor] | None = None,
                    min_ratio: float = MIN_RATIO) -> dict[str, torch.Tensor]:
    """{group: s [width] fp32, powers of two}. chan_max: per-channel activation max per group ([repeat * width]
    for attention groups, as the twin records the o-proj input); col_max: per consumer-weight column max (same
    layout). Both measured on the model as it runs now; `previous` are the factors already folded into it, and the
    result is relative to the checkpoint (s_new = s_old * s_rel, which equals the factors measured on the unsmoothed
    model). A channel that never fired, or whose weights are zero, keeps s = 1. A group whose activation has no
    outlier channels (outlier_ratio < min_ratio) is left as it is: with FP8's floating-point grid, moving range
    into the weights where nothing is out of line only adds their rounding (measured: docs/calibration.md)."""
    out = {}
    for grp in groups(cfg):
        x, w = chan_max.get(grp.name), col_max.get(grp.name)
        old = None if previous is None else previous.get(grp.name)
        if x is None or w is None:
            if old is not None:
                out[grp.name] = old.detach().float().cpu()
            continue
        x = reduce_heads(x.float().cpu(), grp, cfg.kv_heads)
        w = reduce_heads(w.float().cpu(), grp, cfg.kv_heads)
        if outlier_ratio(x) < min_ratio:
            if old is not None:
                out[grp.name] = old.detach().float().cpu()
            continue
        ok = (x > 0) & (w > 0) & torch.isfinite(x) & torch.isfinite(w)
        s = torch.ones_like(x)
        s[ok] = x[ok] ** alpha / w[ok] ** (1.0 - alpha)
        if old is not None:
            s = s * old.float().cpu()
        out[grp.name] = pow2(s.clamp(S_MIN, S_MAX))
    return out


def column_max(cfg, w: dict, ws: dict, out_dim: int = 0) -> dict[str, torch.Tensor]:
    """Per group, the max |W| of each consumer input column (dequantized FP8 weights; max over consumers).
    `out_dim`: the weights' output axis, 0 for the GPU cells' [out, in] weights, 1 for the CPU cell's [in, out]."""
    out = {}
    for grp in groups(cfg):
        m = None
        for name in grp.consumers:
            t = w[name]
            cm = t.float().abs().amax(out_dim) * (ws[name].float() if name in ws and t.dtype == torch.float8_e4m3fn
                                                  else 1.0)
            m = cm if m is None else torch.maximum(m, cm)
        if m is not None:
            out[grp.name] = m
    return out


# ---------------------------------------------------------------------------------------------------------------
# folding (GPU weight-spec names)
# ---------------------------------------------------------------------------------------------------------------
class SmoothingPlan:
    """The folds of one factor set, by GPU weight name. `fold_matrix(name, x)` is applied to every GEMM weight and
    bias at build time (fp32, before FP8 quantization); `fold_vectors(w)` to the fp32 vectors (LayerNorm, adaRMS
    dense) and to the prefix norm weights it adds."""

    def __init__(self, cfg, factors: dict[str, torch.Tensor] | None):
        self.cfg = cfg
        self.factors = {k: v.detach().float().cpu() for k, v in (factors or {}).items()}
        self._cols: dict[str, torch.Tensor] = {}    # weight name -> column multipliers
        self._rows: dict[str, tuple[int, int, torch.Tensor]] = {}   # weight/bias name -> (start, end, divisor)
        c = cfg
        qn, kvn = c.heads * c.head_dim, c.kv_heads * c.head_dim
        for grp in groups(cfg):
            s = self.factors.get(grp.name)
            if s is None:
                continue
            if s.numel() != grp.width:
                raise ValueError(f"smoothing factors '{grp.name}': {s.numel()} values, expected {grp.width}")
            for name in grp.consumers:
                self._cols[name] = expand(s, grp, c.kv_heads)
            kind, _, rest = grp.name.partition(".")
            if grp.name.startswith("attn."):
                i = int(rest)
                for blk in ("llm", "ex"):
                    self._rows[f"{blk}.{i}.qkv_w"] = (qn + kvn, qn + 2 * kvn, s)
            elif grp.name.endswith(".attn"):       # vis.{i}.attn: V rows + V bias of the fused qkv
                i = grp.name.split(".")[1]
                W = c.vis_width
                self._rows[f"vis.{i}.qkv_w"] = (2 * W, 3 * W, s)
                self._rows[f"vis.{i}.qkv_b"] = (2 * W, 3 * W, s)
            elif grp.name.endswith(".geglu"):
                blk, i = grp.name.split(".")[:2]
                F = c.mlp if blk == "llm" else c.ex_mlp
                self._rows[f"{blk}.{i}.gu_w"] = (F, 2 * F, s)

    @property
    def active(self) -> bool:
        return bool(self.factors)

    def fold_matrix(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x: a GPU-spec GEMM weight [N, K] or bias [N], fp32."""
        r, cm = self._rows.get(name), self._cols.get(name)
        if r is None and cm is None:
            return x
        x = x.clone()
        if r is not None:
            a, b, s = r
            d = s.to(x.device)
            x[a:b] = x[a:b] / (d[:, None] if x.dim() == 2 else d)
        if cm is not None:
            x = x * cm.to(x.device)[None, :]
        return x

    def fold_vectors(self, w: dict) -> None:
        """In place on the fp32 vectors of the GPU weight dict; adds llm.{i}.norm{1,2}_w = 1/s - 1 (the Gemma norm
        kernels multiply by 1 + w) for the prefix norms that have factors."""
        for name, s in self.factors.items():
            p = name.split(".")
            if p[0] == "llm" and p[2] in ("norm1", "norm2"):
                w[f"{name}_w"] = (1.0 / s - 1.0).to(w[f"llm.{p[1]}.qkv_w"].device)
        c = self.cfg
        for name, s in self.factors.items():
            p = name.split(".")
            if p[0] == "vis" and p[-1] in ("ln1", "ln2", "post_ln"):
                base = "post_ln" if p[-1] == "post_ln" else f"vis.{p[1]}.{p[2]}"
                for suf in ("_w", "_b"):
                    w[base + suf] = w[base + suf] / s.to(w[base + suf].device)
            elif p[0] == "ex" and p[2] in ("norm1", "norm2"):
                k = f"ex.{p[1]}.ada{1 if p[2] == 'norm1' else 2}"
                W, b = w[k + "_w"].clone(), w[k + "_b"].clone()
                d = s.to(W.device)
                E = c.ex_width
                # scale rows: (1 + scale) / s - 1 = scale / s + (1 / s - 1); shift rows: shift / s
                W[:E] /= d[:, None]
                b[:E] = (1.0 + b[:E]) / d - 1.0
                W[E:2 * E] /= d[:, None]
                b[E:2 * E] /= d
                w[k + "_w"], w[k + "_b"] = W, b

    def digest(self) -> str | None:
        """8 hex chars naming the factors (part of the weight cache's spec tag), None when there are none."""
        if not self.factors:
            return None
        h = hashlib.sha256()
        for k in sorted(self.factors):
            h.update(k.encode() + b"\0" + self.factors[k].numpy().astype("<f4").tobytes())
        return h.hexdigest()[:8]


# ---------------------------------------------------------------------------------------------------------------
# the factor file: <calibration root>/<ckpt_hash>_<tag>.smooth.json
# ---------------------------------------------------------------------------------------------------------------
def factors_path(root: Path, ckpt_hash: str, tag: str) -> Path:
    return Path(root) / f"{ckpt_hash}_{tag}.smooth.json"


def save_factors(path: Path, factors: dict[str, torch.Tensor], *, ckpt_hash: str, alpha: float,
                 num_observations: int, min_ratio: float = MIN_RATIO) -> Path:
    """Write the factors (log2, integers); an empty dict records "measured: no site needed smoothing"."""
    doc = {"version": VERSION, "ckpt_hash": ckpt_hash, "alpha": alpha, "min_ratio": min_ratio,
           "num_observations": num_observations,
           "log2_factors": {k: [int(round(math.log2(float(x)))) for x in v.tolist()] for k, v in sorted(factors.items())}}
    return write_signed_json(path, doc)


def load_factors(path: Path, cfg, *, ckpt_hash: str, alpha: float, min_ratio: float = MIN_RATIO
                 ) -> dict[str, torch.Tensor]:
    """The factors of a smoothing file, or CacheError saying why it cannot be used (FileNotFoundError if none)."""
    doc = read_signed_json(path, "smoothing factors", VERSION,
                           {"ckpt_hash": ckpt_hash, "alpha": alpha, "min_ratio": min_ratio})
    want = {g.name: g.width for g in groups(cfg)}
    out = {}
    for k, v in (doc.get("log2_factors") or {}).items():
        if k not in want or not isinstance(v, list) or len(v) != want[k] \
                or not all(isinstance(e, int) and abs(e) <= 24 for e in v):
            raise CacheError(f"smoothing factors {path}: group {k!r} does not fit this model")
        out[k] = torch.exp2(torch.tensor(v, dtype=torch.float32))
    return out

