"""The step flow every frontend offers (Policy forwards to these), written once.

A frontend brings `host` (the family host IO: images, prompt, state, noise, the output stage), `latency`
(LatencyRecorder), `startup` (StartupPhases) and `_run_model()` (one inference on the host's buffers); this mixin
turns them into set_prompt / step / warmup / predict. Pi0.5's base, Pi0's CPU cell and the template all inherit it,
so an integrator's copy of the template writes `_run_model` and nothing of the flow (a GPU frontend overrides
`warmup` to capture without calibrating, and calls this one).
"""
from __future__ import annotations

import time

import numpy as np


class StepFlow:
    def set_prompt(self, prompt) -> float:
        """Tokenize and install a prompt; seconds it took (never inside a tick)."""
        t0 = time.perf_counter()
        self.host.apply_prompt(self.host.prepare_prompt(prompt))
        return time.perf_counter() - t0

    def step(self, noise=None, record: bool = True) -> np.ndarray:
        """One inference on the buffers as they are; the host's preallocated output (policy space)."""
        t0 = time.perf_counter()
        self.host.prepare_step(noise)
        self._run_model()
        out = self.host.finish_step()
        if record:
            self.latency.add((time.perf_counter() - t0) * 1e3)
        return out

    def warmup(self, steps: int = 1, noise=None) -> None:
        """Run `steps` inferences on whatever is in the buffers (e.g. black frames) so every kernel is
        compiled / every graph captured before the first real tick. Not recorded in latency stats."""
        with self.startup.timed("warmup", f"{steps} step(s) on placeholder inputs"):
            for _ in range(steps):
                self.step(noise, record=False)

    def predict(self, images, state=None, prompt=None, noise=None) -> np.ndarray:
        """Write one observation, step, and return a copy of the chunk."""
        self.host.write_images(images)
        if state is not None:
            self.host.write_state(state)
        if prompt is not None:
            self.set_prompt(prompt)
        return self.step(noise).copy()
