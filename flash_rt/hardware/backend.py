"""Attention site specs and the backend protocol.

A model declares one SiteSpec per distinct attention pattern (SigLIP full, prefix with key padding,
decoder over cached prefix + own keys); a hardware backend implements `run(site, layer, q, k, v, key_bias,
out)` for those sites. Pipelines never call an attention kernel directly, so swapping the kernel for a
site (FlashAttention, SDPA, Triton) touches one file per hardware.
"""
from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable


@dataclasses.dataclass(frozen=True)
class SiteSpec:
    name: str
    num_layers: int
    num_q_heads: int
    num_kv_heads: int
    head_dim: int
    max_q: int
    max_kv: int
    masked: bool = False  # True: an additive key bias [kv] is applied (padding / masked views)

    def __post_init__(self):
        if self.num_q_heads % self.num_kv_heads:
            raise ValueError(f"site {self.name}: {self.num_q_heads} q heads not divisible by "
                             f"{self.num_kv_heads} kv heads")


@dataclasses.dataclass
class AttentionSpec:
    sites: dict = dataclasses.field(default_factory=dict)

    def add_site(self, spec: SiteSpec) -> "AttentionSpec":
        if spec.name in self.sites:
            raise ValueError(f"duplicate attention site {spec.name!r}")
        self.sites[spec.name] = spec
        return self

    def site(self, name: str) -> SiteSpec:
        if name not in self.sites:
            raise KeyError(f"unknown attention site {name!r}; known: {sorted(self.sites)}")
        return self.sites[name]


@runtime_checkable
class AttentionBackend(Protocol):
    spec: AttentionSpec

    def run(self, site: str, layer: int, q, k, v, key_bias, out, out_scale=None) -> None:
        """q [B, Nq, Tq, H], k/v [B, Nkv, Tk, H], key_bias [Tk] additive or None; out [B, Tq, Nq*H].
        out_scale: a device fp32 scalar when the backend writes `out` in FP8 (where supported)."""
        ...
