"""Pi05TorchFrontendHopper: Pi0.5 on H100/H200 (sm90), FP8 weights + activations, one CUDA graph per forward.

Load: weights go through the declarative spec on the GPU (FP8 quantization there), or come from the weight
cache. Buffers: every device buffer is allocated here once; host inputs/outputs are pinned. Calibration:
amax per site from the BF16 twin on real observations (the first step's observation by default, or
`calibrate(observations)`), cached as JSON keyed by checkpoint hash + shapes. Capture: after calibration
the whole forward (SigLIP x views -> projector -> prefix + KV -> unrolled expert steps) is captured once;
each step is H2D (pinned, async) -> replay -> D2H (pinned) -> one stream sync. Scales, prompts, masks and
state tokens live in device tensors, so recalibrating or changing the prompt never recaptures.
"""
from __future__ import annotations

import math
import types
import warnings

import numpy as np
import torch

from flash_rt.calibration import calibration_path, load_calibration, save_calibration, scales_from_amax
from flash_rt.errors import CacheError, HardwareError, InputError
from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.executors.weight_cache import WeightCache, checkpoint_hash
from flash_rt.executors.weight_loader import WeightLoader
from flash_rt.frontends.torch._pi05_base import Pi05TorchFrontendBase
from flash_rt.frontends.torch._pi05_hopper_spec import build_spec, gemm_names
from flash_rt.hardware.cuda_graph import capture_graph
from flash_rt.hardware.hopper.attn_backend import make_pi05_hopper_attention
from flash_rt.hardware.hopper.shared_primitives import FP8, Bf16Context, CalibContext, Fp8Context, aligned_scalars
from flash_rt.kernels import triton as kernels
from flash_rt.kernels.triton import gemm_fused
from flash_rt.kernels.triton.launch import programmatic_dependent_launch
from flash_rt.kernels.triton.misc import LinearFlowWorkspace
from flash_rt.models.pi05 import pipeline_hopper
from flash_rt.models.pi05.flow import flow_schedule, precompute_modulation

_NP_TO_TORCH = {np.uint8: torch.uint8, np.bool_: torch.bool, np.int64: torch.int64, np.float32: torch.float32,
                np.float64: torch.float64}


SPLIT_K = 4  # K ranges of the expert's o / down GEMMs when "splitk" is on: 32 column tiles x 4 = 128 programs


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _suffixes(option: str, value, allowed: set) -> tuple:
    """A tuple of weight-name suffixes from `allowed`, or InputError naming the option and what it takes."""
    if isinstance(value, str) or not all(isinstance(x, str) and x in allowed for x in tuple(value or ())):
        raise InputError(f"{option}: expected a tuple of weight-name suffixes from {sorted(allowed)}; got {value!r}")
    return tuple(value or ())


class Pi05TorchFrontendHopper(Pi05TorchFrontendBase):
    hardware = "hopper"

    def __init__(self, checkpoint, *, precision: str = "fp8", use_graph: bool = True,
                 calibration_percentile: float | None = None, fast_accum=("gu_w",),
                 fused_expert_gemms=("rope_qkv", "geglu", "splitk"), programmatic_launch: bool = True,
                 overlap_first_step: bool = True, attention_tiles: dict | None = None,
                 gemm_tiles: dict | None = None, transposed_gemms=("down_w",), fused_flow_boundary: bool = True,
                 device: str = "cuda",
                 **kw):
        if not torch.cuda.is_available():
            raise HardwareError("Pi05TorchFrontendHopper needs a CUDA GPU; use hardware='cpu' on this machine")
        self.precision, self.use_graph, self.device = precision, use_graph, torch.device(device)
        self.default_percentile = calibration_percentile
        # cuBLASLt FP8 fast accumulation: True (every GEMM), False (none) or weight-name suffixes. Default: the
        # prefix gate+up GEMMs only (K = 2048, the shortest sums): 75 -> 64 us a call, ~0.15 ms a replay, same worst
        # cosine (0.99749 vs 0.99743, H100, docs/benchmarks.md); the K = 16384 down GEMM stays exact
        if not isinstance(fast_accum, bool):
            fast_accum = tuple(fast_accum)
            if not all(isinstance(x, str) and x for x in fast_accum):
                raise InputError(f"fast_accum: expected True, False or weight-name suffixes like ('gu_w',); got "
                                 f"{fast_accum!r}")
        self.fast_accum = fast_accum
        # prefix GEMMs (weight-name suffixes: "down_w", "o_w", "gu_w") run as the transposed problem W @ act.T,
        # which cuBLASLt tiles better at M = 576: down 48.0 -> 37.0 us a call (H100, docs/benchmarks.md); the next
        # norm or geglu reads the transposed result (kernels/triton/norms.py, activations.py). o and gate+up measured
        # no gain in the model (10.14 vs 10.11 ms, 10.06 vs 10.05 ms), so down alone is the default
        self.transposed_gemms = _suffixes("transposed_gemms", transposed_gemms, {"down_w", "o_w", "gu_w"})
        # expert GEMMs run with their epilogue in one kernel: "rope_qkv" (qkv + RoPE + KV write), "geglu"
        # (gate+up + GeGLU + FP8) and "splitk" (o and down as split-K partials that the next norm sums), so the
        # whole expert layer is Triton kernels. True = all three, False/() = none (cuBLASLt + separate kernels).
        # docs/benchmarks.md has the A/B runs behind every default here.
        if fused_expert_gemms is True:
            fused_expert_gemms = ("rope_qkv", "geglu", "splitk")
        self.fused_expert_gemms = tuple(fused_expert_gemms or ())
        unknown = set(self.fused_expert_gemms) - {"rope_qkv", "geglu", "splitk"}
        if unknown:
            raise InputError(f"fused_expert_gemms: unknown {sorted(unknown)}; expected any of 'rope_qkv', "
                             "'geglu', 'splitk'")
        # the seam between two flow steps (final norm, action_out + Euler step, action_in, next layer-0 norm) as
        # one kernel instead of four (kernels/triton/flow_boundary.py)
        self.fused_flow_boundary = bool(fused_flow_boundary)
        # programmatic dependent launch for the Triton kernels (kernels/triton/launch.py): each is launched while
        # its predecessor runs and waits on the device, hiding launch latency between the ~2,000 kernels
        self.programmatic_launch = bool(programmatic_launch)
        # flow step 0 of the expert on a second stream beside the prefix, layer by layer (production graph only;
        # pipeline_hopper.prefix_with_first_step); bit-identical to running it after the prefix
        self.overlap_first_step = bool(overlap_first_step)
        # {attention site: MqaWorkspace overrides} for A/B runs (benchmarks/latency.py variants)
        self.attention_tiles = dict(attention_tiles or {})
        # {fused expert GEMM: FusedGemmConfig overrides} for A/B runs, e.g. {"geglu": {"tma": False}}
        self.gemm_tiles = {}
        for op, over in dict(gemm_tiles or {}).items():
            if op not in gemm_fused.DEFAULTS:
                raise InputError(f"gemm_tiles: unknown GEMM {op!r}; expected any of {sorted(gemm_fused.DEFAULTS)}")
            try:
                self.gemm_tiles[op] = gemm_fused.DEFAULTS[op].with_overrides(**dict(over))
            except (TypeError, ValueError) as e:
                raise InputError(f"gemm_tiles[{op!r}]: {e}") from None
        self._pinned: dict[int, torch.Tensor] = {}
        self.stream = torch.cuda.Stream(self.device)
        self.graph = None
        self.calibrated = precision == "bf16"
        self.calibration_info: dict = {}
        self._warming = False
        super().__init__(checkpoint, **kw)

    # -- host buffers: pinned, so H2D/D2H are async DMA ----------------------------------------------
    def _host_alloc(self, shape, dtype) -> np.ndarray:
        t = torch.zeros(shape, dtype=_NP_TO_TORCH[np.dtype(dtype).type], pin_memory=True)
        a = t.numpy()
        self._pinned[a.__array_interface__["data"][0]] = t
        return a

    def _pin(self, a: np.ndarray) -> torch.Tensor:
        return self._pinned[a.__array_interface__["data"][0]]

    # -- weights -----------------------------------------------------------------------------------
    def _build_weights(self) -> dict:
        src = open_checkpoint(self.checkpoint, device=str(self.device))
        target = types.SimpleNamespace(w={})
        WeightLoader(build_spec(self.cfg, self.precision), src).run(target)
        flat = {f"w.{k}": v for k, v in target.w.items()}
        for _, grp, _ in gemm_names(self.cfg) if self.precision == "fp8" else []:
            flat.setdefault(f"s.{grp}", getattr(target, grp))
        return flat

    def _load_weights(self) -> None:
        self.ckpt_hash = checkpoint_hash(self.source.files[0])
        self.weight_cache_status = "off"
        if self.weight_cache:
            meta = {"ckpt_hash": self.ckpt_hash, "spec_tag": f"pi05-hopper-{self.precision}-v1",
                    "num_views": 0}
            root = None if self.cache_dir is None else f"{self.cache_dir}/weights"
            cache = WeightCache(root)
            flat, self.weight_cache_status = cache.get_or_build(meta, self._build_weights, device=str(self.device))
        else:
            flat = self._build_weights()
        flat = {k: v.to(self.device) for k, v in flat.items()}
        self.w = {k[2:]: v for k, v in flat.items() if k.startswith("w.")}
        self.ws = {}
        if self.precision == "fp8":
            names = gemm_names(self.cfg)
            self._w_scale_store, views = aligned_scalars(len(names), self.device)
            for (name, grp, i), view in zip(names, views):
                view.copy_(flat[f"s.{grp}"][0 if i is None else i])
                self.ws[name] = view
        c, w = self.cfg, self.w
        w["patch_w"] = w["patch_w"].reshape(c.vis_width, -1).contiguous()
        w["pos_emb_b"] = (w.pop("pos_emb") + w.pop("patch_b")).contiguous()
        w["action_out_rows"] = w["action_out_w"].t().contiguous()   # [A, D], as the flow_boundary kernel reads it
        times, self.dt = flow_schedule(c.num_steps)
        self.mods = precompute_modulation(w, c, times).to(self.device)
        for k in [k for k in w if ".ada" in k or k.startswith(("time_", "ex_final"))]:
            del w[k]  # only needed for the precompute (~0.5 GB fp32 at full size)

    # -- buffers -----------------------------------------------------------------------------------
    def dims(self) -> dict:
        c, nv = self.cfg, self.num_views
        n_img = nv * c.num_patches
        P = _round_up(n_img + c.max_token_len, 16)  # 16-aligned key length for the attention kernels
        S = c.action_horizon
        return dict(num_views=nv, num_patches=c.num_patches, vis_width=c.vis_width, vis_heads=c.vis_heads,
                    vis_layers=c.vis_layers, patch_size=c.patch_size, layers=c.layers, prefix_len=P,
                    max_tokens=c.max_token_len, horizon=S, kv_len=_round_up(P + S, 16),
                    num_steps=len(self.mods), rms_eps=c.rms_eps, ln_eps=c.ln_eps, rope_theta=c.rope_theta,
                    dt=self.dt, embed_scale=math.sqrt(c.width))

    def _alloc_buffers(self) -> None:
        c, nv, h, dev = self.cfg, self.num_views, self.host, self.device
        self.d = d = self.dims()
        P, S, L = d["prefix_len"], d["horizon"], d["kv_len"]
        n_img, qn, kvn = nv * c.num_patches, c.heads * c.head_dim, c.kv_heads * c.head_dim

        def z(*shape, dtype=torch.bfloat16):
            return torch.zeros(*shape, dtype=dtype, device=dev)

        f32, bf = torch.float32, torch.bfloat16
        b = {
            "images_u8": z(*h.images.shape, dtype=torch.uint8), "image_mask": z(nv, dtype=torch.bool),
            "token_ids": z(c.max_token_len, dtype=torch.int64), "token_mask": z(c.max_token_len, dtype=torch.bool),
            "noise": z(S, c.action_dim, dtype=f32), "x_t": z(S, c.action_dim, dtype=f32),
            "img": z(nv, 3, c.image_size, c.image_size), "patches": z(n_img, 3 * c.patch_size ** 2),
            "vx": z(n_img, c.vis_width, dtype=f32), "vh": z(n_img, c.vis_width), "vh8": z(n_img, c.vis_width, dtype=FP8),
            "vo": z(n_img, c.vis_width), "vqkv": z(n_img, 3 * c.vis_width), "vatt": z(n_img, c.vis_width),
            "vatt8": z(n_img, c.vis_width, dtype=FP8), "vf1": z(n_img, c.vis_mlp), "vf1a": z(n_img, c.vis_mlp),
            "vf1a8": z(n_img, c.vis_mlp, dtype=FP8), "proj_out": z(n_img, c.width),
            "emb_rows": z(c.max_token_len, c.width),
            "x": z(P, c.width, dtype=f32), "h": z(P, c.width), "h8": z(P, c.width, dtype=FP8),
            "qkv": z(P, qn + 2 * kvn), "q": z(c.heads, P, c.head_dim), "att": z(P, qn),
            "att8": z(P, qn, dtype=FP8), "o": z(P, c.width), "gu": z(P, 2 * c.mlp), "act": z(P, c.mlp),
            "act8": z(P, c.mlp, dtype=FP8), "down": z(P, c.width),
            "o_t": z(c.width, P), "down_t": z(c.width, P),   # transposed GEMM results (transposed_gemms)
            "pad": z(P, dtype=torch.bool), "pos": z(P, dtype=torch.int64), "suffix_pos": z(S, dtype=torch.int64),
            "dec_bias": z(L, dtype=bf), "k_cache": z(c.layers, c.kv_heads, L, c.head_dim),
            "v_cache": z(c.layers, c.kv_heads, L, c.head_dim),
            "mods": self.mods, "ex_x": z(S, c.ex_width, dtype=f32), "ex_h": z(S, c.ex_width),
            "ex_h8": z(S, c.ex_width, dtype=FP8), "ex_hf": z(S, c.ex_width, dtype=f32),
            "ex_qkv": z(S, qn + 2 * kvn), "ex_q": z(c.heads, S, c.head_dim), "ex_att": z(S, qn),
            "ex_att8": z(S, qn, dtype=FP8), "ex_o": z(S, c.ex_width), "ex_gu": z(S, 2 * c.ex_mlp),
            "ex_act": z(S, c.ex_mlp), "ex_act8": z(S, c.ex_mlp, dtype=FP8), "ex_down": z(S, c.ex_width),
            "ex_o_parts": z(SPLIT_K, S, c.ex_width, dtype=f32), "ex_down_parts": z(SPLIT_K, S, c.ex_width, dtype=f32),
            "flow_ws": LinearFlowWorkspace(S, c.ex_width, c.action_dim, dev),
        }
        # the transposed gate+up result [2F, P] shares gu's storage (a layer writes one or the other; 38 MB full-size)
        b["gu_t"] = b["gu"].view(-1).view(2 * c.mlp, P)
        # key bias: the suffix's own keys are always visible, the unused tail never
        b["dec_bias"][P + S:] = -2.3819763e38
        self.b = b
        self.attn = make_pi05_hopper_attention(c, nv, P, S, L, dev, self.attention_tiles)
        self._overlap = ((torch.cuda.Stream(dev), [torch.cuda.Event() for _ in range(c.layers + 2)])
                         if self.overlap_first_step else None)
        self.sites = pipeline_hopper.quant_sites(d)
        self._act_store, views = aligned_scalars(len(self.sites), dev)
        self.act_scales = self._act_store[:, 0]  # strided view: writing it updates every site's scale
        self.site_scale = dict(zip(self.sites, views))
        self.amax = torch.zeros(len(self.sites), dtype=f32, device=dev)
        self.site_amax = {s: self.amax[i:i + 1] for i, s in enumerate(self.sites)}
        if self.precision == "fp8":
            self.q_prod = Fp8Context(self.w, self.ws, self.site_scale, fast_accum=self.fast_accum,
                                     fused=kernels, fused_ops=self.fused_expert_gemms, fused_cfgs=self.gemm_tiles,
                                     transposed=self.transposed_gemms, flow_boundary=self.fused_flow_boundary)
            biggest = max(v.numel() for v in self.w.values() if v.dtype == FP8)
            self._calib_ctx = lambda scratch, update=None: CalibContext(self.w, self.ws, self.site_amax,
                                                                        update or kernels.amax_update, scratch)
            self._scratch_numel = biggest
        else:
            self.q_prod = Bf16Context(self.w)
        self._io = [(self._pin(h.images), b["images_u8"]), (self._pin(h.image_mask), b["image_mask"]),
                    (self._pin(h.token_ids), b["token_ids"]), (self._pin(h.token_mask), b["token_mask"]),
                    (self._pin(h.noise), b["noise"])]
        self._out = (b["x_t"], self._pin(h.model_out))
        self._done = torch.cuda.Event()

    # -- running -----------------------------------------------------------------------------------
    def _upload(self) -> None:
        for src, dst in self._io:
            dst.copy_(src, non_blocking=True)

    def _forward(self, q) -> None:
        overlap = self._overlap if q is self.q_prod else None  # never the calibration twin (shared scratch)
        pipeline_hopper.forward(self.w, self.b, self.d, self.attn, q, overlap)

    @torch.no_grad()
    def _run_model(self) -> None:
        with torch.cuda.stream(self.stream), programmatic_dependent_launch(self.programmatic_launch):
            if not self.calibrated and not self._load_cached_calibration():
                self._upload()
                if self._warming:   # placeholders: compile the calibration twin now, keep no scales
                    self._compile_calibration_twin()
                else:               # calibrate on this (real) observation, once; the cache serves later starts
                    self._calibrate_on_buffers(1, self.default_percentile)
                    self._save(calibration_path(self.ckpt_hash, self.shape_key(), self.cache_dir), 1,
                               self.default_percentile)
            if self.use_graph and self.graph is None:
                self._capture()
            self._upload()
            if self.graph is not None:
                self.graph.replay()
            else:
                self._forward(self.q_prod)
            self._out[1].copy_(self._out[0], non_blocking=True)
            self._done.record(self.stream)
        self._done.synchronize()

    def replay_only(self) -> None:
        """Graph replay without host I/O (benchmarks)."""
        with torch.cuda.stream(self.stream):
            self.graph.replay()

    def _capture(self) -> None:
        for _ in range(2):  # compile every Triton specialization and let cuBLASLt pick its kernels
            self._forward(self.q_prod)
        self.stream.synchronize()
        self.graph = capture_graph(lambda: self._forward(self.q_prod), self.stream)

    # -- calibration -------------------------------------------------------------------------------
    def shape_key(self) -> str:
        d = self.d
        return f"pi05-hopper-{self.precision}-v{d['num_views']}-h{d['horizon']}-s{d['num_steps']}-t{d['max_tokens']}"

    def warmup(self, steps: int = 1, noise=None) -> None:
        """Compile and capture on placeholder inputs WITHOUT calibrating on them (black warm-up frames would
        give useless FP8 scales): a cached calibration is used if there is one, else the first real step
        calibrates. Scales are data in the captured graph, so nothing is recaptured then."""
        self._warming = True
        try:
            super().warmup(steps, noise)
        finally:
            self._warming = False

    def _load_cached_calibration(self) -> bool:
        path = calibration_path(self.ckpt_hash, self.shape_key(), self.cache_dir)
        try:
            amax = load_calibration(path, self.sites, ckpt_hash=self.ckpt_hash, shape_key=self.shape_key())
        except FileNotFoundError:
            return False
        except CacheError as e:
            warnings.warn(f"{e}; recalibrating")
            return False
        self._set_scales(amax)
        self.calibration_info = {"source": "cache", "path": str(path)}
        return True

    def _set_scales(self, amax) -> None:
        self.act_scales.copy_(torch.tensor(scales_from_amax(amax), dtype=torch.float32))
        self.calibrated = True

    @torch.no_grad()
    def _calibrate_on_buffers(self, n_obs: int, percentile: float | None, reset: bool = True) -> None:
        if reset:
            self.amax.zero_()
        self._run_calibration_twin(percentile)
        self._set_scales(self.amax.cpu().tolist())

    def _run_calibration_twin(self, percentile: float | None) -> None:
        """One forward of the bf16 twin over the input buffers, accumulating amax per site."""
        scratch = torch.empty(self._scratch_numel, dtype=torch.bfloat16, device=self.device)
        self._forward(self._calib_ctx(scratch, None if percentile is None else _percentile_update(percentile)))
        del scratch

    @torch.no_grad()
    def _compile_calibration_twin(self) -> None:
        """Run the calibration twin once on the warm-up placeholders and discard what it measured. Why: its
        Triton kernels (bf16 outputs, amax) are other specializations than production's; left to the first real
        tick, with a cold Triton cache, they made that tick 2.9 s instead of ~60 ms (H100, the GPU rosbag test,
        2026-11-27)."""
        self._run_calibration_twin(self.default_percentile)
        self.amax.zero_()

    def _save(self, path, n_obs, percentile) -> None:
        save_calibration(path, self.sites, self.amax.cpu().tolist(), ckpt_hash=self.ckpt_hash,
                         shape_key=self.shape_key(), percentile=percentile, num_observations=n_obs)
        self.calibration_info = {"source": "calibrated", "path": str(path), "num_observations": n_obs,
                                 "percentile": percentile}

    def calibrate(self, observations=None, percentile: float | None = None) -> dict:
        """Recompute FP8 scales from `observations` (list of dicts with images, state, prompt) or, if None,
        from the observation currently in the input buffers. Updates the captured graph's scales in place
        and rewrites the JSON cache. Returns {"path", "num_observations", "percentile"}."""
        if self.precision != "fp8":
            raise NotImplementedError("precision='bf16' has no FP8 scales to calibrate")
        obs = list(observations or [None])
        if percentile is not None and not 0 < percentile <= 100:
            raise InputError(f"percentile must be in (0, 100], got {percentile}")
        # the same launch mode as the first-step calibration, so the twin's compiled kernels are reused: a
        # different mode is a different compile (seconds with a cold Triton cache, inside a ~/calibrate call)
        with torch.no_grad(), torch.cuda.stream(self.stream), programmatic_dependent_launch(self.programmatic_launch):
            self.amax.zero_()
            for o in obs:
                if o is not None:
                    self.host.write_images(o["images"])
                    if o.get("state") is not None:
                        self.host.write_state(o["state"])
                    if o.get("prompt") is not None:
                        self.set_prompt(o["prompt"])
                self.host.prepare_step(o.get("noise") if o else None)
                self._upload()
                self._calibrate_on_buffers(len(obs), percentile, reset=False)
        self.stream.synchronize()
        path = calibration_path(self.ckpt_hash, self.shape_key(), self.cache_dir)
        self._save(path, len(obs), percentile)
        return dict(self.calibration_info)


def _percentile_update(p: float):
    """amax slot <- max(slot, percentile_p(|x|)) (eager; calibration only)."""
    def upd(x, slot):
        a = x.detach().abs().float().flatten()
        k = max(1, min(a.numel(), int(math.ceil(a.numel() * p / 100.0))))
        slot.copy_(torch.maximum(slot, torch.kthvalue(a, k).values.reshape(1)))
    return upd
