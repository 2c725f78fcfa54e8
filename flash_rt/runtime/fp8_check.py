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
# when the outlier remedy already runs every block in BF16, the twin and production differ only in the order they
# round in (fused kernels, split-K sums): the gap is the checkpoint's own sensitivity, and BF16 moves it as much.
# Measured on an H200 (plain `ex_ada` 30x, every block BF16): self-check 0.99277 / held-out 0.99122, this engine vs
# FP32 0.98824-0.98996, precision='bf16' vs FP32 0.98868-0.98963 (docs/calibration.md, "The rung with the default")
ADVICE_ALL_BF16 = ("Every block already runs in BF16 (bf16_outlier_sites found outliers in the last one), so the gap "
                   "is not FP8's: this checkpoint moves its actions this much between two BF16 rounding orders, and "
                   "precision='bf16' moves them as much. It is sensitive to rounding itself: check it against the "
                   "FP32 reference (policy.reference_chunk, or a rosbag report) before it drives a robot "
                   "(docs/calibration.md, 'FP8 self-check')")


def cosine(a, b) -> float:
    """The ladder's cosine (flash_rt/metrics.py), 1.0 for two zero chunks (identical, not unrelated)."""
    if not np.any(a) and not np.any(b):
        return 1.0
    return cosine64(a, b)


HELD_OUT_SEED = 20261205   # the held-out probe's noise: fixed, so a calibration's check is reproducible


def held_out_inputs(images: np.ndarray, noise: np.ndarray, seed: int = HELD_OUT_SEED) -> None:
    """Turn the calibrated observation into one the scales were not measured on, in place: every view mirrored
    left-right ([views, H, W, 3] uint8, what the host stages) and a new noise draw. Why these two: the scales stay
    the calibrated observation's own, while the vision activations move to other positions and the action expert's
    to another sample path -- the out-of-sample amax that clips. No second observation is needed, so the first
    tick can run it. Measured on the micro model under the interpreter (FP8 vs twin, calibrated observation ->
    mirrored with this seed's noise): plain `ex_ada` 30x 0.99882 -> 0.99486 (another noise draw: 0.99205; FP8 vs
    FP32 on later observations 0.98712-0.99618), plain `ex_ada` 100x 0.97202 -> 0.97422, no injection and matched
    30x stay at 1.00000 (test_smoothing_interpret.py); with another draw plain `up_proj` 30x 0.99999 -> 0.99544."""
    images[...] = images[:, :, ::-1].copy()
    noise[...] = np.random.default_rng(seed).standard_normal(noise.shape).astype(noise.dtype)


class Fp8Check:
    """The worst FP8-vs-twin cosine over the observations of one calibration and its held-out probe."""

    def __init__(self, bar: float = BAR, advice: str = ADVICE):
        """advice: what the warning tells the user to do (ADVICE; ADVICE_ALL_BF16 where no FP8 site is left)."""
        self.bar, self.advice, self.cosines, self.held_out = bar, advice, [], []

    def add(self, twin_chunk, fp8_chunk, held_out: bool = False) -> float:
        """One comparison: on a calibrated observation, or (held_out) on held_out_inputs of one."""
        c = cosine(twin_chunk, fp8_chunk)
        if not np.isfinite(c):
            c = -1.0     # a non-finite chunk fails the check, never passes it
        (self.held_out if held_out else self.cosines).append(c)
        return c

    def result(self) -> dict | None:
        """{"cosine": worst of all, "in_sample", "held_out" (None without the probe), "bar", "ok",
        "num_observations" (calibrated ones), "advice"} (None before any observation); warns (FlashRTWarning) when
        the worst is below the bar."""
        if not self.cosines:
            return None
        in_sample = min(self.cosines)
        held_out = min(self.held_out) if self.held_out else None
        worst = min(in_sample, held_out if held_out is not None else in_sample)
        ok = worst >= self.bar
        if not ok:
            where = (f"{in_sample:.5f} on the {len(self.cosines)} calibration observation(s)"
                     + (f", {held_out:.5f} on the held-out probe (mirrored views, new noise)"
                        if held_out is not None else ""))
            warnings.warn(f"FP8 self-check: worst cosine {worst:.5f} against the BF16-activation twin ({where}), "
                          f"below {self.bar:g}. {self.advice}", FlashRTWarning, stacklevel=3)
        return {"cosine": worst, "in_sample": in_sample, "held_out": held_out, "bar": self.bar, "ok": ok,
                "num_observations": len(self.cosines), "advice": self.advice}
