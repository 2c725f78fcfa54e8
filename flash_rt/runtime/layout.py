"""Layout helpers of the GPU forwards that are plain torch copies (model-agnostic)."""
from __future__ import annotations


def im2col_patches(img, patch: int, out):
    """[V, C, S, S] -> [V * (S/p)^2, C*p*p] patch rows (conv weight order c, kh, kw) into `out` (1 copy)."""
    v, c, s, _ = img.shape
    g = s // patch
    out.view(v, g, g, c, patch, patch).copy_(img.view(v, c, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5))
    return out
