"""benchmarks/critical_path.py --l2-resident: the upper bound of an L2 prefetch is measured by pointing every expert
layer at layer 0's weights (and FP8 weight scales) of the named kinds, re-capturing, and putting the originals back
afterwards. The aliasing must touch exactly those kinds of layers 1.. and restore must undo it, or the default trace
that follows would measure the wrong model."""
import importlib.util
import sys
import types
from pathlib import Path

import pytest

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed: pip install -r requirements.txt (CI installs it)", allow_module_level=True)

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import critical_path as cp  # noqa: E402


def _frontend(layers=3):
    w, ws = {}, {}
    for i in range(layers):
        for k in cp.EXPERT_WEIGHTS:
            w[f"ex.{i}.{k}"], ws[f"ex.{i}.{k}"] = torch.full((2,), float(i)), torch.full((), 10.0 + i)
        w[f"llm.{i}.qkv_w"] = torch.full((2,), -1.0)
    b = {c: torch.arange(layers * 6.0).view(layers, 1, 3, 2) for c in cp.CACHES}
    return types.SimpleNamespace(w=w, ws=ws, b=b, d=types.SimpleNamespace(layers=layers))


def test_alias_points_the_named_kinds_at_layer_0_and_restore_undoes_it():
    fe = _frontend()
    before = dict(fe.w), dict(fe.ws)
    saved = cp.alias_expert_weights(fe, ("gu_w", "down_w"))
    for i in range(3):
        for k in cp.EXPERT_WEIGHTS:
            name = f"ex.{i}.{k}"
            shared = i > 0 and k in ("gu_w", "down_w")
            assert (fe.w[name] is fe.w[f"ex.0.{k}"]) == (shared or i == 0), name
            assert (fe.ws[name] is fe.ws[f"ex.0.{k}"]) == (shared or i == 0), name
    assert all(fe.w[f"llm.{i}.qkv_w"] is before[0][f"llm.{i}.qkv_w"] for i in range(3))
    cp.restore_weights(fe, saved)
    assert all(fe.w[n] is t for n, t in before[0].items()) and all(fe.ws[n] is t for n, t in before[1].items())


def test_kv_points_every_layer_at_layer_0s_cache_rows_and_restore_undoes_it():
    fe = _frontend()
    caches = dict(fe.b)
    saved = cp.alias_expert_weights(fe, cp.resident_kinds("all+kv"))
    for c in cp.CACHES:
        assert fe.b[c].shape == caches[c].shape
        for i in range(3):   # what the forward indexes: layer i's [K, L, H] rows, all layer 0's storage
            assert fe.b[c][i].data_ptr() == caches[c][0].data_ptr() and torch.equal(fe.b[c][i], caches[c][0])
    assert all(fe.w[f"ex.2.{k}"] is fe.w[f"ex.0.{k}"] for k in cp.EXPERT_WEIGHTS)
    cp.restore_weights(fe, saved)
    assert all(fe.b[c] is caches[c] for c in cp.CACHES)
    assert fe.w["ex.2.qkv_w"] is not fe.w["ex.0.qkv_w"]


def test_resident_kinds_expand_all_and_refuse_unknown_names():
    assert cp.resident_kinds("all") == cp.EXPERT_WEIGHTS
    assert cp.resident_kinds("o_w+down_w") == ("o_w", "down_w")
    assert cp.resident_kinds("kv+qkv_w+all") == ("kv", "qkv_w", "o_w", "gu_w", "down_w")
    with pytest.raises(SystemExit, match=r"unknown \['up_w'\]"):
        cp.resident_kinds("up_w")


def test_the_comparison_lists_every_trace_with_the_first_traces_families(capsys):
    def run(p50, step, fams):
        per = {f: {"critical_us_per_step": us} for f, us in fams.items()}
        return {"replay_p50_ms": p50, "streaming_floor": {"median_step_us": step},
                "runs": [{}, {"per_step_family": per}]}
    report = {"default": run(9.9, 554.0, {"gemm_splitk_kernel": 136.0, "mqa_partial": 106.0}),
              "default, L2-resident all": run(8.1, 380.0, {"mqa_partial": 104.0, "gemm_splitk_kernel": 70.5})}
    rows = cp.comparison_rows(report)
    assert [r[0] for r in rows] == list(report) and rows[1][3]["gemm_splitk_kernel"] == 70.5
    cp.print_comparison(report)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| trace | replay P50 ms | step us | gemm_splitk_kernel | mqa_partial |"
    assert lines[-1] == "| default, L2-resident all | 8.100 | 380 | 70.5 | 104.0 |"


def test_recapture_runs_inside_the_frontends_launch_mode():
    """The bug of the first device run: a re-capture outside the frontend's launch mode dropped PDL, so every
    L2-resident trace measured the lost PDL. The capture must run inside _launch_mode (and without autograd)."""
    import contextlib
    state = {"mode": False, "seen": None}

    @contextlib.contextmanager
    def launch_mode():
        state["mode"] = True
        try:
            yield
        finally:
            state["mode"] = False

    def capture():
        state["seen"] = (state["mode"], torch.is_grad_enabled())

    cp.recapture(types.SimpleNamespace(stream=None, _launch_mode=launch_mode, _capture=capture))
    assert state["seen"] == (True, False)
