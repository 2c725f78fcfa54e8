"""Run a test module again in a child pytest under Triton's CPU interpreter (TRITON_INTERPRET=1).

Why a child: TRITON_INTERPRET must be set before triton is imported, and another test module of the same session
may already have imported triton in compiled mode. The parent test calls `run_child(__file__)`; the child sees
CHILD_FLAG set and defines the real tests.
"""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

CHILD_FLAG = "FLASH_RT_TRITON_INTERPRET_CHILD"
IN_CHILD = os.environ.get(CHILD_FLAG) == "1"


def run_child(test_file: str, timeout: int = 1800) -> None:
    if importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed: pip install -r requirements.txt (CI installs it)")
    env = dict(os.environ, TRITON_INTERPRET="1", **{CHILD_FLAG: "1"})
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                        str(Path(test_file).resolve())], cwd=root, env=env, capture_output=True, text=True,
                       timeout=timeout)
    tail = (r.stdout[-15000:] + "\n" + r.stderr[-5000:])
    assert r.returncode == 0, "interpreter run failed:\n" + tail
    assert " passed" in r.stdout, tail
    print(r.stdout.strip().splitlines()[-1])   # the child's summary (passed / skipped counts) in the parent's log


def patch_interpreter_float_conversion() -> bool:
    """Replace the interpreter's float narrowing with torch's (round to nearest even, like cvt.rn on the GPU).
    Why: the interpreter's own conversion truncates to bf16 and rounds e4m3 half-up without carry, and its dot
    multiplies the raw bits of bf16 operands as integers (the SigLIP attention's bf16 P @ V came out ~8e8).
    Returns False where the helper is missing in this Triton version (callers then skip bf16 / fp8 cases)."""
    import numpy as np
    import torch

    try:
        import triton.runtime.interpreter as interp
    except ImportError:
        return False
    if not hasattr(interp, "_convert_float"):
        return False
    tdt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "fp64": torch.float64,
           "fp8e4nv": torch.float8_e4m3fn, "fp8e5": torch.float8_e5m2}
    uint = {8: np.uint8, 16: np.uint16, 32: np.uint32, 64: np.uint64}
    sint = {8: torch.uint8, 16: torch.int16, 32: torch.int32, 64: torch.int64}
    snp = {8: np.uint8, 16: np.int16, 32: np.int32, 64: np.int64}

    def convert(data, src_ty, dst_ty, rounding_mode):  # noqa: ARG001 (RNE, the only mode we use)
        sb, db = src_ty.primitive_bitwidth, dst_ty.primitive_bitwidth
        raw = np.ascontiguousarray(data).view(uint[sb]).view(snp[sb])
        t = torch.from_numpy(raw.copy()).view(tdt[src_ty.name]).to(tdt[dst_ty.name])
        return t.view(sint[db]).numpy().view(uint[db])

    interp._convert_float = convert
    # bf16 dot operands: numpy has no bf16, the interpreter holds their raw bits as uint16 and its dot multiplies
    # those integers (fp8 operands are widened to fp16 first); widen bf16 to fp32 (exact) the same way
    import triton.language as tl
    real_dot = interp.InterpreterBuilder.create_dot

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        def wide(t):
            if t.dtype.is_bf16():
                return interp.TensorHandle(convert(t.data, t.dtype, tl.float32, None).view(np.float32), tl.float32)
            return t
        return real_dot(self, wide(a), wide(b), d, input_precision, max_num_imprecise_acc)

    interp.InterpreterBuilder.create_dot = create_dot
    return True


def counting_kernels(name: str, calls: list):
    """The Triton catalogue (flash_rt.kernels.triton) as a namespace for Fp8Context(fused=...), with kernel `name`
    wrapped to append the shape of its out_partials to `calls` before running it: which sites a forward sent
    through a fused kernel, and with how many partials. Import only in the interpreter child."""
    import types

    from flash_rt.kernels import triton as kernels
    real = getattr(kernels, name)

    def counted(*a, out_partials, **kw):
        calls.append(tuple(out_partials.shape))
        return real(*a, out_partials=out_partials, **kw)

    names = {k: getattr(kernels, k) for k in kernels.__all__}
    return types.SimpleNamespace(**{**names, name: counted, "fused_gemm_supported": kernels.fused_gemm_supported})


def stream_stand_ins(monkeypatch, layers: int) -> tuple:
    """An `overlap` argument for the CUDA forwards on the CPU: (side stream, layers + 2 events) stand-ins whose
    records and waits do nothing, with torch.cuda.current_stream / torch.cuda.stream patched to match (streams
    cannot exist without CUDA). What a test with it checks is the overlapped schedule's order of work, not
    concurrency: the GPU suite runs two real streams."""
    import contextlib

    import torch

    class Stand:
        def record(self, stream=None):
            pass

        def wait_event(self, event):
            pass

    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a: Stand())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    return Stand(), [Stand() for _ in range(layers + 2)]


def host_inputs(host) -> dict:
    """The per-tick input buffers of a CPU policy's host IO as the tensors a GPU forward's `b` reads (the cameras,
    masks, prompt tokens, noise and, with real-time chunking, its weights and model-space prefix)."""
    import torch
    out = {k: torch.from_numpy(getattr(host, k)) for k in ("images", "image_mask", "token_ids", "token_mask",
                                                           "noise")}
    out["images_u8"] = out.pop("images")
    if host.rtc is not None:
        out.update(rtc_w=torch.from_numpy(host.rtc.w), rtc_w1=torch.from_numpy(host.rtc.w1),
                   rtc_target=torch.from_numpy(host.rtc.target))
    return out


def cpu_observation(cpu_policy, rng, views: int, state_dim: int, frozen=None) -> None:
    """One random observation through the exact CPU cell, which fills the host buffers a GPU forward reads (and
    holds the reference chunk). frozen: real-time chunking -- first a chunk of the policy's own, whose rows 2..
    (+ 0.05) become the prefix with `frozen` rows fixed, then the constrained observation."""
    from flash_rt.testing.observations import random_observation
    horizon = cpu_policy.action_horizon
    obs = random_observation(rng, views, state_dim, horizon)
    if frozen is not None:
        cpu_policy.write_action_prefix(None, 0)
        prev = cpu_policy.predict(*obs)
        cpu_policy.write_action_prefix(prev[2:] + 0.05, frozen)
        obs = random_observation(rng, views, state_dim, horizon)
    cpu_policy.predict(*obs)
    if frozen is not None:
        w = cpu_policy.frontend.host.rtc.w
        assert w[:frozen].tolist() == [1.0] * frozen and 0 < w[frozen] < 1
