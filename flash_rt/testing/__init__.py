"""Test models built at test time: tiny Pi0.5 checkpoints (openpi + lerobot layouts) and a tokenizer."""
from flash_rt.testing.checkpoint import (TINY_ACTION_DIM, TINY_CONFIG, TINY_STATE_DIM,  # noqa: F401
                                         build_tiny_checkpoint)
