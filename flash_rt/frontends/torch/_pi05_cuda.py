"""Pi05CudaFrontend: Pi0.5 on any CUDA target -- FP8 weights + activations, the whole forward as one CUDA graph.

The (pi05, torch, <gpu>) cells (pi05_hopper.py, pi05_thor.py, pi05_rtx.py) are thin subclasses that name what is
theirs: the hardware key, the tuning table (hardware/<hw>/tuning.py), the compute file (models/pi05/pipeline_<hw>.py)
and their option defaults. Everything else is here, once, on the model-agnostic GPU runtime (flash_rt/runtime/):

Load: refuse early when the GPU cannot hold the engine (runtime/memory.py); weights go through the declarative
spec on the GPU (FP8 quantization there), or come from the weight cache (how they and the device buffers are laid
out: _pi05_cuda_storage.py; the FP8 outlier remedies: _pi05_cuda_outliers.py). Buffers: every device buffer is
allocated once; host inputs/outputs are pinned (runtime/host_io.py), staged by async copies or, with zero_copy_io
(unified memory), read by the graph in place. Calibration: amax per site from the BF16 twin on real observations
(the first step's observation by default, or `calibrate(observations)`), cached as JSON keyed by checkpoint hash +
shapes (runtime/fp8_scales.py). Capture: after calibration the whole forward (SigLIP x views -> projector -> prefix
+ KV -> unrolled expert steps) is captured once per prompt-length bucket (models/pi05/prompt_buckets.py: 64, 128
and max_token_len slots by default; `prompt_buckets=False`: once); each step is H2D -> replay of the smallest bucket
that holds its tokens -> D2H ->
one stream sync. Scales, prompts, masks and state tokens live in device tensors, so recalibrating or changing the
prompt never recaptures.
"""
from __future__ import annotations

import importlib
import time

import numpy as np
import torch

from flash_rt.calibration import calibration_path
from flash_rt.errors import HardwareError, InputError
from flash_rt.executors.weight_cache import WeightCache, cache_root, checkpoint_hash
from flash_rt.frontends.torch._pi05_base import Pi05TorchFrontendBase
from flash_rt.frontends.torch._pi05_cuda_outliers import OutlierRemedies
from flash_rt.frontends.torch._pi05_cuda_storage import (build_weights, device_buffers, unpack_weights,
                                                         weight_spec_tag)
from flash_rt.hardware import check_triton_for_device
from flash_rt.models.pi05.attention_sites import pi05_attention_spec
from flash_rt.models.pi05.dims import Pi05Dims
from flash_rt.models.pi05.prompt_buckets import LAYOUTS, Bucket, PromptBuckets, bucket_slots, build_buckets
from flash_rt.runtime import options
from flash_rt.runtime.fp8_check import Fp8Check, held_out_inputs
from flash_rt.runtime.fp8_scales import ActivationScales, percentile_update
from flash_rt.runtime.graph import capture_graph, kernel_nodes
from flash_rt.runtime.host_io import PinnedHostBuffers
from flash_rt.runtime.memory import require_free_memory
from flash_rt.runtime.quant import FP8, Bf16Context, CalibContext, Fp8Context
from flash_rt.runtime.smoothing import SmoothingPlan
from flash_rt.runtime.tuning import GpuTuning

_GB = 1e9


class Pi05CudaFrontend(OutlierRemedies, Pi05TorchFrontendBase):
    """A cell sets: hardware (its _PIPELINE_MAP key), tuning (GpuTuning), pipeline (the import path of its compute
    file, a module with forward and quant_sites; imported when buffers are built, so a machine without CUDA or
    Triton gets the clear "needs a CUDA GPU" error, not an ImportError) and option_defaults ({fast_accum,
    transposed_gemms, overlap_first_step}: measured per target, or the conservative choice where unmeasured; each
    cell's docstring says which)."""
    hardware = "?"
    tuning: GpuTuning
    pipeline: str
    option_defaults: dict = {}
    # capture with the graphs' structure kept (runtime/graph.py), so kernel_count() can read it: set before the first
    # step (benchmarks/latency.py --count-kernels); host memory only
    graph_debug = False
    # the weight builders of this module, as the outlier remedies (_pi05_cuda_outliers.py) call them
    _build_weights = staticmethod(build_weights)
    _unpack_weights = staticmethod(unpack_weights)

    def __init__(self, checkpoint, *, precision: str = "fp8", use_graph: bool = True,
                 calibration_percentile: float | None = None, fast_accum=None,
                 fused_expert_gemms=("rope_qkv", "geglu", "splitk"), programmatic_launch: bool | None = None,
                 overlap_first_step: bool | None = None, attention_tiles: dict | None = None,
                 gemm_tiles: dict | None = None, transposed_gemms=None, fused_flow_boundary: bool = True,
                 zero_copy_io: bool | None = None, smoothing: float | bool | None = None,
                 smoothing_min_ratio: float | None = None, bf16_outlier_sites: bool | str | None = None,
                 outlier_min_ratio: float | None = None, prompt_buckets=None, prompt_bucket_layout: str = "exact",
                 device: str = "cuda", **kw):
        if not torch.cuda.is_available():
            raise HardwareError(
                f"hardware={self.hardware!r} ({type(self).__name__}) needs a CUDA GPU, and torch sees none "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). On this machine use "
                "hardware='cpu' (ROS: hardware:=cpu or config/pi05_cpu.yaml), or install a CUDA build of torch.")
        check_triton_for_device(self.hardware, self.tuning)
        if precision not in ("fp8", "bf16"):
            raise InputError(f"precision must be 'fp8' or 'bf16', got {precision!r}")
        self.precision, self.use_graph, self.device = precision, use_graph, torch.device(device)
        self.default_percentile = calibration_percentile
        # FP8 smoothing (runtime/smoothing.py): alpha of s = max|X|^a / max|W|^(1-a); True = alpha 0.5; None, False,
        # 0 = off. Off by default: measured, it does not rescue E4M3 from outlier channels (docs/calibration.md)
        self._init_outlier_remedies(smoothing, smoothing_min_ratio, bf16_outlier_sites, outlier_min_ratio,
                                    precision)
        d = self.option_defaults
        # cuBLASLt FP8 fast accumulation: True (every GEMM), False (none) or weight-name suffixes
        self.fast_accum = options.fast_accum(d.get("fast_accum", False) if fast_accum is None else fast_accum)
        # prefix GEMMs (weight-name suffixes) that run as the transposed problem W @ act.T (runtime/quant.linear)
        self.transposed_gemms = options.weight_suffixes(
            "transposed_gemms", d.get("transposed_gemms", ()) if transposed_gemms is None else transposed_gemms,
            {"down_w", "o_w", "gu_w"})
        # expert GEMMs with their epilogue in one kernel: "rope_qkv" (qkv + RoPE + KV write), "geglu" (gate+up +
        # GeGLU + FP8) and "splitk" (o and down as split-K partials that the next norm sums)
        self.fused_expert_gemms = options.fused_ops(fused_expert_gemms)
        # the seam between two flow steps (final norm, action_out + Euler, action_in, next layer-0 norm) as one kernel
        self.fused_flow_boundary = bool(fused_flow_boundary)
        # programmatic dependent launch for the Triton kernels (kernels/triton/launch.py); sm90 and newer only
        self.programmatic_launch = bool(self.tuning.pdl if programmatic_launch is None else programmatic_launch)
        if self.programmatic_launch and not self.tuning.pdl:
            raise InputError(f"programmatic_launch: {self.hardware} (sm{self.tuning.arch}) has no programmatic "
                             "dependent launch (sm90 and newer); leave it unset or pass False")
        # flow step 0 on a second stream beside the prefix, layer by layer (bit-identical; cuda_forward.py)
        self.overlap_first_step = bool(d.get("overlap_first_step", False) if overlap_first_step is None
                                       else overlap_first_step)
        # the graph reads the pinned host inputs in place and writes the output there (runtime/host_io.py)
        self.zero_copy_io = bool(self.tuning.unified_memory if zero_copy_io is None else zero_copy_io)
        # {attention site: tile overrides} and {fused GEMM: tile overrides}, for A/B runs; checked against the
        # target's limits here, before anything compiles
        self.attention_tiles = dict(attention_tiles or {})
        self.tuned = self.tuning.with_gemm_overrides(gemm_tiles)
        # prompt-length buckets (models/pi05/prompt_buckets.py): slot counts (None, the default, or True: 64 and 128;
        # False / (): off; max_token_len is always the last) and the expert's key layout ("exact": bit-identical to
        # the full length). On by default since their H200 run (eleventh session): a 68-token prompt at openpi's 200
        # slots replays in 0.967 of the one-graph time, the same bits, 13.5 MiB more (docs/benchmarks.md)
        if prompt_bucket_layout not in LAYOUTS:
            raise InputError(f"prompt_bucket_layout must be one of {LAYOUTS}; got {prompt_bucket_layout!r}")
        self._bucket_option, self.prompt_bucket_layout = prompt_buckets, prompt_bucket_layout
        self.pinned = PinnedHostBuffers()
        self.stream = torch.cuda.Stream(self.device)
        self.graph = None
        self.calibrated = precision == "bf16"
        self.calibration_info: dict = {}
        self._warming = self._twin_compiled = False
        super().__init__(checkpoint, **kw)
        if "buckets" not in self.__dict__:   # a subclass with buffers of its own (Pi0): the full length only
            if self._bucket_option not in (None, False, ()):   # None: the default, which Pi0 has not
                raise InputError(f"prompt_buckets: {type(self).__name__} has no prompt-length buckets (Pi0.5's "
                                 "cells have); leave it unset")
            self.buckets = PromptBuckets([Bucket(self.d.max_tokens, self.d, self.b, self.attn)])

    # -- host buffers: pinned, so H2D/D2H are async DMA (or no copy at all with zero_copy_io) -----------------
    def _host_alloc(self, shape, dtype) -> np.ndarray:
        return self.pinned.alloc(shape, dtype)

    def _pin(self, a: np.ndarray) -> torch.Tensor:
        return self.pinned.pinned(a)

    # -- weights -----------------------------------------------------------------------------------------
    def _device_bytes_needed(self) -> int:
        """Weights as this target stores them (GEMM weights 1 byte in fp8 / 2 in bf16, the embedding and biases
        bf16, vectors fp32) plus activations, KV cache and cuBLASLt / CUDA-graph workspaces (~1.5 GB measured
        beside the weights at full size: 4.3 GB engine memory for 2.8 GB of weights, H100)."""
        shapes = self.source.key_shapes()
        gemm_bytes = 1 if self.precision == "fp8" else 2
        total = 0
        for key, shape in shapes.items():
            n = int(np.prod(shape))
            total += n * (4 if len(shape) == 1 else 2 if "embed" in key or "lm_head" in key else gemm_bytes)
        return total + int(1.5 * _GB)

    def _checkpoint_hash(self) -> str:
        """The weight and calibration caches' checkpoint key: every byte of every shard, remembered per file identity
        next to the weight cache (executors/checkpoint_hash.py). The jax cells hash the Orbax params files."""
        return checkpoint_hash(self.checkpoint, index_root=cache_root(self._weights_root))

    def _load_weights(self) -> str:
        require_free_memory(self._device_bytes_needed(), self.device, hardware=self.hardware,
                            unified=self.tuning.unified_memory)
        self._weights_root = None if self.cache_dir is None else f"{self.cache_dir}/weights"
        self.ckpt_hash = self._checkpoint_hash()
        self._load_outlier_remedies()
        flat = self._get_weights(self.smoothing or {})
        status = "weight cache off" if self.weight_cache_status == "off" else f"weight cache {self.weight_cache_status}"
        self.w, self.ws, self._w_scale_store, self.mods, self.dt = unpack_weights(
            flat, self.cfg, self.precision, self.device, norm_weights=bool(self.smooth_alpha))
        if self.bf16_groups:
            self._use_bf16_at(self.bf16_groups)
        sm = self._outlier_remedies_note()
        return f"{self.precision}, {status}{sm}"

    def _get_weights(self, factors: dict) -> dict:
        """The flat weights with `factors` folded in: from the weight cache (keyed by their digest too) or built."""
        build = lambda: build_weights(self.checkpoint, self.cfg, self.precision, self.device,  # noqa: E731
                                      open_source=self.open_source, smoothing=factors)
        if not self.weight_cache:
            self.weight_cache_status = "off"
            return build()
        meta = {"ckpt_hash": self.ckpt_hash, "num_views": 0,
                "spec_tag": weight_spec_tag(self.hardware, self.precision, SmoothingPlan(self.cfg, factors).digest())}
        flat, self.weight_cache_status = WeightCache(self._weights_root).get_or_build(meta, build,
                                                                                       device=str(self.device))
        return flat

    # -- buffers -----------------------------------------------------------------------------------------
    def dims(self) -> Pi05Dims:
        return Pi05Dims.of(self.cfg, self.num_views, len(self.mods), self.dt, align=16,  # 16-aligned key lengths
                           realtime_chunking=self.realtime_chunking)

    def _alloc_buffers(self) -> None:
        c, h, dev = self.cfg, self.host, self.device
        self.d = d = self.dims()
        from flash_rt.runtime.attention import TritonAttnBackend
        self._pipeline = importlib.import_module(self.pipeline)
        b = device_buffers(c, d, self.tuning.split_k, dev, self.mods)
        # per-tick inputs: the graph's own device buffers (staged) or the pinned host buffers themselves (zero copy)
        inputs = {"images_u8": h.images, "image_mask": h.image_mask, "token_ids": h.token_ids,
                  "token_mask": h.token_mask, "noise": h.noise}
        if h.rtc is not None:   # real-time chunking: weights and model-space prefix, written by the host per tick
            inputs.update(rtc_w=h.rtc.w, rtc_w1=h.rtc.w1, rtc_target=h.rtc.target)
        self._bind_host_inputs(inputs, b, dev)
        self.b = b

        def make_attn(dims, split_like=None):
            return TritonAttnBackend(pi05_attention_spec(c, dims), dev, self.tuning, self.attention_tiles, split_like)

        self.attn = make_attn(d)
        slots = bucket_slots(self._bucket_option, d.max_tokens, d.image_tokens, 16)
        self.buckets = build_buckets(d, b, self.attn, slots, 16, make_attn, self.prompt_bucket_layout)
        self._overlap = ((torch.cuda.Stream(dev), [torch.cuda.Event() for _ in range(c.layers + 2)])
                         if self.overlap_first_step else None)
        self._production_context(d, b, h, dev, self.fused_flow_boundary, self._bf16_sites)

    def _production_context(self, d, b, h, dev, flow_boundary: bool, bf16_sites) -> None:
        """The activation scales of the sites of `d`, the production context of this build (FP8 with the target's
        tuning, or BF16) and the output binding: the end of every GPU cell's _alloc_buffers (Pi0's too)."""
        self.scales = ActivationScales(self._pipeline.quant_sites(d), dev)
        # the names the GPU suite and benchmarks read
        self.act_scales, self.amax = self.scales.scales, self.scales.amax
        if self.precision == "fp8":
            from flash_rt.kernels import triton as kernels
            self.q_prod = Fp8Context(self.w, self.ws, self.scales.site_scale, tuning=self.tuned,
                                     fast_accum=self.fast_accum, fused=kernels, fused_ops=self.fused_expert_gemms,
                                     transposed=self.transposed_gemms, flow_boundary=flow_boundary,
                                     bf16_sites=bf16_sites)
            self._amax_update = kernels.amax_update
            self._scratch_numel = max(v.numel() for v in self.w.values() if v.dtype == FP8)
        else:
            self.q_prod = Bf16Context(self.w)
        self._out = (b["x_t"], self._pin(h.model_out))
        self._done = torch.cuda.Event()

    # -- running -----------------------------------------------------------------------------------------
    def _bind_host_inputs(self, inputs: dict, b: dict, dev) -> None:
        """The per-tick host arrays `inputs` (name -> pinned array) become device buffers b[name]: aliases the graph
        reads in place (zero_copy_io, unified memory), or device copies staged before each replay (self._io); the
        output likewise (self._out_alias, or a copy back after the replay)."""
        if self.zero_copy_io:
            for name, arr in inputs.items():
                b[name] = self.pinned.device_alias(arr, dev)
            self._io = []
            self._out_alias = self.pinned.device_alias(self.host.model_out, dev)
        else:
            for name, arr in inputs.items():
                b[name] = torch.zeros(arr.shape, dtype=self._pin(arr).dtype, device=dev)
            self._io = [(self._pin(arr), b[name]) for name, arr in inputs.items()]
            self._out_alias = None

    def _upload(self) -> None:
        for src, dst in self._io:
            dst.copy_(src, non_blocking=True)

    def _forward(self, q, bucket=None) -> None:
        """One forward at a prompt-length bucket (None: the full length, what calibration runs)."""
        bk = bucket or self.buckets.full
        overlap = self._overlap if q is self.q_prod else None  # never the calibration twin (shared scratch)
        self._pipeline.forward(self.w, bk.b, bk.d, bk.attn, q, overlap)
        if self._out_alias is not None:
            self._out_alias.copy_(self.b["x_t"])   # inside the graph: the chunk lands in host memory directly

    def _launch_mode(self):
        from flash_rt.kernels.triton.launch import programmatic_dependent_launch
        return programmatic_dependent_launch(self.programmatic_launch)

    @torch.no_grad()
    def _run_model(self) -> None:
        with torch.cuda.stream(self.stream), self._launch_mode():
            if not self.calibrated:
                self._calibrate_first()
            if self.use_graph and self.graph is None:
                self._capture()
            self._upload()
            bk = self.buckets.select(self.host.n_tokens)   # this step's tokens, state included; captures nothing
            if self.graph is not None:
                bk.graph.replay()
            else:
                self._forward(self.q_prod, bk)
            if self._out_alias is None:
                self._out[1].copy_(self._out[0], non_blocking=True)
            self._done.record(self.stream)
        self._done.synchronize()

    def _calibrate_first(self) -> None:
        """Scales from the cache, else (warm-up) compile the twin without keeping scales, else calibrate on this
        (real) observation once; the cache serves later starts."""
        t0 = time.perf_counter()
        path = calibration_path(self.ckpt_hash, self.shape_key(), self.cache_dir)
        pending = ((bool(self.smooth_alpha) and self.smoothing is None)          # smoothing first, then scales
                   or (self.bf16_outliers and self.bf16_groups is None))
        if not pending and self.scales.load_cached(path, self.ckpt_hash, self.shape_key()):
            self.calibrated = True
            self.calibration_info = {"source": "cache", "path": str(path)}
            self.startup.add("calibration", time.perf_counter() - t0, "FP8 scales from the calibration cache")
            return
        self._upload()
        if self._warming:   # placeholders: compile the calibration twin now (once), keep no scales
            if self._twin_compiled:
                return
            self._compile_calibration_twin()
            self._twin_compiled = True
            self.startup.add("compile_calibration", time.perf_counter() - t0,
                             "calibration twin compiled on placeholders; calibrates on the first real tick")
            return
        if pending and self.bf16_outliers:
            self._measure_outlier_sites([self._upload], self.default_percentile)
            path = calibration_path(self.ckpt_hash, self.shape_key(), self.cache_dir)
        elif pending:
            self._measure_smoothing([self._upload], self.default_percentile)
            path = calibration_path(self.ckpt_hash, self.shape_key(), self.cache_dir)   # the smoothed weights' key
        check = self._fp8_check()
        self._calibrate_on_buffers(self.default_percentile, check=check)
        self._held_out_check(check, self.default_percentile)
        result = check.result()
        self._save(path, 1, self.default_percentile, result)
        self.startup.add("calibration", time.perf_counter() - t0, "FP8 scales from the first real observation; "
                         f"self-check: FP8 vs its twin {result['in_sample']:.5f}, held-out probe "
                         f"{result['held_out']:.5f} (bar {result['bar']:g})")

    def replay_only(self, slots: int | None = None) -> None:
        """Graph replay without host I/O (benchmarks): the bucket of `slots` prompt slots, or (None) the one the last
        step replayed."""
        bk = self.buckets.active if slots is None else self.buckets.bucket(slots)
        with torch.cuda.stream(self.stream):
            bk.graph.replay()

    def kernel_count(self, slots: int | None = None) -> dict:
        """{node type: count} of a bucket's graph (KERNEL: kernels per replay); needs graph_debug set before capture."""
        if not self.graph_debug or self.graph is None:
            raise InputError("kernel_count needs the graphs captured with graph_debug = True: set "
                             "policy.frontend.graph_debug = True before the first step")
        bk = self.buckets.active if slots is None else self.buckets.bucket(slots)
        return dict(kernel_nodes(bk.graph))

    def _capture(self) -> None:
        t0 = time.perf_counter()
        for bk in self.buckets.buckets:
            for _ in range(2):  # compile every Triton specialization and let cuBLASLt pick its kernels
                self._forward(self.q_prod, bk)
        self.stream.synchronize()
        t1 = time.perf_counter()
        self.buckets.capture(lambda bk: capture_graph(lambda: self._forward(self.q_prod, bk), self.stream,
                                                      debug=self.graph_debug))
        self.graph = self.buckets.full.graph
        n = len(self.buckets.slots)
        self.startup.add("compile", t1 - t0, f"two eager forwards per prompt bucket ({n}): Triton compiles, "
                                             "cuBLASLt picks its kernels")
        self.startup.add("capture", time.perf_counter() - t1,
                         f"the whole forward as one CUDA graph per prompt bucket, slots {list(self.buckets.slots)} "
                         f"({self.prompt_bucket_layout} layout, {self.buckets.extra_bytes() / 2**20:.1f} MiB "
                         "of device memory beside the full length)")

    # -- calibration -------------------------------------------------------------------------------------
    def shape_key(self) -> str:
        d, sq = self.d, self._smoothing_digest()
        bh = self._outlier_key()
        return (f"pi05-{self.hardware}-{self.precision}-v{d.num_views}-h{d.horizon}-s{d.num_steps}-t{d.max_tokens}"
                + (f"-sq{sq}" if sq else "") + (f"-bh{bh}" if bh else ""))

    def warmup(self, steps: int = 1, noise=None) -> None:
        """Compile and capture on placeholder inputs WITHOUT calibrating on them (black warm-up frames would
        give useless FP8 scales): a cached calibration is used if there is one, else the first real step
        calibrates. Scales are data in the captured graph, so nothing is recaptured then."""
        self._warming = True
        try:
            super().warmup(steps, noise)
        finally:
            self._warming = False

    def _set_scales(self, amax) -> None:
        self.scales.set_from_amax(amax)
        self.calibrated = True

    @torch.no_grad()
    def _calibrate_on_buffers(self, percentile: float | None, reset: bool = True,
                              check: Fp8Check | None = None) -> None:
        """Accumulate this observation's amax into the scales; with `check`, then run production FP8 on the same
        buffers and add its chunk against the twin's to the self-check (runtime/fp8_check.py: one eager forward)."""
        if reset:
            self.amax.zero_()
        self._run_calibration_twin(percentile)
        self._set_scales(None)
        if check is not None:
            twin = self._out[0].float().cpu().numpy()
            self._forward(self.q_prod)
            check.add(twin, self._out[0].float().cpu().numpy())

    @torch.no_grad()
    def _held_out_check(self, check: Fp8Check, percentile: float | None) -> None:
        """The self-check's held-out probe: the last calibrated observation with its views mirrored and a new noise
        draw (runtime/fp8_check.held_out_inputs), twin against production FP8 on the scales just set. Why: on its
        own observation FP8 is at its best and the in-sample check missed both full-size failures (plain `llm_norm`
        / `vis_ln` 30x: 0.99973 / 0.99675 in-sample, 0.992 / 0.993 against FP32 later). The host arrays and the
        amax are restored, so the tick (or the next one) runs on the real observation and the scales stay the
        calibrated ones. Cost: one twin and one eager forward, at calibration only."""
        h = self.host
        images, noise, amax = h.images.copy(), h.noise.copy(), self.amax.clone()
        try:
            held_out_inputs(h.images, h.noise)
            self._upload()
            self._run_calibration_twin(percentile)   # the calibration's own kernels; its amax is discarded below
            twin = self._out[0].float().cpu().numpy()   # (a synchronizing copy: the inputs were read by now)
            self._forward(self.q_prod)
            check.add(twin, self._out[0].float().cpu().numpy(), held_out=True)
        finally:
            h.images[...] = images
            h.noise[...] = noise
            self.amax.copy_(amax)
            self._upload()

    def _run_calibration_twin(self, percentile: float | None, channels=None) -> None:
        """One forward of the bf16 twin over the input buffers, accumulating amax per site (and, with `channels`,
        per-channel maxima for the smoothing factors)."""
        scratch = torch.empty(self._scratch_numel, dtype=torch.bfloat16, device=self.device)
        upd = self._amax_update if percentile is None else percentile_update(percentile)
        self._forward(CalibContext(self.w, self.ws, self.scales.site_amax, upd, scratch, channels))
        del scratch

    @torch.no_grad()
    def _compile_calibration_twin(self) -> None:
        """Run the calibration twin once on the warm-up placeholders and discard what it measured. Why: its
        Triton kernels (bf16 outputs, amax) are other specializations than production's; left to the first real
        tick, with a cold Triton cache, they made that tick 2.9 s instead of ~60 ms (H100, the GPU rosbag test,
        2026-11-27)."""
        self._run_calibration_twin(self.default_percentile)
        self.amax.zero_()

    def _save(self, path, n_obs, percentile, fp8_check: dict | None = None) -> None:
        self.scales.save(path, self.ckpt_hash, self.shape_key(), n_obs, percentile)
        self.calibration_info = {"source": "calibrated", "path": str(path), "num_observations": n_obs,
                                 "percentile": percentile, "smoothing": self._smoothing_digest(),
                                 "fp8_check": fp8_check}

    def calibrate(self, observations=None, percentile: float | None = None, resmooth: bool = False) -> dict:
        """Recompute FP8 scales from `observations` (list of dicts with images, state, prompt) or, if None,
        from the observation currently in the input buffers. Updates the captured graph's scales in place
        and rewrites the JSON cache. Returns {"path", "num_observations", "percentile", "smoothing", "fp8_check"}:
        the last is the FP8 self-check over these observations (runtime/fp8_check.py; a FlashRTWarning below its
        bar).

        Smoothing (runtime/smoothing.py) is KEPT: the factors folded into the weights stay, only the per-tensor
        scales are measured again (on the smoothed model). `resmooth=True` measures the factors again on these
        observations first, rebuilds the weights with them (in place, no recapture) and rewrites the factors file;
        where no factors exist yet (calibrate() before the first step), they are measured whatever resmooth says."""
        if self.precision != "fp8":
            raise NotImplementedError("precision='bf16' has no FP8 scales to calibrate")
        obs = list(observations or [None])
        if percentile is not None and not 0 < percentile <= 100:
            raise InputError(f"percentile must be in (0, 100], got {percentile}")
        fills = [lambda o=o: self._fill_observation(o) for o in obs]
        # the same launch mode as the first-step calibration, so the twin's compiled kernels are reused: a
        # different mode is a different compile (seconds with a cold Triton cache, inside a ~/calibrate call)
        with torch.no_grad(), torch.cuda.stream(self.stream), self._launch_mode():
            if self.smooth_alpha and (resmooth or self.smoothing is None):
                self._measure_smoothing(fills, percentile)
            if self.bf16_outliers and self.bf16_groups is None:   # before any step: the next step recaptures
                self._measure_outlier_sites(fills, percentile)
            self.amax.zero_()
            check = self._fp8_check()
            for fill in fills:
                fill()
                self._calibrate_on_buffers(percentile, reset=False, check=check)
            self._held_out_check(check, percentile)
        self.stream.synchronize()
        path = calibration_path(self.ckpt_hash, self.shape_key(), self.cache_dir)
        self._save(path, len(obs), percentile, check.result())
        return dict(self.calibration_info)

    def _fill_observation(self, o) -> None:
        """Write one calibrate() observation (or, for None, keep the current one) into the input buffers."""
        if o is not None:
            self.host.write_images(o["images"])
            if o.get("state") is not None:
                self.host.write_state(o["state"])
            if o.get("prompt") is not None:
                self.set_prompt(o["prompt"])
        self.host.prepare_step(o.get("noise") if o else None)
        self._upload()
