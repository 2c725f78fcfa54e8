"""openpi's Pi0 Orbax checkpoints (pi0_base, pi0_droid, ...) load: the Orbax source reads the Pi0 tree into the
canonical tensors the Pi0 torch specs consume, bit-exact; the model is told apart by the tree, and a tree loaded
with the other model's config is refused naming the config that loads it.

The Pi0 Orbax checkpoints are written WITH orbax, in openpi's two layouts (released + training), from the same
weights as the tiny Pi0 safetensors checkpoint, and read back with tensorstore alone.
"""
from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.errors import CheckpointError
from flash_rt.executors.checkpoint_format import detect_framework
from flash_rt.executors.orbax_source import OrbaxSource, open_pi0_orbax_checkpoint, tree_model
from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.executors.weight_loader import WeightLoader
from flash_rt.models.pi05.config import EXP
from flash_rt.testing import TINY_ACTION_DIM, TINY_STATE_DIM
from flash_rt.testing.observations import random_observation
from flash_rt.testing.pi0_checkpoint import TINY_PI0_CONFIG

RUN = dict(config="pi0", hardware="cpu", num_views=2, action_horizon=10)   # Orbax carries no config.json


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32)


@pytest.fixture(scope="module")
def pi0_orbax(tmp_path_factory):
    """{"safetensors": tiny Pi0 openpi checkpoint, "released": its Orbax twin, "training": an openpi training step of
    the same weights (vision tower in bf16), "training_twin": safetensors with those bf16 roundings}."""
    from flash_rt.testing.orbax_checkpoint import build_tiny_pi0_orbax
    return build_tiny_pi0_orbax(tmp_path_factory.mktemp("pi0_orbax"))


@pytest.mark.parametrize("variant,twin", [("released", "safetensors"), ("training", "training_twin")])
def test_pi0_canonical_tensors_are_bit_identical(pi0_orbax, variant, twin):
    st = open_checkpoint(pi0_orbax[twin])
    src = OrbaxSource(pi0_orbax[variant], model="pi0")
    assert src.model == "pi0" and src.training_layout == (variant == "training")
    assert len(src.leaf_shapes) == 50        # openpi's Pi0 tree (Pi0.5's has 51)
    assert OrbaxSource(pi0_orbax[variant], model=None).model == "pi0"     # told apart by the tree itself
    if variant == "training":
        assert src.leaf_dtypes["PaliGemma/img/embedding/kernel"] == "bfloat16"
        assert src.leaf_dtypes["PaliGemma/llm/layers/pre_ffw_norm_1/scale"] == "float32"
    # every key the safetensors source has except the expert's unused lm_head (the JAX tree has no slot for it)
    assert set(st.keys()) - set(src.keys()) == {"paligemma_with_expert.gemma_expert.lm_head.weight"}
    assert set(src.keys()) <= set(st.keys())
    for k in (EXP + "layers.1.post_attention_layernorm.weight", EXP + "norm.weight", "state_proj.weight",
              "action_time_mlp_in.weight", "action_time_mlp_out.bias"):     # what only Pi0 has
        assert k in src.keys(), k
    shapes = src.key_shapes()
    for k in src.keys():
        a, b = src.get(k), st.get(k)
        assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) == shapes[k], k
        assert torch.equal(_bits(a), _bits(b)), k
    assert src._cached == {}


@pytest.mark.parametrize("variant,twin", [("released", "safetensors"), ("training", "training_twin")])
def test_pi0_gpu_weight_spec_runs_unchanged_on_the_orbax_source(pi0_orbax, variant, twin):
    """The Pi0 GPU cells' weight spec (FP8 quantization included), run on the CPU on both sources: the flat dict the
    weight cache stores is bit-identical whether the canonical tensors came from safetensors or from Orbax."""
    from flash_rt.frontends.torch._pi0_cuda import fp8_gemm_names
    from flash_rt.frontends.torch._pi0_cuda_spec import build_spec
    from flash_rt.models.pi0.config import infer_config
    st = open_checkpoint(pi0_orbax[twin])
    cfg = infer_config(st.key_shapes(), {"vision_num_heads": TINY_PI0_CONFIG.vis_heads})

    def flat(src):   # what _pi0_cuda.build_weights stores (all blocks FP8: every quantized family), on a given source
        target = types.SimpleNamespace(w={})
        WeightLoader(build_spec(cfg, "fp8", ()), src).run(target)
        out = {f"w.{k}": v for k, v in target.w.items()}
        for _, grp, _ in fp8_gemm_names(cfg, target.w):
            out.setdefault(f"s.{grp}", getattr(target, grp))
        return out

    a, b = flat(st), flat(open_pi0_orbax_checkpoint(pi0_orbax[variant]))
    assert a.keys() == b.keys() and any(v.dtype == torch.float8_e4m3fn for v in a.values())
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)), k


def test_framework_auto_reads_a_pi0_orbax_checkpoint_as_jax(pi0_orbax):
    ck = pi0_orbax["released"]
    assert detect_framework(ck) == "jax" and detect_framework(ck / "params") == "jax"
    assert detect_framework(pi0_orbax["training"]) == "jax"
    assert detect_framework(pi0_orbax["safetensors"]) == "torch"


@pytest.mark.parametrize("variant,twin", [("released", "safetensors"), ("training", "training_twin")])
def test_pi0_cpu_chunks_are_bit_identical(pi0_orbax, variant, twin):
    ref = flash_rt.load_model(pi0_orbax[twin], **RUN)
    pol = flash_rt.load_model(pi0_orbax[variant], **RUN)       # framework="auto" -> jax
    assert type(pol.frontend).__name__ == "Pi0JaxFrontendCpu" and type(ref.frontend).__name__ == "Pi0TorchFrontendCpu"
    assert pol.action_dim == ref.action_dim == TINY_ACTION_DIM and pol.frontend.normalizer is not None
    assert pol.frontend.cfg == ref.frontend.cfg
    rng = np.random.default_rng(5)
    for _ in range(2):
        images, state, prompt, noise = random_observation(rng, 2, TINY_STATE_DIM, ref.action_horizon)
        a = ref.predict(images, state, prompt, noise)
        b = pol.predict(images, state, prompt, noise)
        assert np.array_equal(a, b), np.abs(a - b).max()
    assert np.allclose(pol.reference_chunk(), b, atol=1e-4)     # the FP32 oracle runs on the Orbax source too


# -- the model is told apart by the tree ------------------------------------------------------------------------
def test_the_tree_names_its_model(pi0_orbax, tiny_orbax):
    assert tree_model(OrbaxSource(pi0_orbax["released"], model="pi0").leaf_shapes) == "pi0"
    assert tree_model(OrbaxSource(tiny_orbax["released"]).leaf_shapes) == "pi05"
    assert OrbaxSource(tiny_orbax["released"], model=None).model == "pi05"
    with pytest.raises(ValueError, match=r"model must be one of \('pi05', 'pi0'\)"):
        OrbaxSource(tiny_orbax["released"], model="pi1")


def test_a_pi0_tree_loaded_as_pi05_names_config_pi0(pi0_orbax):
    ck = pi0_orbax["released"]
    with pytest.raises(CheckpointError, match=r"is a Pi0 tree \(it has \['state_proj/kernel'.*but Pi0\.5 was asked "
                                              r"for \(config='pi05'\): load it with config='pi0'") as e:
        flash_rt.load_model(ck, hardware="cpu")          # config defaults to pi05; framework="auto" -> jax
    assert str(ck / "params") in str(e.value)


def test_a_pi05_tree_read_as_pi0_names_config_pi05(tiny_orbax):
    with pytest.raises(CheckpointError, match=r"is a Pi0\.5 tree \(it has \['time_mlp_in/kernel'.*but Pi0 was asked "
                                              r"for \(config='pi0'\): load it with config='pi05'"):
        open_pi0_orbax_checkpoint(tiny_orbax["released"])


def test_a_pi05_tree_loaded_as_pi0_names_config_pi05(tiny_orbax):
    with pytest.raises(CheckpointError, match=r"is a Pi0\.5 tree.*load it with config='pi05'"):
        flash_rt.load_model(tiny_orbax["released"], **RUN)


def test_a_mis_shaped_pi0_leaf_is_named_against_the_pi0_tree(pi0_orbax, tmp_path):
    from safetensors.torch import load_file

    from flash_rt.testing.orbax_checkpoint import jax_tree_from_state_dict, write_orbax_params
    sd = load_file(str(pi0_orbax["safetensors"] / "model.safetensors"))
    tree = jax_tree_from_state_dict(sd, TINY_PI0_CONFIG.vis_heads, TINY_PI0_CONFIG.heads)
    tree["action_time_mlp_in/kernel"] = tree["action_time_mlp_in/kernel"][:40]
    del tree["PaliGemma/llm/final_norm_1/scale"]
    ck = write_orbax_params(tree, tmp_path / "bad" / "params").parent
    with pytest.raises(CheckpointError, match=r"does not match openpi's Pi0 param tree \(2 problem") as e:
        OrbaxSource(ck, model="pi0")
    msg = str(e.value)
    assert "mis-shaped action_time_mlp_in/kernel  has [40, 32], expected [64, 32]" in msg
    assert "missing    PaliGemma/llm/final_norm_1/scale  expected [32]" in msg
