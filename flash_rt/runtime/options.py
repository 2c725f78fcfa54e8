"""Checks of the GPU frontends' keyword options: a value that cannot work is refused by name, with what it takes."""
from __future__ import annotations

from flash_rt.errors import InputError

FUSED_OPS = ("rope_qkv", "geglu", "splitk")


def weight_suffixes(option: str, value, allowed) -> tuple:
    """A tuple of weight-name suffixes from `allowed`."""
    if isinstance(value, str) or not all(isinstance(x, str) and x in allowed for x in tuple(value or ())):
        raise InputError(f"{option}: expected a tuple of weight-name suffixes from {sorted(allowed)}; got {value!r}")
    return tuple(value or ())


def fast_accum(value):
    """True (every cuBLASLt FP8 GEMM), False (none) or weight-name suffixes."""
    if isinstance(value, bool):
        return value
    value = tuple(value)
    if not all(isinstance(x, str) and x for x in value):
        raise InputError(f"fast_accum: expected True, False or weight-name suffixes like ('gu_w',); got {value!r}")
    return value


def fused_ops(value) -> tuple:
    """True = all of FUSED_OPS, False / () = none, else a subset."""
    if value is True:
        return FUSED_OPS
    value = tuple(value or ())
    unknown = set(value) - set(FUSED_OPS)
    if unknown:
        raise InputError(f"fused_expert_gemms: unknown {sorted(unknown)}; expected any of {FUSED_OPS}")
    return value
