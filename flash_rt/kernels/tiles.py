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


@dataclass(frozen=True)
class MqaTiles(_Tiles):
    """Tiles of the MQA flash-decoding kernel (kernels/triton/attention.py): block_m query rows x block_n keys per
    program, key splits from `target_programs` (the SM count) and `splits_past_target` (mqa_key_split), and the
    merge pass's rows and warps per program."""
    block_m: int
    block_n: int
    target_programs: int
    splits_past_target: bool   # the splits round up, so the programs may pass target_programs (mqa_key_split)
    num_warps: int
    num_stages: int
    merge_rows: int
    merge_warps: int



def mqa_key_split(rows: int, keys: int, tiles: MqaTiles) -> tuple[int, int]:
    """(splits, keys_per_split) of an MQA site: as many key splits as make the programs (row tiles x splits) fill
    tiles.target_programs (the SM count) -- rounding up past it where `splits_past_target`, else staying within --
    none when the row tiles alone fill the GPU; keys per split a whole number of key blocks.

    Which way was measured in the model (benchmarks/latency.py, H100, 200 prompt slots, docs/benchmarks.md
    "Seventeenth session"), and the two sites want opposite ones:
    - decode (16-row programs): at 3 views (1040 keys, 25 row tiles) 6 splits of 192 keys (150 programs on 132 SMs)
      replay 12.12 ms, 5 of 256 (125 programs) 12.31 ms: shorter programs beat staying within one wave, although
      the same two in isolation (attention_sweep.py --kv 1040) had said the opposite, 11.78 vs 10.27 us a call;
    - prefill (64-row programs): at 1 view (8 x 464 rows, 58 row tiles) 2 splits (116 programs) replay 8.92 ms,
      3 splits (174) 9.00 ms.
    Here, not in the kernel module, so that the latency model (benchmarks/latency_model.py) uses the same rule
    without Triton."""
    m_blocks = cdiv(rows, tiles.block_m)
    splits = 1   # enough row tiles to fill the GPU alone: no split, no merge pass
    if 2 * m_blocks <= tiles.target_programs:
        fill = cdiv(tiles.target_programs, m_blocks) if tiles.splits_past_target else tiles.target_programs // m_blocks
        splits = max(1, min(cdiv(keys, tiles.block_n), fill))
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
