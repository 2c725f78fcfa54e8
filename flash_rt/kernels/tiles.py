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
    program, as many key splits as keep the programs within `target_programs` (the SM count; mqa_key_split), and
    the merge pass's rows and warps per program."""
    block_m: int
    block_n: int
    target_programs: int
    num_warps: int
    num_stages: int
    merge_rows: int
    merge_warps: int



def mqa_key_split(rows: int, keys: int, tiles: MqaTiles) -> tuple[int, int]:
    """(splits, keys_per_split) of an MQA site: as many key splits as keep the programs (row tiles x splits)
    within tiles.target_programs (the SM count), none when the row tiles alone fill that; keys per split a whole
    number of key blocks. Within, not about: at 3 views (1040 decoder keys, 25 row tiles) rounding the splits up
    gave 6 splits, 150 programs on 132 SMs, 11.78 us a call (partial + merge), 5 splits 125 programs 10.27 us
    (H100, benchmarks/attention_sweep.py --kv; docs/benchmarks.md). Here, not in the kernel module, so that the
    latency model (benchmarks/latency_model.py) uses the same rule without Triton."""
    m_blocks = cdiv(rows, tiles.block_m)
    splits = 1   # enough row tiles to fill the GPU alone: no split, no merge pass
    if 2 * m_blocks <= tiles.target_programs:
        splits = max(1, min(cdiv(keys, tiles.block_n), tiles.target_programs // m_blocks))
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
