"""What every GPU target's tuning table holds (`flash_rt/hardware/<hw>/tuning.py` fills one each).

Every number tuned for a chip lives in its table: the fused-GEMM tiles, the expert's split-K, the attention tiles,
the number of programs that fills the GPU (its SM count), the shared memory a block may use, and whether its memory
is shared with the CPU. Kernels and shared code take these as arguments; the frontend of a (model, hardware) cell
names its table. `check()` runs when a frontend is built, so a table (or an A/B override) whose tiles cannot fit
the target is refused with its numbers before anything compiles.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from flash_rt.errors import InputError
from flash_rt.kernels.tiles import FlowTiles, FusedGemmConfig, MhaTiles, MqaTiles

# the fused GEMMs of the catalogue, and whether each streams two weight tiles per program (gate and up; the
# rotate_half halves of a head) or one (split-K)
FUSED_GEMMS = {"rope_qkv": True, "geglu": True, "splitk": False}
ATTENTION_KINDS = ("decode", "prefill")


@dataclass(frozen=True)
class GpuTuning:
    """hardware: the `_PIPELINE_MAP` hardware key; arch: the Triton/PTX target (90, 110, 120); mma: the FP8 MMA
    instruction the target's dots lower to (the CI compile check looks for it in the PTX); min_triton: the oldest
    Triton that can build for the target; pdl: whether the chip has programmatic dependent launch (sm90+).
    gemm: FusedGemmConfig per fused GEMM ("rope_qkv", "geglu", "splitk"); split_k: K ranges of the split-K GEMMs;
    fused_max_m: rows up to which the fused GEMMs run (larger M goes to cuBLASLt).
    attention: MqaTiles for "decode" sites (at most decode_max_rows query rows: few rows, key splits) and
    "prefill" sites (many rows); full_attention: MhaTiles of the unmasked MHA sites.
    unified_memory: CPU and GPU share one DRAM (Jetson): inputs can be read by the graph in place (zero_copy_io)."""
    hardware: str
    arch: int
    mma: str
    min_triton: tuple
    pdl: bool               # programmatic dependent launch (griddepcontrol): sm90 and newer
    sm_count: int
    smem_per_block: int
    unified_memory: bool
    gemm: Mapping[str, FusedGemmConfig]
    split_k: int
    fused_max_m: int
    attention: Mapping[str, MqaTiles]
    decode_max_rows: int
    full_attention: MhaTiles
    flow_boundary: FlowTiles

    def check(self) -> "GpuTuning":
        """Raise InputError when a tile cannot work on this target (shared memory, missing entries)."""
        missing = set(FUSED_GEMMS) - set(self.gemm)
        if missing:
            raise InputError(f"{self.hardware} tuning: no GEMM tiles for {sorted(missing)}")
        for op, cfg in self.gemm.items():
            self.check_gemm(op, cfg)
        if set(self.attention) != set(ATTENTION_KINDS):
            raise InputError(f"{self.hardware} tuning: attention tiles must be given for {ATTENTION_KINDS}")
        if not self.pdl and any(c.tma for c in self.gemm.values()):
            raise InputError(f"{self.hardware} tuning: TMA tiles need the tensor memory accelerator (sm90+)")
        if self.split_k < 1 or self.fused_max_m < 1 or self.sm_count < 1:
            raise InputError(f"{self.hardware} tuning: split_k, fused_max_m and sm_count must be >= 1")
        return self

    def check_gemm(self, op: str, cfg: FusedGemmConfig) -> None:
        if op not in FUSED_GEMMS:
            raise InputError(f"unknown fused GEMM {op!r}; expected any of {sorted(FUSED_GEMMS)}")
        if op == "rope_qkv" and cfg.pairs_in_one_mma() is None:
            # the kernel cannot run these pairs: the frontend would fall back to the unfused path without a word
            raise InputError(f"rope_qkv tiles {cfg}: pairs of fewer than 16 columns need block_n 4 or 8 and tma "
                             f"off")
        need = cfg.smem_bytes(FUSED_GEMMS[op])
        if need > self.smem_per_block:
            raise InputError(f"{op} tiles {cfg} need ~{need} bytes of shared memory per block; {self.hardware} "
                             f"allows {self.smem_per_block}. Use fewer stages or smaller block_k / block_n")

    def with_gemm_overrides(self, overrides: Mapping[str, Mapping]) -> "GpuTuning":
        """The table with some fused-GEMM tiles replaced (frontend option gemm_tiles, for A/B runs), checked."""
        gemm = dict(self.gemm)
        for op, over in dict(overrides or {}).items():
            if op not in gemm:
                raise InputError(f"gemm_tiles: unknown GEMM {op!r}; expected any of {sorted(gemm)}")
            try:
                gemm[op] = gemm[op].with_overrides(**dict(over))
            except (TypeError, ValueError) as e:
                raise InputError(f"gemm_tiles[{op!r}]: {e}") from None
            self.check_gemm(op, gemm[op])
        return dataclasses.replace(self, gemm=gemm)

    def derive(self, **changes) -> "GpuTuning":
        """The table of another target that keeps this table's tiles except `changes`, checked; the attention's
        "programs to fill the GPU" follow the new SM count. Why: Hopper's are the only measured tiles; a table
        derived from them says in its own lines exactly what differs for its target and keeps the rest visibly
        Hopper's, instead of a copy that would drift."""
        sm = changes.get("sm_count", self.sm_count)
        attention = {k: t.with_overrides(target_programs=sm) for k, t in self.attention.items()}
        return dataclasses.replace(self, **{"attention": attention, **changes}).check()

    def attention_tiles(self, rows: int) -> MqaTiles:
        """The MQA tiles for a site of `rows` query rows (heads x queries)."""
        return self.attention["decode" if rows <= self.decode_max_rows else "prefill"]
