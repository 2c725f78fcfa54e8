"""The FP8 self-check's held-out probe on the micro model under Triton's interpreter (CPU, ~2.5 min): per injected
kind at 30x, FP8 against its calibration twin and against the exact FP32 CPU path, on the calibrated observation
and on three held-out variants -- the same observation with new noise, mirrored views with new noise (what
runtime/fp8_check.held_out_inputs does, with another draw), and a new observation. The numbers in
docs/calibration.md ("FP8 self-check") come from this script.

    TRITON_INTERPRET=1 FLASH_RT_TRITON_INTERPRET_CHILD=1 python3 benchmarks/held_out_probe_micro.py

It reuses the interpreter rig of test/unit/test_smoothing_interpret.py (the GPU forward on CPU tensors fed by the
exact CPU policy's host buffers), so what it measures is what that test gates.
"""
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "test" / "unit"), str(ROOT / "test"), str(ROOT)]
KINDS = [(None, 1.0), ("ex_ada:matched", 30.0), ("ex_ada", 30.0), ("llm_norm", 30.0), ("vis_ln", 30.0),
         ("up_proj", 30.0)]


def main() -> int:
    if os.environ.get("TRITON_INTERPRET") != "1" or os.environ.get("FLASH_RT_TRITON_INTERPRET_CHILD") != "1":
        print("run with TRITON_INTERPRET=1 FLASH_RT_TRITON_INTERPRET_CHILD=1 (the interpreter rig)", file=sys.stderr)
        return 2
    import test_smoothing_interpret as rig_mod
    from flash_rt.models.pi05.oracle import cosine64
    from flash_rt.testing import TINY_STATE_DIM, build_tiny_checkpoint
    from flash_rt.testing.observations import random_observation
    from flash_rt.testing.outliers import inject_checkpoint
    tmp = Path(tempfile.mkdtemp())
    micro = build_tiny_checkpoint(tmp / "micro", layout="openpi", cfg=rig_mod.MICRO)
    for kind, scale in KINDS:
        ck = micro if kind is None else inject_checkpoint(micro, tmp / f"k_{kind}".replace(":", "_"), kind, scale,
                                                          rig_mod.MICRO, n=2)
        rig = rig_mod.Rig(ck)
        rng = np.random.default_rng(11)
        horizon = rig.cfg.action_horizon

        def run(o):
            rig.cpu.predict(*o)
            return rig.cpu.frontend.host.model_out.copy(), rig.weights("fp8")
        obs = random_observation(rng, rig_mod.VIEWS, TINY_STATE_DIM, horizon)
        want, (w, ws, b, d, attn) = run(obs)
        scales = rig.twin(w, ws, b, d, attn)
        twin = b["x_t"].numpy().copy()
        fp8 = rig.fp8(w, ws, b, d, attn, scales)
        row = [f"calibrated: twin {cosine64(twin, fp8):.5f} fp32 {cosine64(want, fp8):.5f}"]
        images, state, prompt, noise = obs
        variants = {"new noise": (images, state, prompt, rng.standard_normal(noise.shape).astype(noise.dtype)),
                    "mirrored + new noise": ([None if im is None else im[:, ::-1].copy() for im in images], state,
                                             prompt, rng.standard_normal(noise.shape).astype(noise.dtype)),
                    "new observation": random_observation(rng, rig_mod.VIEWS, TINY_STATE_DIM, horizon)}
        for name, o in variants.items():
            want2, (w, ws, b, d, attn) = run(o)
            fp8b = rig.fp8(w, ws, b, d, attn, scales)   # the calibrated observation's scales
            rig.twin(w, ws, b, d, attn)
            row.append(f"{name}: twin {cosine64(b['x_t'].numpy(), fp8b):.5f} fp32 {cosine64(want2, fp8b):.5f}")
        print(f"{kind or 'none'} {scale:g}x | " + " | ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
