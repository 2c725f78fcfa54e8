"""Random observations for tests and benchmarks (any camera size, raw robot state, matched noise)."""
from __future__ import annotations

import numpy as np

TASKS = ("pick up the red block", "open the top drawer", "put the cup on the plate", "stack the green cube")


def random_observation(rng: np.random.Generator, num_views: int, state_dim: int, horizon: int,
                       model_action_dim: int = 32, masked_slot: bool = True):
    """(images, state, prompt, noise). Views get assorted sizes; with masked_slot the last of 3 is None."""
    sizes = [(480, 640), (224, 224), (240, 320)]
    images = []
    for v in range(num_views):
        if masked_slot and num_views == 3 and v == 2:
            images.append(None)
            continue
        h, w = sizes[v % len(sizes)]
        images.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    state = rng.uniform(-2.0, 2.5, state_dim)
    prompt = TASKS[int(rng.integers(len(TASKS)))]
    noise = rng.standard_normal((horizon, model_action_dim)).astype(np.float32)
    return images, state, prompt, noise
