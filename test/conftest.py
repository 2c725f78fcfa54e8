"""Shared fixtures: tiny checkpoints are built once per session (real safetensors + a real SentencePiece
model trained at test time) and reused read-only."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# keep any DDS traffic of any test on loopback, in a per-run domain (ros tests refine this)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(10 + os.getpid() % 80))


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
