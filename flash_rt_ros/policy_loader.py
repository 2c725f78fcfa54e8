"""The one place the node's parameters become a flash_rt Policy (used by the node and the rosbag report,
so a replay report recomputes chunks with exactly the engine settings the node ran)."""
from __future__ import annotations

import flash_rt


def load_policy(p, hardware: str | None = None):
    """`p` is a NodeParams; `hardware` overrides p.hardware (the report recomputes on the CPU)."""
    hw = hardware or p.hardware
    opts = {}
    if hw == "cpu" and p.cpu_threads > 0:
        opts["num_threads"] = p.cpu_threads
    # the output-stage options are passed only when set, so the node runs on an engine without them too
    if p.action_delta_mask:   # openpi's compact form, as the engine takes it (flash_rt/io/action_delta.py)
        opts["action_delta_mask"] = [int(n) for n in p.action_delta_mask]
    if p.realtime_chunking:
        opts["realtime_chunking"] = True
    return flash_rt.load_model(
        p.checkpoint, config=p.model, framework=p.framework, hardware=hw, num_views=p.views,
        action_horizon=p.action_horizon or None, num_steps=p.num_steps, tokenizer=p.tokenizer or None,
        norm_stats=p.norm_stats or None, action_dim=p.action_dim or None,
        image_interpolation=p.image_interpolation, cache_dir=p.weight_cache_dir or None, **opts)
