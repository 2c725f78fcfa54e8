"""BF16 at outlier sites: which FP8 sites have outlier channels, the GEMM weights that read them, and the small
cache file that remembers the choice (`load_model(..., bf16_outlier_sites=...)`; "blocks" by default).

Why: per-channel smoothing (smoothing.py) cannot rescue E4M3 from outlier channels -- the products x_j * w_j whose
rounding dominates a GEMM's output are the same after the fold -- while running the affected GEMMs in BF16 does
(measured: docs/calibration.md). A site is an outlier site when max / median of its per-channel PRODUCT maxima
max|X_j| * max|W_j| (activation channel times its consumer weights' input column) reaches min_ratio: the dominant
products are what E4M3 cannot round away. An activation outlier whose weights compensate it (a trained model's; the
':matched' injection) has ordinary products and holds in plain FP8 (micro model, 30x: 0.99999), so it is not
flagged; a Gemma norm scale folded into qkv / gate-up shows up as an outlier weight column, which the product sees too.

The bar is BF16_MIN_RATIO (30), not smoothing's 6: at full size an ordinary checkpoint's LLM GeGLU outputs reach
16-19 (of 16,384 channels a few stay large over most tokens) and SigLIP's attention outputs 6.3, and plain FP8 holds
that checkpoint (worst 0.9974-0.9977), while the injections plain FP8 fails reach 49-55 at their sites (the
criterion through the CPU cell, benchmarks/outlier_criterion_cpu.py; docs/calibration.md "The criterion at full
size"). At 6 the default engine ran SigLIP and the LLM in BF16 on every checkpoint.

Two scopes (`bf16_outlier_sites=True` / `"groups"`, or `"blocks"`): the flagged groups alone, or the blocks
(runtime/bf16_blocks.py) from the first one through every block that holds a flagged group (bf16_blocks_for). Why
blocks, and why upstream too: an injected model whose outliers dominate its products is a more sensitive model,
which amplifies every rounding upstream of its sharpened attention, not only the flagged GEMMs' (micro model, plain
`llm_norm` at 30x: flagged groups in BF16 0.99726, every group 0.99889, BF16 0.99987; on an H200, plain `llm_norm`
30x: flagged groups 0.98856, SigLIP and the LLM in BF16 0.99984; docs/calibration.md).
"""
from __future__ import annotations

from pathlib import Path

import torch

from flash_rt.errors import CacheError
from flash_rt.runtime.bf16_blocks import BLOCKS, gemm_block, site_block
from flash_rt.executors.signed_json import read_signed_json, write_signed_json
from flash_rt.runtime.smoothing import (MIN_RATIO, VERSION, group_of_site, groups, outlier_ratio,
                                        reduce_heads)

BF16_MIN_RATIO = 30.0   # bf16_outlier_sites' bar (module docstring: measured at full size)


def product_ratios(cfg, chan_max: dict[str, torch.Tensor],
                   col_max: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
    """{group: outlier_ratio} in groups() order, for the groups measured: of the per-channel products
    max|X_j| * max|W_j| with `col_max` (what the frontend passes), of the activation channels without it. A group
    with only one of the two measured is judged on that one. The margin to min_ratio is what these numbers show."""
    out = {}
    for grp in groups(cfg):
        x, w = chan_max.get(grp.name), (col_max or {}).get(grp.name)
        x, w = (None if v is None else reduce_heads(v.float().cpu(), grp, cfg.kv_heads) for v in (x, w))
        v = x * w if x is not None and w is not None else (x if x is not None else w)
        if v is not None:
            out[grp.name] = outlier_ratio(v)
    return out


def outlier_groups(cfg, chan_max: dict[str, torch.Tensor], min_ratio: float = MIN_RATIO,
                   col_max: dict[str, torch.Tensor] | None = None) -> list[str]:
    """The outlier groups, in groups() order: those whose product_ratios reach min_ratio."""
    return [g for g, r in product_ratios(cfg, chan_max, col_max).items() if r >= min_ratio]


def consumers(cfg, names) -> list[str]:
    """The GEMM weights that read the activations of the groups `names`."""
    by = {g.name: g for g in groups(cfg)}
    return [c for n in names for c in by[n].consumers]


def blocks_of(names) -> tuple[str, ...]:
    """The blocks (runtime/bf16_blocks.py) the outlier groups `names` sit in, in BLOCKS order. `attn.<i>` is both
    prefix and expert: the expert attends over the prefix's KV, so the V rows of both feed the group's consumers."""
    hit = set()
    for n in names:
        hit |= {"prefix", "expert"} if n.startswith("attn.") else {site_block(n)}
    return tuple(b for b in BLOCKS if b in hit)


def bf16_blocks_for(names) -> tuple[str, ...]:
    """The blocks that bf16_outlier_sites="blocks" runs in BF16 for the outlier groups `names`: every block up to the
    last one that holds a group (BLOCKS is the order data flows in), since the sensitive block amplifies what comes
    in (module docstring). A flagged LLM runs SigLIP in BF16 too -- what was measured to hold plain `llm_norm` 30x."""
    hit = blocks_of(names)
    return BLOCKS[:BLOCKS.index(hit[-1]) + 1] if hit else ()


def block_gemms(gemms, blocks) -> list[str]:
    """The GEMM weights among `gemms` (names) that belong to `blocks`."""
    return [g for g in gemms if gemm_block(g) in blocks]


class SiteSet:
    """A predicate on FP8 site names (Fp8Context's bf16_sites): is the site's group one of `names`, or is the site
    in one of `blocks` (every site of a BF16 block, those outside any group included)."""

    def __init__(self, names, blocks=()):
        self.names = frozenset(names)
        self.blocks = tuple(blocks)

    def __call__(self, site: str) -> bool:
        return group_of_site(site) in self.names or (bool(self.blocks) and site_block(site) in self.blocks)


# ---------------------------------------------------------------------------------------------------------------
# the outlier-site file (BF16 at outlier sites): <calibration root>/<ckpt_hash>_<tag>.outliers.json
# ---------------------------------------------------------------------------------------------------------------
def outliers_path(root: Path, ckpt_hash: str, tag: str) -> Path:
    return Path(root) / f"{ckpt_hash}_{tag}.outliers.json"


def save_outlier_groups(path: Path, names, *, ckpt_hash: str, min_ratio: float, num_observations: int) -> Path:
    doc = {"version": VERSION, "ckpt_hash": ckpt_hash, "min_ratio": min_ratio, "num_observations": num_observations,
           "groups": list(names)}
    return write_signed_json(path, doc)


def load_outlier_groups(path: Path, cfg, *, ckpt_hash: str, min_ratio: float) -> list[str]:
    """The groups of an outlier-site file, or CacheError saying why it cannot be used (FileNotFoundError if none)."""
    doc = read_signed_json(path, "outlier sites", VERSION, {"ckpt_hash": ckpt_hash, "min_ratio": min_ratio})
    known = {g.name for g in groups(cfg)}
    names = doc.get("groups")
    if not isinstance(names, list) or not all(isinstance(n, str) and n in known for n in names):
        raise CacheError(f"outlier sites {path}: groups do not fit this model")
    return names
