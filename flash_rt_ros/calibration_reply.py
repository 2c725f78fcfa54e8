"""The `~/calibrate` service's answer from what `policy.calibrate()` returns.

Why a module of its own: the GPU frontends return a dict ({"path", "num_observations", "percentile", "smoothing",
"fp8_check"}), and the node used to write `str(result)` -- the whole dict -- into the response's cache_path. No ROS
test could see it: the node's calibrate succeeds only on a GPU, and the GPU machines have no ROS. As a pure function
it is tested on the CPU (test/unit/test_calibration_reply.py).
"""
from __future__ import annotations


def calibration_reply(result) -> tuple[str, str, bool]:
    """(cache_path, message, warn) for a calibrate() result: the cache file, what was measured, and the FP8
    self-check against the BF16-activation twin (docs/calibration.md "FP8 self-check"); `warn` when it is below its
    bar, so the node logs a warning and says it in the message."""
    if not isinstance(result, dict):
        path = "" if result is None else str(result)
        return path, "calibrated" + (f"; cache {path}" if path else ""), False
    path = str(result.get("path") or "")
    msg = "calibrated" + (f" on {result['num_observations']} observation(s)" if result.get("num_observations")
                          else "") + (f"; cache {path}" if path else "")
    chk = result.get("fp8_check")
    warn = False
    if chk:
        warn = not chk["ok"]
        ho = chk.get("held_out")
        msg += (f"; FP8 vs its BF16-activation twin: worst cosine {chk['cosine']:.5f} (bar {chk['bar']:g}"
                + (f"; calibrated {chk['in_sample']:.5f}, held-out probe {ho:.5f}" if ho is not None else "") + ")"
                + (f" -- BELOW THE BAR: {chk['advice']}" if warn else ""))
    return path, msg, warn
