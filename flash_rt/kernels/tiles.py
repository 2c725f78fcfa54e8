"""Launch tiles of the Triton kernels, as plain data (no triton import, so tuning tables load anywhere).

Each target's tuning table (`flash_rt/hardware/<hw>/tuning.py`) fills these; the kernels take them as arguments.
None of them has defaults: a tile tuned on one GPU must not silently serve another (the H100's SM count, 132,
once lived in the attention kernel as a default and would have split Thor's 20 SMs' work 7x too finely).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


class _Tiles:
    def with_overrides(self, **overrides):
        """A copy with some fields replaced (A/B overrides); an unknown field is a ValueError naming it."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - fields
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} fields {sorted(unknown)}; expected any of "
                             f"{sorted(fields)}")
        return dataclasses.replace(self, **overrides)


@dataclass(frozen=True)
class FusedGemmConfig(_Tiles):
    """Tiles of the fused FP8 GEMMs (kernels/triton/gemm_fused.py): block_m rows (masked) x block_n output
    columns per program, block_k per step, software-pipelining stages, warps, and tma (tiles through TMA
    tensor descriptors instead of pointer loads). No autotune: one compile per shape before graph capture."""
    block_m: int
    block_n: int
    block_k: int
    stages: int
    warps: int
    tma: bool


    def smem_bytes(self, dual: bool) -> int:
        """An upper estimate of the shared memory a program of this config uses, FP8 operands: `stages` buffers of
        the activation tile and one (or, `dual`, two) weight tiles, plus 1 KB for barriers and the epilogue.
        Checked against real sm90/sm110/sm120 compiles in CI (test_kernels_compile.py), so a tuning table or a
        gemm_tiles override that cannot fit is refused when the frontend is built, not at the first launch."""
        tile = self.block_m * self.block_k + (2 if dual else 1) * self.block_n * self.block_k
        return self.stages * tile + 1024

    def pairs_in_one_mma(self) -> bool | None:
        """For the qkv + RoPE GEMM's column pairs: False for two MMAs of block_n >= 16 columns; True for block_n 4
        or 8 on pointer loads, both halves in one MMA (Triton's dot needs N >= 16; gemm_fused._fp8_pair_mainloop);
        None where the kernel has no way to run the tiles (narrower pairs, or narrow ones on TMA)."""
        if self.block_n >= 16:
            return False
        return True if self.block_n in (4, 8) and not self.tma else None


@dataclass(frozen=True)
class MqaTiles(_Tiles):
    """Tiles of the MQA flash-decoding kernel (kernels/triton/attention.py): block_m query rows x block_n keys per
    program, key splits from `target_programs` (the SM count) and `max_split_keys` (mqa_key_split), and the merge
    pass's rows and warps per program."""
    block_m: int
    block_n: int
    target_programs: int
    max_split_keys: int | None   # keys a split may hold at most, past the SM count if need be; None: no bound
    num_warps: int
    num_stages: int
    merge_rows: int
    merge_warps: int

    def __post_init__(self):
        # a bound between key blocks would round up to the next block and not hold (100 keys -> splits of 128)
        k = self.max_split_keys
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k <= 0 or k % self.block_n):
            raise ValueError(f"max_split_keys must be None or a positive multiple of block_n ({self.block_n}); "
                             f"got {k!r}")


def mqa_key_split(rows: int, keys: int, tiles: MqaTiles) -> tuple[int, int]:
    """(splits, keys_per_split) of an MQA site: none when the row tiles alone fill the GPU (at least half of
    tiles.target_programs, the SM count); else as many key splits as keep the programs within that target, or
    more where a split would otherwise hold over tiles.max_split_keys keys; keys per split a whole number of key
    blocks.

    Measured in the model (benchmarks/latency.py, H100, 200 prompt slots, replay; docs/benchmarks.md
    "Seventeenth session"):
    - decode (16-row programs, 25 row tiles): shorter splits win even past the 132 SMs -- 2 views (784 keys) 7
      splits of 128 keys (175 programs) 10.15 ms against 5 of 192 (125) 10.33; 3 views (1040 keys) 9 of 128 11.98
      against 6 of 192 12.08 (in another run 6 of 192 12.12 against 5 of 256 12.31); at 64 slots (640 keys) 5 of
      128 had beaten 10 of 64 (eleventh session). Hence max_split_keys 128 there. In isolation
      (attention_sweep.py --kv) 5 of 256 had looked faster than 6 of 192 (10.27 vs 11.78 us a call): the model is
      the measure.
    - prefill (64-row programs): at 1 view (8 x 464 rows, 58 row tiles) 2 splits (116 programs) 8.92 ms against
      3 (174) 9.00: within the SMs, no key bound.
    Here, not in the kernel module, so that the latency model (benchmarks/latency_model.py) uses the same rule
    without Triton."""
    m_blocks = cdiv(rows, tiles.block_m)
    splits = 1   # enough row tiles to fill the GPU alone: no split, no merge pass
    if 2 * m_blocks <= tiles.target_programs:
        splits = tiles.target_programs // m_blocks
        if tiles.max_split_keys is not None:
            splits = max(splits, cdiv(keys, tiles.max_split_keys))
        splits = max(1, min(cdiv(keys, tiles.block_n), splits))
    per = cdiv(cdiv(keys, splits), tiles.block_n) * tiles.block_n
    return cdiv(keys, per), per


def cdiv(a: int, b: int) -> int:
    """Ceiling division of non-negative ints (triton.cdiv, without importing Triton)."""
    return -(-a // b)


@dataclass(frozen=True)
class MhaTiles(_Tiles):
    """Tiles of the unmasked MHA kernel (kernels/triton/mha.py); block_m None = chosen from the program count
    (mha.mha_block_m with the target's SM count)."""
    block_m: int | None
    block_n: int
    num_warps: int
    num_stages: int



@dataclass(frozen=True)
class FlowTiles(_Tiles):
    """The flow-step seam kernel (kernels/triton/flow_boundary.py): action rows of a weight chunk (a power of
    two) and warps per program."""
    chunk: int
    num_warps: int
