"""A latency model of one Pi0.5 forward per robot target: a PREDICTION, not a measurement.

Why: users run the engine on a Jetson AGX Thor (sm110) or an RTX 5090 (sm120), and we can measure only on
Hopper. So we list the kernels one forward launches (models/pi05/cuda_forward.py, phase by phase: SigLIP x views
-> projector -> Gemma prefix with K/V -> num_steps expert steps; a test checks the list against the launches of
the real forward), each with its FLOPs and the bytes it must move at the least (weights read once per call,
activations in and out, the KV cache read by attention), and price each on a target:

    time(kernel) = max(DRAM bytes / (bandwidth * bw_fraction), flops / (mma_rate * efficiency)) + node cost

summed per phase. Three estimates, each an assumption stated where it is made:
  * predicted: activations that fit in half the L2 stay there (dram_bytes);
  * activations at DRAM: every activation byte goes to DRAM too;
  * with H100 floors: every expert kernel at least as slow as its family measured on an H100 (H100_FLOORS_US).
    The H100's small expert kernels are latency-bound at 2-6 us a call, two to five times their roofline, and
    nothing suggests a Thor or a 5090 runs them faster. It is calibrated on the H100: no independent check there.
Every number of a target stands in TARGETS with its source; datasheet and third-party figures are marked as leads.
The model is checked against the H100 measurements (H100_MEASURED, docs/benchmarks.md) and docs/hardware.md
reports its error there, so readers know how far to trust the Thor and RTX predictions. Nothing is tuned per target
to hit the original system's published numbers (PUBLISHED): they are shown beside.

    python3 benchmarks/latency_model.py --target thor --views 1 2 3 --horizon 10 50 [--per-kernel]
    python3 benchmarks/latency_model.py --markdown        # the tables docs/hardware.md quotes
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flash_rt.kernels.tiles import mqa_key_split  # noqa: E402
from flash_rt.models.pi05.config import Pi05Config  # noqa: E402
from flash_rt.models.pi05.dims import Pi05Dims  # noqa: E402

MAX_TOKEN_LEN = 64  # benchmarks/latency.py's default prompt slots: what a user measures with it
PHASES = ("siglip", "prefix", "expert", "overlap")


@dataclass(frozen=True)
class Target:
    """One machine: bandwidth in B/s (bw_fraction of it reachable), dense MMA rates in FLOP/s, L2 in bytes, node_s
    in seconds per graph node. hardware names the tuning table (flash_rt/hardware/<hw>/tuning.py: SM count, split-K,
    attention tiles, hence the kernel list); overlap_first_step is the cell's option default
    (frontends/torch/pi05_<hw>.py). A test checks both against the code."""
    name: str
    hardware: str
    label: str
    bandwidth: float
    bw_fraction: float
    fp8_rate: float
    bf16_rate: float
    l2_bytes: float
    node_s: float
    overlap_first_step: bool
    sources: dict
    leads: tuple = ()          # fields that are datasheet or third-party figures, not measured by us
    pdl_hidden: float = 0.0    # share of the node cost PDL hides: an assumption, 0 unless asked (--pdl-hidden)

    @property
    def tuning(self):
        package = {"rtx_sm120": "rtx"}.get(self.hardware, self.hardware)
        return importlib.import_module(f"flash_rt.hardware.{package}.tuning").TUNING


_DATASHEET = ("bandwidth", "fp8_rate", "bf16_rate", "l2_bytes")
_H100 = dict(
    hardware="hopper", fp8_rate=1979e12, bf16_rate=989e12, l2_bytes=50e6, node_s=0.87e-6, overlap_first_step=True,
    bw_fraction=0.90, leads=_DATASHEET,
    sources={"bandwidth": "H100 SXM5 80GB HBM3 datasheet: 3.35 TB/s",
             "bw_fraction": "0.90: the H200's measured copy, ~4.3 of 4.8 TB/s, assumed on the H100 too",
             "fp8_rate": "datasheet: 3,958 TFLOP/s with sparsity = 1,979 dense (~990 is the BF16 figure; cuBLASLt "
                         "ran the prefix gate+up at 1,166 TF/s, h100_roofline.md)",
             "bf16_rate": "datasheet: 989 TFLOP/s dense", "l2_bytes": "datasheet: 50 MB",
             "node_s": "measured: a kernel boundary costs 0.87 us with PDL (benchmarks/critical_path.py)"})
TARGETS = {t.name: t for t in (
    Target(name="hopper_h100", label="H100 SXM (sm90)", bandwidth=3.35e12, **_H100),
    Target(name="hopper_h200", label="H200 SXM (sm90)", bandwidth=4.8e12,
           **{**_H100, "sources": {**_H100["sources"], "bandwidth": "H200 datasheet: 4.8 TB/s HBM3e",
                                   "bw_fraction": "0.90: its measured copy, ~4.3 TB/s",
                                   "fp8_rate": "the H100's (same GH100 compute)", "node_s": "the H100's"}}),
    Target(name="thor", hardware="thor", label="Jetson AGX Thor (sm110)", bandwidth=273e9, bw_fraction=0.73,
           fp8_rate=517e12, bf16_rate=258e12, l2_bytes=32 * 2**20, node_s=3.0e-6, overlap_first_step=False,
           leads=_DATASHEET + ("bw_fraction", "node_s"),
           sources={"bandwidth": "datasheet: 273 GB/s LPDDR5X, shared with the CPU",
                    "bw_fraction": "0.73: the original system's decoder GEMMs reach ~200 GB/s (thor_rtx_facts.md)",
                    "fp8_rate": "datasheet: ~1,035 TFLOP/s FP8 with sparsity = ~517 dense",
                    "bf16_rate": "half the FP8 rate, as on the other Blackwell parts (not published for Thor)",
                    "l2_bytes": "32 MiB (thor_rtx_facts.md)",
                    "node_s": "the original system's Thor figure: ~3 us per graph node"}),
    Target(name="rtx_sm120", hardware="rtx_sm120", label="RTX 5090 (sm120)", bandwidth=1.792e12, bw_fraction=0.90,
           fp8_rate=419e12, bf16_rate=419e12, l2_bytes=96e6, node_s=1.0e-6, overlap_first_step=True,
           leads=_DATASHEET + ("bw_fraction", "node_s"),
           sources={"bandwidth": "datasheet: 1,792 GB/s GDDR7", "bw_fraction": "0.90: assumed, as the H200's copy",
                    "fp8_rate": "the 838 TFLOP/s dense figure is FP8 with FP16 accumulate; e4m3 with fp32 "
                                "accumulate (ours and cuBLASLt's) is half, 419 (a third-party mmapeak run on a "
                                "5090 measured 370; block-scaled MXFP8 ran at twice that)",
                    "bf16_rate": "taken equal to FP8 with fp32 accumulate: the same third-party run measured "
                                 "both at 370", "l2_bytes": "96 MB",
                    "node_s": "assumed ~1 us, like a discrete Hopper (no measurement)"}),
)}

# Share of the MMA rate a kernel family reaches, measured on an H100 and assumed on every target (no other source).
EFFICIENCY = {
    "gemm": (0.59, "cuBLASLt FP8 prefix gate+up at 1,166 of 1,979 TF/s (h100_roofline.md)"),
    "attention": (0.12, "Triton prefix attention at ~120 of 989 TF/s BF16, as cuDNN (docs/benchmarks.md)"),
}

# Median critical-path time of one call per expert kernel family, H100, 2 views, horizon 50, PDL on, node cost
# included (benchmarks/critical_path.py, docs/benchmarks.md, fifth session): the floor of the `floors` estimate.
H100_FLOORS_US = {"qkv_rope": 5.31, "geglu": 5.50, "splitk": 3.82, "attention": 5.70, "merge": 2.30,
                  "norm": 1.89, "seam": 7.8}

# What we measured on an H100 80GB HBM3, FP8, 10 steps, max_token_len 64: replay P50 in ms per (views, horizon)
# (docs/benchmarks.md, fifth session, full matrix, machine K), and the 2-view horizon-50 critical path (machine L).
H100_MEASURED = {(1, 10): 8.07, (1, 50): 8.48, (2, 10): 9.55, (2, 50): 9.86, (3, 10): 11.44, (3, 50): 12.04}
H100_STEP_MS = 0.553          # expert steps 1-9, 549-557 us each
H100_PREFIX_MS = 4.93         # SigLIP + prefix + the overlapped step 0

# The original system's own numbers on its own boards (FlashRT README), horizon 10, views -> ms. Not ours.
PUBLISHED = {
    "thor": ({1: 36.5, 2: 44.0, 3: 54.8}, "FlashRT FP8 torch on a Jetson AGX Thor (38.7 ms at 2 views in a later "
                                          "session)"),
    "rtx_sm120": ({1: 14.48, 2: 17.58, 3: 20.00}, "FlashRT FP8 on an RTX 5090, graph replay P50 (wall 15.9 / 19.6 / "
                                                  "23.2 ms)"),
}


@dataclass(frozen=True)
class Kernel:
    """One kernel site of the forward, launched `count` times; per launch: flops, `weights` (bytes of what lives
    across kernels: weights, the decoder's KV cache, the flow modulations -- always read from DRAM), `acts` (bytes
    of the activations it reads and writes, in L2 or DRAM, see kernel_seconds) and `params` (parameters read).
    mma: "fp8", "bf16" or None (no tensor-core work: priced by its bytes); family: the EFFICIENCY key; floor:
    the H100_FLOORS_US key (expert kernels only)."""
    name: str
    phase: str
    count: int
    flops: float
    weights: float
    acts: float
    params: int = 0
    mma: str | None = None
    family: str = "gemm"
    floor: str | None = None


def gemm(name, phase, count, m, k, n, *, w=1, x=1, out=2, bias=0, mma="fp8", floor=None, out_elems=None):
    """y[m, n] = x[m, k] @ W[n, k].T: W read once (w bytes a weight, FP8 = 1), x read (x bytes an element), y
    written (out bytes an element; out_elems for split-K partials or a fused epilogue's smaller output)."""
    out_elems = m * n if out_elems is None else out_elems
    return Kernel(name, phase, count, 2.0 * m * k * n, n * k * w + n * bias, m * k * x + out_elems * out,
                  n * k + (n if bias else 0), mma, "gemm", floor)


def rows(name, phase, count, acts, weights=0, params=0, floor=None):
    """A kernel with no tensor-core work (norms, activations, copies): its bytes alone set its time."""
    return Kernel(name, phase, count, 0.0, weights, acts, params, None, "gemm", floor)


def mqa(name, phase, count, heads, q_rows, keys, hd, splits, *, kv_cached: bool, floor=None):
    """MQA attention (one K/V head for `heads` query heads) and its merge pass when the keys are split. kv_cached:
    the K/V were written long before (the decoder re-reads the prefix cache every step), so they come from DRAM;
    the prefix's own attention reads the K/V its rope kernel has just written."""
    r = heads * q_rows
    kv, part, out = 2 * keys * hd * 2 + keys * 2, splits * r * (hd + 2) * 4, q_rows * heads * hd
    acts = r * hd * 2 + (part if splits > 1 else out) + (0 if kv_cached else kv)
    sites = [Kernel(name, phase, count, 4.0 * r * keys * hd, kv if kv_cached else 0, acts, 0, "bf16", "attention",
                    floor)]
    if splits > 1:
        sites.append(rows(name + ".merge", phase, count, part + out, floor=floor and "merge"))
    return sites


def key_splits(rows_: int, keys: int, tiles) -> int:
    """The key splits of one MQA site: kernels/tiles.mqa_key_split, the rule MqaWorkspace uses."""
    return mqa_key_split(rows_, keys, tiles)[0]


def siglip_kernels(c: Pi05Config, d: Pi05Dims) -> list[Kernel]:
    """vision_forward: uint8 upload, patch GEMM, 27 pre-LN layers on all views' patches at once, projector."""
    M, D, F, L, ph = d.image_tokens, c.vis_width, c.vis_mlp, c.vis_layers, "siglip"
    patch = 3 * c.patch_size ** 2
    return [
        rows("vis.u8_to_model", ph, 1, d.num_views * c.image_size ** 2 * 3 * (1 + 2)),
        rows("vis.im2col", ph, 1, M * patch * 2 * 2),
        gemm("vis.patch", ph, 1, M, patch, D, w=2, x=2, mma="bf16"),
        rows("vis.pos_add", ph, 1, M * D * (2 + 4), c.num_patches * D * 4, params=c.num_patches * D),
        rows("vis.layer_norm", ph, 2 * L + 1, M * D * (4 + 2 + 4 + 1), 2 * D * 4, params=2 * D),
        gemm("vis.qkv", ph, L, M, D, 3 * D, bias=2),
        Kernel("vis.attention", ph, L, 4.0 * M * c.num_patches * D, 0, M * 3 * D * 2 + M * D, 0, "bf16", "attention"),
        gemm("vis.o", ph, L, M, D, D, bias=2),
        gemm("vis.fc1", ph, L, M, D, F, bias=2),
        rows("vis.gelu", ph, L, M * F * (2 + 1)),
        gemm("vis.fc2", ph, L, M, F, D, bias=2),
        gemm("vis.projector", ph, 1, M, D, c.width, bias=2),
        rows("vis.to_residual", ph, 1, M * c.width * (2 + 4)),
    ]


def prefix_kernels(c: Pi05Config, d: Pi05Dims, tuning) -> list[Kernel]:
    """embed_prompt + prefix_forward: the prompt rows, then 18 Gemma layers over the P prefix rows; the last layer
    only writes its K/V (the expert reads nothing else of it), so it has no attention, o or MLP."""
    P, T, D, F, L, hd, ph = d.prefix_len, d.max_tokens, c.width, c.mlp, c.layers, c.head_dim, "prefix"
    qkv = (c.heads + 2 * c.kv_heads) * hd
    attn_rows = c.heads * P
    splits = key_splits(attn_rows, P, tuning.attention_tiles(attn_rows))
    return [
        rows("embed.gather", ph, 1, T * D * 2, T * D * 2),   # embedding rows: not counted as parameters
        rows("embed.scale", ph, 1, T * D * (2 + 4)),
        rows("embed.masks", ph, 4, P * 8),   # two mask copies, the key bias, the positions
        rows("llm.rms_norm", ph, 1, P * D * (4 + 1)),
        rows("llm.add_rms_norm", ph, 2 * L - 2, P * D * (4 + 2 + 4 + 1)),
        gemm("llm.qkv", ph, L, P, D, qkv),
        rows("llm.rope_kv_write", ph, L, P * qkv * 2 * 2),
        *mqa("llm.attention", ph, L - 1, c.heads, P, P, hd, splits, kv_cached=False),
        gemm("llm.o", ph, L - 1, P, c.heads * hd, D),
        gemm("llm.gate_up", ph, L - 1, P, D, 2 * F),
        rows("llm.geglu", ph, L - 1, P * F * (2 * 2 + 1)),
        gemm("llm.down", ph, L - 1, P, F, D),
    ]


def expert_kernels(c: Pi05Config, d: Pi05Dims, tuning) -> list[Kernel]:
    """num_steps unrolled flow steps of the action expert on `horizon` rows, FP8 weights read once a step: fused
    qkv + RoPE + KV write, attention over the prefix keys and its own, split-K o / down summed by the next gated
    adaRMS norm, fused gate+up + GeGLU, and one seam kernel between steps (final norm, action_out + Euler step,
    action_in, next layer-0 norm). The step phase also holds the forward's first op (x_t <- noise) and, on
    unified memory, its last (the chunk written to the host)."""
    S, D, F, L, hd, n, ph = d.horizon, c.ex_width, c.ex_mlp, c.layers, c.head_dim, d.num_steps, "expert"
    qkv, sk, A = (c.heads + 2 * c.kv_heads) * hd, tuning.split_k, c.action_dim
    attn_rows = c.heads * S
    splits = key_splits(attn_rows, d.kv_len, tuning.attention_tiles(attn_rows))
    a_in, a_out = A * D + D, A * D + A  # action_in / action_out parameters, fp32
    norm, mods = S * D * (4 + sk * 4 + 4 + 1), 3 * D * 4   # x in/out, the partials, FP8 out; gate/scale/shift
    seam = norm + S * A * 4 * 2                            # + x_t in and out
    return [
        rows("ex.noise_to_x_t", ph, 1, S * A * 4 * 2),
        rows("ex.action_in", ph, 1, S * (A + D) * 4, a_in * 4, params=a_in),
        rows("ex.begin_norm", ph, 1, S * D * (4 + 1), 2 * D * 4),
        gemm("ex.qkv_rope", ph, n * L, S, D, qkv, floor="qkv_rope"),
        *mqa("ex.attention", ph, n * L, c.heads, S, d.kv_len, hd, splits, kv_cached=True, floor="attention"),
        gemm("ex.o_splitk", ph, n * L, S, c.heads * hd, D, out=4, out_elems=sk * S * D, floor="splitk"),
        rows("ex.gated_norm", ph, n * (2 * L - 1), norm, mods, floor="norm"),
        gemm("ex.gate_up_geglu", ph, n * L, S, D, 2 * F, out=1, out_elems=S * F, floor="geglu"),
        gemm("ex.down_splitk", ph, n * L, S, F, D, out=4, out_elems=sk * S * D, floor="splitk"),
        rows("ex.seam", ph, n - 1, seam, 5 * D * 4 + (a_in + a_out) * 4, params=a_in + a_out, floor="seam"),
        rows("ex.seam_last", ph, 1, seam, 3 * D * 4 + a_out * 4, params=a_out, floor="seam"),  # no next step
        # unified memory (zero_copy_io): the graph itself writes the chunk into the host's buffer
        *([rows("io.chunk_to_host", ph, 1, S * A * 4 * 2)] if tuning.unified_memory else []),
    ]


def forward_kernels(target: Target, views: int, horizon: int, *, cfg: Pi05Config | None = None,
                    max_token_len: int = MAX_TOKEN_LEN, num_steps: int = 10) -> list[Kernel]:
    """Every kernel site of one forward on `target` (its tuning table decides the attention key splits)."""
    c = (cfg or Pi05Config()).with_overrides(action_horizon=horizon, max_token_len=max_token_len)
    d = Pi05Dims.of(c, views, num_steps, dt=-1.0 / num_steps, align=16)
    t = target.tuning
    return siglip_kernels(c, d) + prefix_kernels(c, d, t) + expert_kernels(c, d, t)


def dram_bytes(k: Kernel, target: Target, l2: bool = True) -> float:
    """Bytes one launch of k moves to or from DRAM. Assumption (l2=True): activations of a kernel that fit in half
    the target's L2 stay there between producer and consumer (L2 is write-back; the next kernel reads them at
    once). Weights, the decoder's KV cache and the modulations always come from DRAM (read once a call)."""
    return k.weights + (k.acts if not l2 or k.acts > target.l2_bytes / 2 else 0.0)


def kernel_seconds(k: Kernel, target: Target, *, floors: bool = False, l2: bool = True) -> float:
    """One launch of k on target: the slower of its DRAM bytes and its MMA work, plus the graph node cost; with
    floors, at least what its expert kernel family took on an H100 (H100_FLOORS_US, node cost included)."""
    rate = {"fp8": target.fp8_rate, "bf16": target.bf16_rate}.get(k.mma)
    compute = k.flops / (rate * EFFICIENCY[k.family][0]) if rate else 0.0
    memory = dram_bytes(k, target, l2) / (target.bandwidth * target.bw_fraction)
    t = max(memory, compute) + target.node_s * (1 - target.pdl_hidden)
    if floors and k.floor:
        t = max(t, H100_FLOORS_US[k.floor] * 1e-6)
    return t


@dataclass(frozen=True)
class Prediction:
    target: str
    views: int
    horizon: int
    seconds: dict      # phase -> s; "overlap" is minus the flow step 0 hidden beside the prefix (cells with the option)
    kernels: dict      # phase -> launches per forward
    dram: dict         # phase -> (weight bytes, activation bytes at DRAM) per forward

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def predict(target: Target, views: int, horizon: int, *, floors: bool = False, l2: bool = True,
            **kw) -> Prediction:
    """Per-phase seconds of one forward (kw: cfg, max_token_len, num_steps). With the target's overlap_first_step,
    flow step 0 runs beside the prefix on a second stream; it is taken as fully hidden (assumption; on an H100 it
    saved ~0.6 ms, about one step)."""
    sec, count, dram = ({p: 0.0 for p in PHASES}, {p: 0 for p in PHASES}, {p: (0.0, 0.0) for p in PHASES})
    for k in forward_kernels(target, views, horizon, **kw):
        sec[k.phase] += k.count * kernel_seconds(k, target, floors=floors, l2=l2)
        count[k.phase] += k.count
        w, a = dram[k.phase]
        dram[k.phase] = (w + k.count * k.weights, a + k.count * (dram_bytes(k, target, l2) - k.weights))
    if target.overlap_first_step:  # one step's share of the expert phase
        sec["overlap"] = -min(sec["expert"] / kw.get("num_steps", 10), sec["prefix"])
    return Prediction(target.name, views, horizon, sec, count, dram)


# -- printing ---------------------------------------------------------------------------------------------------

def _ms(s: float) -> str:
    return f"{s * 1e3:.2f}"


def prediction_table(target: Target, views, horizons, **kw) -> list[str]:
    """Per (views, horizon): launches and seconds per phase, the three estimates, the published number."""
    pub = PUBLISHED.get(target.hardware, ({}, ""))[0]
    lines = ["| views | horizon | kernels (SigLIP / prefix / expert) | SigLIP ms | prefix ms | expert ms | "
             "step 0 hidden ms | **predicted ms** | activations at DRAM ms | with H100 floors ms | "
             "published (h10) ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in views:
        for h in horizons:
            p = predict(target, v, h, **kw)
            dram, floors = predict(target, v, h, l2=False, **kw), predict(target, v, h, floors=True, **kw)
            s, n = p.seconds, p.kernels
            published = f"{pub[v]:.2f}" if h == 10 and v in pub else "-"
            hidden = _ms(-s["overlap"]) if s["overlap"] else "-"
            lines.append(f"| {v} | {h} | {sum(n.values())} ({n['siglip']} / {n['prefix']} / {n['expert']}) | "
                         f"{_ms(s['siglip'])} | {_ms(s['prefix'])} | {_ms(s['expert'])} | {hidden} | "
                         f"**{_ms(p.total)}** | {_ms(dram.total)} | {_ms(floors.total)} | {published} |")
    return lines


def traffic_line(target: Target, views: int = 2, horizon: int = 10, **kw) -> str:
    p = predict(target, views, horizon, **kw)
    w, a = (sum(x[i] for x in p.dram.values()) / 1e9 for i in (0, 1))
    return (f"{views} views, horizon {horizon}: {w:.2f} GB of weights (+ KV cache, modulations) and {a:.2f} GB of "
            f"activations that do not fit half the L2 move to and from DRAM per forward.")


def per_kernel_table(target: Target, views: int, horizon: int, **kw) -> list[str]:
    lines = ["| kernel | phase | launches | DRAM MB a launch | GFLOP a launch | us a launch | bound | ms in all |",
             "|---|---|---|---|---|---|---|---|"]
    for k in forward_kernels(target, views, horizon, **kw):
        t, mb = kernel_seconds(k, target), dram_bytes(k, target)
        memory = mb / (target.bandwidth * target.bw_fraction)
        compute = kernel_seconds(dataclasses.replace(k, weights=0, acts=0), target) - target.node_s * (
            1 - target.pdl_hidden)
        bound = "node" if max(memory, compute) < target.node_s else ("memory" if memory >= compute else "compute")
        lines.append(f"| {k.name} | {k.phase} | {k.count} | {mb / 1e6:.3f} | {k.flops / 1e9:.3f} | "
                     f"{t * 1e6:.2f} | {bound} | {_ms(k.count * t)} |")
    return lines


def calibration_rows(**kw) -> list[tuple[str, float, float, float, float]]:
    """(what, measured ms, predicted, activations at DRAM, with H100 floors) for every H100 measurement."""
    h100, steps = TARGETS["hopper_h100"], kw.get("num_steps", 10)
    out = []
    for (v, h), meas in H100_MEASURED.items():
        out.append((f"{v} view{'s' if v > 1 else ''}, horizon {h}", meas,
                    *(predict(h100, v, h, **kw, **o).total * 1e3 for o in ({}, {"l2": False}, {"floors": True}))))
    ps = [predict(h100, 2, 50, **kw, **o) for o in ({}, {"l2": False}, {"floors": True})]
    out.append(("2 views h50: one expert step", H100_STEP_MS, *(p.seconds["expert"] / steps * 1e3 for p in ps)))
    out.append(("2 views h50: SigLIP + prefix + step 0", H100_PREFIX_MS,
                *((p.total - p.seconds["expert"] * (steps - 1) / steps) * 1e3 for p in ps)))
    return out


def calibration_table(**kw) -> list[str]:
    """The model against the H100 measurements: error = predicted / measured - 1."""
    lines = ["| H100, FP8 | measured ms | predicted ms | error | activations at DRAM ms | error | "
             "with H100 floors ms | error |", "|---|---|---|---|---|---|---|---|"]
    for what, meas, *pred in calibration_rows(**kw):
        lines.append(f"| {what} | {meas:.2f} | " + " | ".join(f"{x:.2f} | {x / meas - 1:+.0%}" for x in pred) + " |")
    return lines


def targets_table() -> list[str]:
    lines = ["| target | SMs | bandwidth | reachable | FP8 dense | BF16 dense | L2 | graph node | step 0 beside "
             "the prefix |", "|---|---|---|---|---|---|---|---|---|"]
    for t in TARGETS.values():
        def lead(field, text):
            return text + ("*" if field in t.leads else "")
        lines.append(f"| {t.name} ({t.label}) | {t.tuning.sm_count} | "
                     f"{lead('bandwidth', f'{t.bandwidth / 1e9:,.0f} GB/s')} | "
                     f"{lead('bw_fraction', f'{t.bw_fraction:.2f}')} | "
                     f"{lead('fp8_rate', f'{t.fp8_rate / 1e12:,.0f} TF/s')} | "
                     f"{lead('bf16_rate', f'{t.bf16_rate / 1e12:,.0f} TF/s')} | "
                     f"{lead('l2_bytes', f'{t.l2_bytes / 1e6:.0f} MB')} | {lead('node_s', f'{t.node_s * 1e6:.2f} us')}"
                     f" | {'yes' if t.overlap_first_step else 'no'} |")
    lines += ["", "\\* a lead (datasheet, third-party or original-system figure), not measured by us. Sources:", ""]
    lines += [f"- **{t.name}**: " + "; ".join(f"{k}: {v}" for k, v in t.sources.items()) for t in TARGETS.values()]
    lines.append("- **every target**, the share of the MMA rate a kernel family reaches (measured on an H100, "
                 "assumed elsewhere): " + "; ".join(f"{k} {v:.2f}, {s}" for k, (v, s) in EFFICIENCY.items()))
    lines.append("- **with H100 floors**: each expert kernel at least as slow as its family's median call on the H100 "
                 "critical path (us): " + ", ".join(f"{k} {v}" for k, v in H100_FLOORS_US.items()))
    return lines


def markdown(**kw) -> str:
    """The tables docs/hardware.md quotes (generated; paste them after a change to the model or the pipeline)."""
    out = ["#### Parameters", "", *targets_table(), "", "#### The model against the H100 measurements", "",
           *calibration_table(**kw)]
    for name in ("thor", "rtx_sm120", "hopper_h200", "hopper_h100"):
        t = TARGETS[name]
        out += ["", f"#### {t.name}: {t.label}, PREDICTED", "", *prediction_table(t, (1, 2, 3), (10, 50), **kw), "",
                traffic_line(t, **kw)]
        if t.hardware in PUBLISHED:
            out += ["", f"Published (not ours): {PUBLISHED[t.hardware][1]}."]
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", nargs="+", choices=sorted(TARGETS), default=["thor"])
    ap.add_argument("--views", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--horizon", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--max-token-len", type=int, default=MAX_TOKEN_LEN)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--per-kernel", action="store_true", help="every kernel site of each (views, horizon)")
    ap.add_argument("--pdl-hidden", type=float, default=None,
                    help="assume PDL hides this share of every graph node's cost (default 0)")
    ap.add_argument("--markdown", action="store_true", help="the tables docs/hardware.md quotes")
    args = ap.parse_args(argv)
    kw = dict(max_token_len=args.max_token_len, num_steps=args.steps)
    if args.pdl_hidden is not None:
        for name in list(TARGETS):
            TARGETS[name] = dataclasses.replace(TARGETS[name], pdl_hidden=args.pdl_hidden)
    if args.markdown:
        print(markdown(**kw), end="")
        return
    for name in args.target:
        t = TARGETS[name]
        print(f"\n{t.name}: {t.label} -- PREDICTED by benchmarks/latency_model.py, not measured "
              f"(max_token_len {args.max_token_len}, {args.steps} steps)\n")
        print("\n".join(prediction_table(t, args.views, args.horizon, **kw)))
        if args.per_kernel:
            for v in args.views:
                for h in args.horizon:
                    print(f"\n{t.name}, {v} view(s), horizon {h}, roofline per kernel:\n")
                    print("\n".join(per_kernel_table(t, v, h, **kw)))


if __name__ == "__main__":
    main()
