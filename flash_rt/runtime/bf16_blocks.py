"""The blocks of the Pi0-family GPU forward that an fp8 build can keep in BF16 (bf16 weights, bf16 activations):
"vision" (SigLIP and the projector's input), "prefix" (the LLM), "expert" (the flow steps, and Pi0's state pass).

Two users: Pi0's fp8 build keeps the blocks of its `bf16_blocks` in BF16 at load (models/pi0/precision.py says why,
measured), and Pi0.5's `bf16_outlier_sites="blocks"` runs every block holding an outlier site in BF16 once the first
observation has shown one (runtime/outlier_sites.py). A block covers every FP8 site in it, also those no outlier
group names (SigLIP's gelu inputs), and every GEMM that reads them.
"""
from __future__ import annotations

BLOCKS = ("vision", "prefix", "expert")


def site_block(site: str) -> str:
    """The block of a quantization site: vision (SigLIP + projector input), prefix (the LLM), expert (state pass
    `st.*` and flow steps `ex.*`)."""
    return {"vis": "vision", "llm": "prefix", "ex": "expert", "st": "expert"}[site.split(".", 1)[0]]


def gemm_block(weight: str) -> str:
    """The block of a GEMM weight of the GPU spec (`proj_w`, the projector, reads the vision tower's last site)."""
    return "vision" if weight == "proj_w" else site_block(weight)


class Bf16Blocks:
    """Fp8Context's bf16_sites predicate: the sites of `blocks` stay bf16 (their GEMM weights are bf16 in w)."""

    def __init__(self, blocks):
        unknown = set(blocks) - set(BLOCKS)
        if unknown:
            raise ValueError(f"bf16_blocks: unknown block(s) {sorted(unknown)}; expected any of {list(BLOCKS)}")
        self.blocks = tuple(b for b in BLOCKS if b in blocks)

    def __call__(self, site: str) -> bool:
        return site_block(site) in self.blocks
