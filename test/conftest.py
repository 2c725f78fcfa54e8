"""Shared fixtures: tiny checkpoints are built once per session (real safetensors + a real SentencePiece
model trained at test time) and reused read-only."""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# keep any DDS traffic of any test on loopback, in a per-run domain (ros tests refine this)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 80))

# the tokenizer lookup falls back to openpi's and the Hugging Face hub's caches (flash_rt/io/tokenizer.py): point
# both at an empty directory so a developer's real caches never change what a test finds (tests that exercise the
# lookup set these to their own temp dirs); subprocesses (the ROS node) inherit it
_EMPTY_CACHE = tempfile.mkdtemp(prefix="flash_rt_test_caches_")
atexit.register(shutil.rmtree, _EMPTY_CACHE, True)
os.environ["OPENPI_DATA_HOME"] = os.path.join(_EMPTY_CACHE, "openpi")
os.environ["HF_HUB_CACHE"] = os.path.join(_EMPTY_CACHE, "hf_hub")


def pytest_configure(config):
    # one intra-op thread: test processes share 2 cores with DDS peers; OpenMP spinning otherwise
    # slows tiny GEMMs ~20x (see Pi05TorchFrontendCpu)
    import torch
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_openpi(tmp_path_factory):
    from flash_rt.testing import build_tiny_checkpoint
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_openpi"), layout="openpi")


@pytest.fixture(scope="session")
def tiny_lerobot(tmp_path_factory):
    from flash_rt.testing import build_tiny_checkpoint
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_lerobot"), layout="lerobot")


@pytest.fixture(scope="session")
def tiny_droid(tmp_path_factory):
    """Tiny weights with the full-size checkpoint's norm stats (DROID: 8 state, 8 action dims), as the GPU configs
    expect. The 7 GB full-size weights are too big for CI; the stats come from the same function that writes them."""
    from flash_rt.testing import build_tiny_checkpoint
    from flash_rt.testing.full_size import full_size_norm_stats
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_droid"), layout="openpi",
                                 norm_stats=full_size_norm_stats())


@pytest.fixture(scope="session")
def tiny_pi0(tmp_path_factory):
    """The tiny Pi0 checkpoint (openpi layout, 8 state / 7 action dims), as config/pi0_cpu.yaml expects."""
    from flash_rt.testing.pi0_checkpoint import build_tiny_pi0_checkpoint
    return build_tiny_pi0_checkpoint(tmp_path_factory.mktemp("tiny_pi0"), layout="openpi")


@pytest.fixture(scope="session")
def tiny_pi0_droid(tmp_path_factory):
    """Tiny Pi0 weights with the full-size checkpoint's norm stats (DROID-shaped), as config/pi0_<gpu>.yaml expect."""
    from flash_rt.testing.full_size import full_size_norm_stats
    from flash_rt.testing.pi0_checkpoint import build_tiny_pi0_checkpoint
    return build_tiny_pi0_checkpoint(tmp_path_factory.mktemp("tiny_pi0_droid"), layout="openpi",
                                     norm_stats=full_size_norm_stats())


@pytest.fixture(scope="session")
def tiny_orbax(tmp_path_factory, tiny_openpi):
    """openpi Orbax checkpoints of tiny_openpi's weights, written with orbax as openpi does (both variants), and the
    safetensors twin of the training variant (its bf16 leaves rounded the same way). Written once (~2 s).

    {"released": <ckpt>, "training": <run>/<step>, "training_twin": <safetensors ckpt>, "openpi_home": dir whose
    big_vision/paligemma_tokenizer.model is the tiny tokenizer}: point OPENPI_DATA_HOME there to load by text prompt.
    """
    from safetensors.torch import load_file, save_file

    from flash_rt.testing.checkpoint import TINY_ASSET_ID, TINY_CONFIG, tiny_norm_stats
    from flash_rt.testing.orbax_checkpoint import bf16_rounded, build_orbax_checkpoint
    root = tmp_path_factory.mktemp("tiny_orbax")
    sd = load_file(str(tiny_openpi / "model.safetensors"))
    kw = dict(vis_heads=TINY_CONFIG.vis_heads, heads=TINY_CONFIG.heads, norm_stats=tiny_norm_stats(),
              asset_id=TINY_ASSET_ID)
    out = {"released": build_orbax_checkpoint(root / "pi05_tiny", sd, variant="released", **kw),
           "training": build_orbax_checkpoint(root / "train_run", sd, variant="training", step=1000, **kw)}
    twin = root / "training_twin"
    shutil.copytree(tiny_openpi, twin)
    save_file(bf16_rounded(sd), str(twin / "model.safetensors"), metadata={"format": "pt"})
    out["training_twin"] = twin
    home = root / "openpi_home"
    (home / "big_vision").mkdir(parents=True)
    shutil.copy(tiny_openpi / "tokenizer.model", home / "big_vision" / "paligemma_tokenizer.model")
    out["openpi_home"] = home
    return out
