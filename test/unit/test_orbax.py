"""openpi JAX/Orbax checkpoints load directly: the Orbax source, the (pi05, jax, cpu) cell, framework="auto", and
clear errors for bad artifacts.

The Orbax checkpoints are written WITH orbax, in openpi's two layouts, from the same weights as the tiny safetensors
checkpoint (conftest.tiny_orbax), and read back with tensorstore alone.
"""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.errors import CheckpointError
from flash_rt.executors.checkpoint_format import detect_framework
from flash_rt.executors.orbax_source import OrbaxSource, orbax_checkpoint_hash
from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.testing.checkpoint import TINY_CONFIG
from flash_rt.testing.orbax_checkpoint import jax_tree_from_state_dict, write_orbax_params

RUN = dict(hardware="cpu", num_views=2, action_horizon=10, max_token_len=64, seed=0)


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int16 if t.element_size() == 2 else torch.int32)


@pytest.fixture
def openpi_home(tiny_orbax, monkeypatch):
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tiny_orbax["openpi_home"]))


def test_cache_key_sees_every_byte_of_every_data_file(copy_released, tmp_path):
    """A fine-tune that differs from another in one byte in the middle of a data file (same size, same names, same
    first and last 64 KiB) gets another key: the Orbax key is the full-content hash of the safetensors checkpoints,
    remembered per file identity in the index beside the weight cache (issue 16)."""
    index = tmp_path / "index"
    h = orbax_checkpoint_hash(copy_released, index_root=index)
    assert orbax_checkpoint_hash(copy_released, index_root=index) == h == orbax_checkpoint_hash(copy_released)
    data = max((f for f in (copy_released / "params").rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
    raw = bytearray(data.read_bytes())
    mid = len(raw) // 2
    raw[mid] ^= 0xFF
    time.sleep(1.1)        # the index trusts a digest only for files last written >= 1 s before hashing
    data.write_bytes(bytes(raw))
    assert data.stat().st_size == len(raw)
    assert orbax_checkpoint_hash(copy_released, index_root=index) != h


@pytest.mark.parametrize("variant,twin", [("released", None), ("training", "training_twin")])
def test_canonical_tensors_are_bit_identical(tiny_orbax, tiny_openpi, variant, twin):
    st = open_checkpoint(tiny_orbax[twin] if twin else tiny_openpi)
    src = OrbaxSource(tiny_orbax[variant])
    assert src.training_layout == (variant == "training")
    assert len(src.leaf_shapes) == 51
    if variant == "training":   # openpi's CheckpointManager layout: <run>/<step>/{_CHECKPOINT_METADATA,params,...}
        assert (tiny_orbax[variant] / "_CHECKPOINT_METADATA").is_file()
        assert (tiny_orbax[variant] / "train_state").is_dir() and tiny_orbax[variant].name == "1000"
        assert src.leaf_dtypes["PaliGemma/img/embedding/kernel"] == "bfloat16"
        assert src.leaf_dtypes["PaliGemma/llm/embedder/input_embedding"] == "float32"
    # every key the safetensors source has except the expert's unused lm_head (the JAX tree has no slot for it)
    assert set(st.keys()) - set(src.keys()) == {"paligemma_with_expert.gemma_expert.lm_head.weight"}
    assert set(src.keys()) <= set(st.keys())
    shapes = src.key_shapes()
    for k in src.keys():
        a, b = src.get(k), st.get(k)
        assert a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape) == shapes[k], k
        assert torch.equal(_bits(a), _bits(b)), k
    # a second full pass (the FP32 oracle after the spec) reads the leaves again, identically
    k = "paligemma_with_expert.paligemma.model.language_model.layers.1.mlp.up_proj.weight"
    assert torch.equal(src.get(k), st.get(k))
    assert src.config_hints() == {"vision_num_heads": TINY_CONFIG.vis_heads, "head_dim": TINY_CONFIG.head_dim,
                                  "num_key_value_heads": 1}


@pytest.mark.parametrize("variant,twin", [("released", None), ("training", "training_twin")])
def test_cpu_chunks_are_bit_identical(tiny_orbax, tiny_openpi, openpi_home, variant, twin):
    ref = flash_rt.load_model(tiny_orbax[twin] if twin else tiny_openpi, **RUN)
    pol = flash_rt.load_model(tiny_orbax[variant], **RUN)     # framework="auto" -> jax
    assert type(pol.frontend).__name__ == "Pi05JaxFrontendCpu"
    assert type(ref.frontend).__name__ == "Pi05TorchFrontendCpu"
    assert pol.config == ref.config
    assert pol.action_dim == 7 and pol.frontend.normalizer is not None   # norm stats from assets/ beside params/
    rng = np.random.default_rng(3)
    for prompt in ("pick up the red block", "close the microwave door"):
        imgs = [rng.integers(0, 255, (224, 224, 3), dtype=np.uint8) for _ in range(2)]
        state = rng.uniform(-1, 1, 8).astype(np.float32)
        noise = rng.standard_normal((10, 32)).astype(np.float32)
        a = ref.predict(imgs, state=state, prompt=prompt, noise=noise)
        b = pol.predict(imgs, state=state, prompt=prompt, noise=noise)
        assert np.array_equal(a, b), np.abs(a - b).max()
    # the FP32 oracle runs unchanged on the Orbax source
    r = pol.reference_chunk()
    assert np.allclose(r, b, atol=1e-4)


def test_params_dir_itself_and_framework_detection(tiny_orbax, tiny_openpi, openpi_home):
    ck = tiny_orbax["released"]
    assert detect_framework(ck) == "jax" and detect_framework(ck / "params") == "jax"
    assert detect_framework(tiny_openpi) == "torch"
    assert detect_framework(tiny_openpi / "model.safetensors") == "torch"
    pol = flash_rt.load_model(ck / "params", framework="jax", **RUN)
    assert pol.frontend.ckpt_dir == ck and pol.frontend.normalizer is not None
    with pytest.raises(CheckpointError, match=r"framework='torch' expects a PyTorch checkpoint.*holds an openpi "
                                              r"JAX/Orbax checkpoint.*framework='jax'"):
        flash_rt.load_model(ck, framework="torch", **RUN)
    with pytest.raises(CheckpointError, match=r"framework='jax' expects an openpi JAX/Orbax.*framework='torch'"):
        flash_rt.load_model(tiny_openpi, framework="jax", **RUN)


def test_neither_layout_names_what_it_found(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"cannot tell the framework.*weights\.bin.*model\.safetensors.*params/"):
        flash_rt.load_model(tmp_path, hardware="cpu")


# -- bad artifacts ------------------------------------------------------------------------------------------------
@pytest.fixture
def copy_released(tiny_orbax, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_orbax["released"], dst)
    return dst


@pytest.mark.parametrize("victim", ["_METADATA", "manifest.ocdbt"])
def test_partly_written_params_dir(copy_released, victim):
    (copy_released / "params" / victim).unlink()
    with pytest.raises(CheckpointError, match=rf"partly written.*{victim}") as e:
        flash_rt.load_model(copy_released, hardware="cpu")
    assert str(copy_released / "params") in str(e.value)


def test_unfinished_orbax_write_is_refused(copy_released):
    (copy_released / "params.orbax-checkpoint-tmp-1733").mkdir()
    with pytest.raises(CheckpointError, match=r"unfinished Orbax write.*params\.orbax-checkpoint-tmp-1733"):
        flash_rt.load_model(copy_released, framework="jax", hardware="cpu")


def test_truncated_metadata(copy_released):
    f = copy_released / "params" / "_METADATA"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"_METADATA' is not Orbax tree metadata.*truncated"):
        OrbaxSource(copy_released)


def test_truncated_data_file(copy_released):
    files = sorted((copy_released / "params").rglob("d/*"), key=lambda f: f.stat().st_size)
    big = files[-1]
    big.write_bytes(big.read_bytes()[: big.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated") as e:
        src = OrbaxSource(copy_released)
        for k in src.keys():
            src.get(k)
    assert str(copy_released / "params") in str(e.value)


def _write_tree(tmp_path, tiny_openpi, edit):
    from safetensors.torch import load_file
    tree = jax_tree_from_state_dict(load_file(str(tiny_openpi / "model.safetensors")), TINY_CONFIG.vis_heads,
                                    TINY_CONFIG.heads)
    edit(tree)
    return write_orbax_params(tree, tmp_path / "bad" / "params").parent


def test_missing_and_mis_shaped_leaves_are_all_named(tmp_path, tiny_openpi):
    def edit(t):
        del t["PaliGemma/llm/layers/mlp_1/linear"]
        t["time_mlp_out/bias"] = np.zeros(5, np.float32)
    ck = _write_tree(tmp_path, tiny_openpi, edit)
    with pytest.raises(CheckpointError) as e:
        flash_rt.load_model(ck, hardware="cpu")
    msg = str(e.value)
    assert str(ck / "params") in msg and "2 problem(s)" in msg
    assert "missing    PaliGemma/llm/layers/mlp_1/linear  expected [2, 64, 32]" in msg
    assert "mis-shaped time_mlp_out/bias  has [5], expected [32]" in msg


def test_pi0_tree_is_refused(tmp_path, tiny_openpi):
    """A Pi0 tree (its expert norms are scales, its heads state_proj + action_time_mlp_*) given to a Pi0.5 cell
    names the model found and the config that loads it (test_orbax_pi0.py loads it)."""
    def to_pi0(t):
        for n in ("kernel", "bias"):
            t[f"action_time_mlp_in/{n}"] = t.pop(f"time_mlp_in/{n}")
            t[f"state_proj/{n}"] = t.pop(f"time_mlp_out/{n}")
        for n in ("pre_attention_norm_1", "pre_ffw_norm_1", "final_norm_1"):
            t[f"PaliGemma/llm/layers/{n}/scale" if n != "final_norm_1" else f"PaliGemma/llm/{n}/scale"] = \
                t.pop(f"PaliGemma/llm/layers/{n}/Dense_0/bias" if n != "final_norm_1" else
                      f"PaliGemma/llm/{n}/Dense_0/bias")
    ck = _write_tree(tmp_path, tiny_openpi, to_pi0)
    with pytest.raises(CheckpointError, match=r"is a Pi0 tree .*but Pi0\.5 was asked for \(config='pi05'\): load "
                                              r"it with config='pi0'"):
        flash_rt.load_model(ck, hardware="cpu")


def test_tree_of_another_model_is_refused(tmp_path):
    write_orbax_params({"encoder/dense/kernel": np.ones((4, 4), np.float32)}, tmp_path / "other" / "params")
    with pytest.raises(CheckpointError, match=r"not an openpi Pi0/Pi0\.5 tree.*encoder/dense/kernel") as e:
        flash_rt.load_model(tmp_path / "other", hardware="cpu")
    assert str(tmp_path / "other" / "params") in str(e.value)


def test_cache_key_follows_the_params_files(tiny_orbax, copy_released):
    h = orbax_checkpoint_hash(tiny_orbax["released"])
    assert h == orbax_checkpoint_hash(tiny_orbax["released"] / "params") == orbax_checkpoint_hash(copy_released)
    assert h != orbax_checkpoint_hash(tiny_orbax["training"])
    meta = json.loads((copy_released / "params" / "_METADATA").read_text())
    meta["custom_metadata"] = {"touched": 1}
    (copy_released / "params" / "_METADATA").write_text(json.dumps(meta))
    assert orbax_checkpoint_hash(copy_released) != h


@pytest.mark.parametrize("variant,twin", [("released", None), ("training", "training_twin")])
def test_gpu_weight_spec_runs_unchanged_on_the_orbax_source(tiny_orbax, tiny_openpi, variant, twin):
    """The GPU cells' spec (FP8 quantization included), run on the CPU: the flat dict the weight cache stores is
    bit-identical whether the canonical tensors came from safetensors or from Orbax."""
    from flash_rt.executors.orbax_source import open_orbax_checkpoint
    from flash_rt.frontends.torch._pi05_cuda_storage import build_weights
    from flash_rt.models.pi05.config import infer_config
    st = open_checkpoint(tiny_orbax[twin] if twin else tiny_openpi)
    cfg = infer_config(st.key_shapes(), {"vision_num_heads": TINY_CONFIG.vis_heads, "head_dim": TINY_CONFIG.head_dim})
    a = build_weights(tiny_orbax[twin] if twin else tiny_openpi, cfg, "fp8", "cpu")
    b = build_weights(tiny_orbax[variant], cfg, "fp8", "cpu", open_source=open_orbax_checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k].view(torch.uint8), b[k].view(torch.uint8)), k


def test_a_directory_with_both_layouts_needs_an_explicit_framework(tiny_orbax, tiny_openpi, tmp_path, openpi_home):
    both = tmp_path / "both"
    shutil.copytree(tiny_openpi, both)
    shutil.copytree(tiny_orbax["released"] / "params", both / "params")
    with pytest.raises(CheckpointError, match=r"holds both a PyTorch checkpoint .* pass framework='torch' or "
                                              r"framework='jax'"):
        flash_rt.load_model(both, **RUN)
    assert type(flash_rt.load_model(both, framework="jax", **RUN).frontend).__name__ == "Pi05JaxFrontendCpu"
    assert type(flash_rt.load_model(both, framework="torch", **RUN).frontend).__name__ == "Pi05TorchFrontendCpu"


def test_leaves_are_freed_once_every_tensor_cut_from_them_was_read(tiny_orbax):
    src = OrbaxSource(tiny_orbax["released"])
    k0 = "paligemma_with_expert.paligemma.model.language_model.layers.0.mlp.gate_proj.weight"
    src.get(k0)
    assert list(src._cached) == ["PaliGemma/llm/layers/mlp/gating_einsum"]   # 3 more slices of it to come
    for k in src.keys():
        src.get(k)
    assert src._cached == {}       # nothing stays decoded after a full pass


def test_every_jax_cell_is_its_torch_cell_with_the_orbax_source():
    from flash_rt.errors import HardwareError
    from flash_rt.executors.orbax_source import open_orbax_checkpoint, open_pi0_orbax_checkpoint
    from flash_rt.frontends.jax._orbax_cell import OrbaxCheckpoint, Pi0OrbaxCheckpoint
    from flash_rt.hardware import _PIPELINE_MAP, resolve_frontend
    mixin = {"pi05": OrbaxCheckpoint, "pi0": Pi0OrbaxCheckpoint}    # the source asks for the cell's model
    opener = {"pi05": open_orbax_checkpoint, "pi0": open_pi0_orbax_checkpoint}
    jax_keys = sorted(k for k in _PIPELINE_MAP if k[1] == "jax")
    assert {k[0] for k in jax_keys} == {k[0] for k in _PIPELINE_MAP if k[1] == "torch"} == set(mixin)
    for model in {k[0] for k in jax_keys}:       # every hardware of a model's torch cells has its jax cell
        assert sorted(k[2] for k in jax_keys if k[0] == model) == \
            sorted(k[2] for k in _PIPELINE_MAP if k[1] == "torch" and k[0] == model), model
    for model, _, hw in jax_keys:
        cls, twin = resolve_frontend(model, "jax", hw), resolve_frontend(model, "torch", hw)
        assert cls.__bases__ == (mixin[model], twin) and cls.hardware == twin.hardware == hw
        assert cls.open_source is opener[model]
        assert cls._checkpoint_hash is OrbaxCheckpoint._checkpoint_hash   # weight + calibration cache key
        if hw != "cpu" and not torch.cuda.is_available():
            with pytest.raises(HardwareError, match=rf"{cls.__name__}\) needs a CUDA GPU"):
                cls("unused")


def test_a_dimension_leaf_of_the_wrong_rank_is_named(tmp_path, tiny_openpi):
    def edit(t):
        t["PaliGemma/llm/layers/attn/q_einsum/w"] = t["PaliGemma/llm/layers/attn/q_einsum/w"].reshape(2, 8, -1)
    ck = _write_tree(tmp_path, tiny_openpi, edit)
    with pytest.raises(CheckpointError, match=r"mis-shaped PaliGemma/llm/layers/attn/q_einsum/w  has \[2, 8, 1024\], "
                                              r"expected 4 dimensions"):
        OrbaxSource(ck)
