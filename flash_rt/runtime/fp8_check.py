"""The FP8 self-check that calibration runs: the production FP8 forward against its calibration twin on the
observation just calibrated, same inputs and noise.

Why: a checkpoint whose FP8 actions drift from what its weights mean gives no error -- the rung of issue 16 found
plain per-tensor FP8 at worst cosine 0.9926-0.9941 on one injected full-size checkpoint whose BF16 held 0.99992
(docs/calibration.md), and a real fine-tune can be like it. The twin already runs at calibration (bf16
activations, the same FP8 weight bytes), so comparing the two chunks costs one production forward per calibrated
observation and no extra weights: it measures the activation rounding, which is what outlier channels and a sensitive model
amplify.

On the calibrated observation FP8 is at its best (the scales are its own), so the check is in-sample: it catches
gross failures at the gate's bar and reports the number for the rest. Measured on the micro model under the
interpreter, in-sample FP8 vs twin (FP8 vs FP32 on the same observation): no injection 1.00000 (0.99999); matched
adaRMS 30x 1.00000 (0.99999); plain up_proj 30x 0.99999 (0.99994); plain llm_norm 30x 0.99906 (0.99717); plain
ex_ada 30x 0.99882 (0.99723; 0.98816 on later observations); plain ex_ada 100x 0.97202 (0.96068); plain llm_norm
100x 0.98844 (0.98264). Not checked: the weights' own rounding (the twin shares it), so the reference for a precision
claim stays the FP32 oracle (policy.reference_chunk, the rosbag report). A tighter bar needs the full-size numbers
of ordinary checkpoints first (staged: test/gpu/test_fp8_check_gpu.py).
"""
from __future__ import annotations

import warnings

import numpy as np

from flash_rt.io.prompt import FlashRTWarning
from flash_rt.metrics import cosine64

BAR = 0.995   # the FP8 gate of the GPU suite (worst cosine vs FP32 over 20 observations)
ADVICE = ("FP8 moves this checkpoint's actions more than the precision gate allows: check it against the FP32 "
          "reference (policy.reference_chunk, or a rosbag report); leave load_model's bf16_outlier_sites at its "
          "default ('blocks': BF16 where outliers are found), or use precision='bf16' (docs/calibration.md, "
          "'FP8 self-check')")


def cosine(a, b) -> float:
    """The ladder's cosine (flash_rt/metrics.py), 1.0 for two zero chunks (identical, not unrelated)."""
    if not np.any(a) and not np.any(b):
        return 1.0
    return cosine64(a, b)


class Fp8Check:
    """The worst FP8-vs-twin cosine over the observations of one calibration."""

    def __init__(self, bar: float = BAR):
        self.bar, self.cosines = bar, []

    def add(self, twin_chunk, fp8_chunk) -> float:
        c = cosine(twin_chunk, fp8_chunk)
        if not np.isfinite(c):
            c = -1.0     # a non-finite chunk fails the check, never passes it
        self.cosines.append(c)
        return c

    def result(self) -> dict | None:
        """{"cosine": worst, "bar", "ok", "num_observations", "advice"} (None before any observation); warns
        (FlashRTWarning) when the worst is below the bar."""
        if not self.cosines:
            return None
        worst = min(self.cosines)
        ok = worst >= self.bar
        if not ok:
            warnings.warn(f"FP8 self-check: worst cosine {worst:.5f} against the BF16-activation twin over "
                          f"{len(self.cosines)} calibration observation(s), below {self.bar:g}. {ADVICE}",
                          FlashRTWarning, stacklevel=3)
        return {"cosine": worst, "bar": self.bar, "ok": ok, "num_observations": len(self.cosines), "advice": ADVICE}
