"""benchmarks/latency.py's variants are what the device calls A/B. A variant with a misspelt option, a tile the
target refuses or a split count other than its name says costs a device call -- the scarcest thing a session has
(one lent in three hours, sixteenth session) -- before anyone notices. Checked here, on the CPU, against the real
frontend signature, the real tuning table and the real split rule."""
from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")   # the attention workspaces import the kernel module

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import latency  # noqa: E402

from flash_rt.frontends.torch._pi05_cuda import Pi05CudaFrontend  # noqa: E402
from flash_rt.hardware.hopper.tuning import TUNING as HOPPER  # noqa: E402
from flash_rt.models.pi05.attention_sites import pi05_attention_spec  # noqa: E402
from flash_rt.models.pi05.config import Pi05Config  # noqa: E402
from flash_rt.models.pi05.dims import Pi05Dims  # noqa: E402
from flash_rt.runtime.attention import TritonAttnBackend  # noqa: E402

OPTIONS = set(inspect.signature(Pi05CudaFrontend.__init__).parameters) - {"self", "checkpoint", "kw"}


def _backend(views: int, slots: int, tiles: dict) -> TritonAttnBackend:
    """The full-size Pi0.5 attention sites at `views` cameras and `slots` prompt slots, horizon 50, on Hopper."""
    cfg = dataclasses.replace(Pi05Config(), max_token_len=slots)
    d = Pi05Dims.of(cfg, views, 10, -0.1, align=16)
    return TritonAttnBackend(pi05_attention_spec(cfg, d), "meta", HOPPER, tiles)


@pytest.mark.parametrize("name", sorted(latency.VARIANTS))
def test_every_variant_is_an_engine_the_frontend_can_build(name):
    v = latency.VARIANTS[name]
    assert set(v) <= OPTIONS, f"{name}: options the frontend does not take: {sorted(set(v) - OPTIONS)}"
    if "attention_tiles" in v:
        _backend(2, 200, v["attention_tiles"])       # unknown sites / fields / bad bounds raise InputError
    if "gemm_tiles" in v:
        HOPPER.with_gemm_overrides(v["gemm_tiles"])  # unknown GEMMs / fields / shared memory raise InputError


# (variant, views, prompt slots the name was given at) -> decoder key splits
NAMED_SPLITS = [("attn-1split", 2, 64, 1), ("attn-2split", 2, 64, 2), ("attn-3split", 2, 64, 3),
                ("attn-10split", 2, 64, 10), ("attn-7split", 2, 200, 7), ("attn-keys192", 2, 200, 5),
                ("attn-keys192", 3, 200, 6), ("prev-splits", 3, 200, 6), ("default", 2, 200, 7),
                ("default", 3, 200, 9)]


@pytest.mark.parametrize("name,views,slots,splits", NAMED_SPLITS)
def test_split_variants_split_as_their_names_say(name, views, slots, splits):
    ws = _backend(views, slots, latency.VARIANTS[name].get("attention_tiles", {})).ws["decoder"]
    assert ws.splits == splits, (name, views, slots, ws.splits, ws.keys_per_split)


def test_a_qkv_pairing_the_kernel_cannot_run_is_refused_before_it_falls_back():
    """8-column qkv pairs exist only on pointer loads; asked for on TMA tiles, the frontend would have run the
    unfused GEMM instead (fused_gemm_supported says no) and an A/B would have timed the wrong engine."""
    from flash_rt.errors import InputError
    HOPPER.with_gemm_overrides({"rope_qkv": {"block_n": 8}})
    for bad in ({"block_n": 8, "tma": True}, {"block_n": 2}):
        with pytest.raises(InputError, match="pairs of fewer than 16 columns"):
            HOPPER.with_gemm_overrides({"rope_qkv": bad})
