"""The Pi0.5 GPU frontend's remedies for FP8 activation outliers (issue 16), kept out of _pi05_cuda.py: per-channel
smoothing folded into the weights (runtime/smoothing.py, `smoothing=alpha`, off by default) and BF16 at the outlier
sites (runtime/outlier_sites.py, `bf16_outlier_sites`, by default every block holding a flagged site), measured on
the first real observation (or by `calibrate`); their results are cached next to the FP8 calibration. Measured
effect: docs/calibration.md "Smoothing" and "The remedy at full size".

A mixin of Pi05CudaFrontend: it uses the frontend's checkpoint, weights (`w`, `ws`, `_w_scale_store`, `mods`),
calibration twin (`_run_calibration_twin`, `amax`), weight builders (`_build_weights`, `_unpack_weights`,
`_get_weights`) and startup log.
"""
from __future__ import annotations

import hashlib
import time
import warnings

import torch

from flash_rt.calibration import calibration_root
from flash_rt.errors import CacheError, InputError
from flash_rt.frontends.torch._pi05_cuda_spec import gemm_names
from flash_rt.runtime.bf16_blocks import BLOCKS
from flash_rt.runtime.fp8_check import ADVICE, ADVICE_ALL_BF16, Fp8Check
from flash_rt.runtime.outlier_sites import (BF16_MIN_RATIO, SiteSet, bf16_blocks_for, block_gemms, consumers,
                                            load_outlier_groups, outlier_groups, outliers_path, save_outlier_groups)
from flash_rt.runtime.smoothing import (ALPHA_DEFAULT, MIN_RATIO, ChannelRecorder, SmoothingPlan, column_max,
                                        compute_factors, factors_path, load_factors, save_factors)


class OutlierRemedies:
    def _init_outlier_remedies(self, smoothing, smoothing_min_ratio, bf16_outlier_sites, outlier_min_ratio,
                               precision: str) -> None:
        """Validate and record the two options (construction time, before anything loads)."""
        if smoothing is True:
            smoothing = ALPHA_DEFAULT
        if smoothing is None:
            smoothing = False
        if smoothing is not False and not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
            raise InputError(f"smoothing must be an alpha in [0, 1) (0 or False: off), got {smoothing!r}")
        self.smooth_alpha = float(smoothing) if smoothing and precision == "fp8" else None
        # a site is smoothed only when max / median of its channel maxima reaches this (runtime/smoothing.py)
        self.smooth_min_ratio = MIN_RATIO if smoothing_min_ratio is None else float(smoothing_min_ratio)
        # the factors folded into the weights now: None = not measured yet, {} = measured, no site needed any
        self.smoothing: dict | None = None
        # BF16 at outlier sites: the sites whose per-channel products have outliers (max / median >=
        # outlier_min_ratio, 30 by default: runtime/outlier_sites.py says why not 6) keep bf16 activations and their
        # consumers bf16 weights; measured on the first observation. Scope: "groups" (True) the flagged groups alone,
        # "blocks" the blocks up to the last that holds one (bf16_blocks_for). None (the default) is "blocks" unless
        # smoothing is asked for: on an H200 it held the two 30x injections plain FP8 fails (worst 0.99972 over three
        # runs of 20); at full size, through the CPU cell, it flags nothing on the checkpoint without an injection or
        # with a matched one (highest ratio 19), so there the default engine is plain FP8 (docs/calibration.md)
        r = BF16_MIN_RATIO if outlier_min_ratio is None else outlier_min_ratio
        if not (isinstance(r, (int, float)) and not isinstance(r, bool) and 1 < r < float("inf")):
            raise InputError(f"outlier_min_ratio must be a number > 1 (max / median of a site's per-channel "
                             f"products), got {outlier_min_ratio!r}")
        self.bf16_min_ratio = float(r)
        v = bf16_outlier_sites
        if v is None:
            v = False if smoothing else "blocks"
        if v is False:
            scope = None
        elif v is True or v in ("groups", "blocks"):
            scope = "groups" if v is True else v
        else:
            raise InputError(f"bf16_outlier_sites must be False, True, 'groups' or 'blocks', got {v!r}")
        self.bf16_scope = scope if precision == "fp8" else None
        self.bf16_outliers = self.bf16_scope is not None
        if self.bf16_outliers and self.smooth_alpha:
            raise InputError("bf16_outlier_sites and smoothing are alternatives; pass one of them")
        self.bf16_groups: list | None = None   # None: not measured yet
        self._bf16_sites = SiteSet(())

    def _load_outlier_remedies(self) -> None:
        """Cached factors / outlier groups of this checkpoint, if any (a bad cache file is measured again)."""
        if self.smooth_alpha:
            try:
                self.smoothing = load_factors(self._smoothing_path(), self.cfg, ckpt_hash=self.ckpt_hash,
                                              alpha=self.smooth_alpha, min_ratio=self.smooth_min_ratio)
            except FileNotFoundError:
                pass
            except CacheError as e:
                warnings.warn(f"{e}; smoothing is measured again on the first observation")
        if self.bf16_outliers:
            try:
                self.bf16_groups = load_outlier_groups(self._outliers_path(), self.cfg, ckpt_hash=self.ckpt_hash,
                                                       min_ratio=self.bf16_min_ratio)
            except FileNotFoundError:
                pass
            except CacheError as e:
                warnings.warn(f"{e}; outlier sites are measured again on the first observation")

    def _outlier_remedies_note(self) -> str:
        """The start-up log's words for what the remedies do in this load."""
        sm = "" if not self.bf16_outliers else (f", bf16 at {self._bf16_extent()}" if self.bf16_groups is not None
                                                else ", outlier sites measured on the first observation")
        sm += "" if not self.smooth_alpha else (", smoothing on the first observation" if self.smoothing is None
                                               else f", smoothing sq{self._smoothing_digest() or ' (no site)'}")
        return sm

    def _channel_maxima(self, observations, percentile) -> ChannelRecorder:
        """Per-channel activation maxima of the calibration twin over `observations` (callables that fill the input
        buffers); the per-tensor amax it also accumulated is reset (scales are calibrated after)."""
        rec = ChannelRecorder()
        for fill in observations:
            fill()
            self._run_calibration_twin(percentile, channels=rec)
        self.amax.zero_()
        return rec

    def _outliers_path(self):
        # "prod": the product criterion (eighth session); files of the activation criterion ("pi05-bf16-r6") are
        # never read for it. The ratio is in the name and in the file (a file of another bar is measured again)
        return outliers_path(calibration_root(self.cache_dir), self.ckpt_hash,
                             f"pi05-bf16prod-r{self.bf16_min_ratio:g}")

    def _bf16_extent(self) -> str:
        """What runs in BF16, in words (start-up log)."""
        n = f"{len(self.bf16_groups)} outlier site group(s)"
        return n if self.bf16_scope == "groups" else f"the blocks {list(bf16_blocks_for(self.bf16_groups))} ({n})"

    def _fp8_check(self) -> Fp8Check:
        """The calibration's FP8 self-check, with the advice that fits this engine: where "blocks" runs every block
        in BF16, no FP8 site is left and a gap is the checkpoint's own rounding sensitivity (fp8_check.py)."""
        every = self.bf16_scope == "blocks" and bool(self.bf16_groups) and bf16_blocks_for(self.bf16_groups) == BLOCKS
        return Fp8Check(advice=ADVICE_ALL_BF16 if every else ADVICE)

    def _outlier_key(self) -> str | None:
        """8 hex of what runs in BF16, for the calibration key (None: nothing does)."""
        if not self.bf16_groups:
            return None
        # "|upstream": the blocks through the last flagged one (a calibration of the "|blocks" scope, the flagged
        # blocks alone, is not this one's)
        what = ",".join(self.bf16_groups) + ("" if self.bf16_scope == "groups" else "|blocks|upstream")
        return hashlib.sha256(what.encode()).hexdigest()[:8]

    def _use_bf16_at(self, names) -> None:
        """The consumers of the outlier groups `names` (scope "blocks": every GEMM of their blocks) read bf16 weights
        (from a bf16 build of the checkpoint on the device; transient ~2 bytes a parameter) and their activations
        stay bf16 (Fp8Context's bf16_sites)."""
        flat = self._build_weights(self.checkpoint, self.cfg, "bf16", self.device, open_source=self.open_source)
        blocks = bf16_blocks_for(names) if self.bf16_scope == "blocks" else ()
        gemms = consumers(self.cfg, names) + block_gemms([g for g, _, _ in gemm_names(self.cfg)], blocks)
        for c in dict.fromkeys(gemms):
            self.w[c] = flat[f"w.{c}"].contiguous()
        del flat
        self._bf16_sites.names = frozenset(names)
        self._bf16_sites.blocks = blocks

    @torch.no_grad()
    def _measure_outlier_sites(self, observations, percentile) -> None:
        """Which sites have outlier channels (the twin's per-channel maxima over `observations`): their GEMMs run
        in BF16 from now on. Changes buffers and kernels, so a graph captured before is dropped (recaptured)."""
        t0 = time.perf_counter()
        rec = self._channel_maxima(observations, percentile)
        names = outlier_groups(self.cfg, rec.max, self.bf16_min_ratio, col_max=column_max(self.cfg, self.w, self.ws))
        if names:
            self._use_bf16_at(names)
            self.graph = None
        self.bf16_groups = names
        save_outlier_groups(self._outliers_path(), names, ckpt_hash=self.ckpt_hash, min_ratio=self.bf16_min_ratio,
                            num_observations=len(observations))
        self.startup.add("outlier_sites", time.perf_counter() - t0,
                         f"{self._bf16_extent()} run in BF16: {names}")

    def _smoothing_digest(self) -> str | None:
        return SmoothingPlan(self.cfg, self.smoothing or {}).digest()

    def _smoothing_path(self):
        return factors_path(calibration_root(self.cache_dir), self.ckpt_hash,
                            f"pi05-a{self.smooth_alpha:g}-r{self.smooth_min_ratio:g}")

    @torch.no_grad()
    def _measure_smoothing(self, observations, percentile) -> None:
        """Per-channel activation maxima from the twin over `observations` (callables that fill the input buffers),
        factors against the weights' column maxima, and the weights rebuilt with them, copied into the tensors the
        graph reads (no recapture). The factors file is written; the per-tensor scales must be calibrated after."""
        t0 = time.perf_counter()
        rec = self._channel_maxima(observations, percentile)
        factors = compute_factors(self.cfg, rec.max, column_max(self.cfg, self.w, self.ws), self.smooth_alpha,
                                  previous=self.smoothing or None, min_ratio=self.smooth_min_ratio)
        if SmoothingPlan(self.cfg, factors).digest() != self._smoothing_digest():   # else: the weights hold them
            flat = self._get_weights(factors)
            w, _, store, mods, _ = self._unpack_weights(flat, self.cfg, self.precision, self.device, norm_weights=True)
            for k, v in w.items():
                self.w[k].copy_(v)
            self._w_scale_store.copy_(store)
            self.mods.copy_(mods)
            del flat, w, store, mods
        self.smoothing = factors
        save_factors(self._smoothing_path(), factors, ckpt_hash=self.ckpt_hash, alpha=self.smooth_alpha,
                     min_ratio=self.smooth_min_ratio, num_observations=len(observations))
        self.startup.add("smoothing", time.perf_counter() - t0,
                         f"FP8 smoothing factors measured, weights rebuilt (sq{self._smoothing_digest()})")
