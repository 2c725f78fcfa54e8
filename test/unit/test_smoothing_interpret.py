"""FP8 smoothing through the GPU forward (models/pi05/cuda_forward.py), run by Triton's CPU interpreter on the micro
model of test_cuda_forward_interpret.py.

Why: the folds are exact in arithmetic (test_outliers_smoothing.py checks them weight by weight); here the whole GPU
code path runs with them -- the prefix norms' new weight vectors, the folded adaRMS modulation, the V and up rows, the
shared prefix/expert KV -- so a fold that the forward undoes, or a vector the kernels read wrong, shows up as a
different chunk. (1) Bf16Context with random power-of-two factors gives the unsmoothed chunk to ~1e-5: what is left
is the fp32 rounding of the folded adaRMS biases. (2) The production flow -- per-channel maxima from the calibration
twin, factors, weights rebuilt with them, per-tensor scales calibrated on the smoothed model, Fp8Context -- holds the
FP8 bar (>= 0.995 against the exact CPU path) on a micro checkpoint with 30x outlier channels in the expert's adaRMS
modulation (the plain micro checkpoint has no site over the outlier threshold, so nothing would be smoothed there).
"""
import pytest

from _interpreter import IN_CHILD, patch_interpreter_float_conversion, run_child

if not IN_CHILD:
    def test_smoothing_under_the_interpreter():
        run_child(__file__)

else:
    import dataclasses

    import numpy as np
    import torch

    import flash_rt
    from flash_rt.frontends.torch._pi05_cuda_spec import gemm_names
    from flash_rt.frontends.torch._pi05_cuda_storage import build_weights, device_buffers, unpack_weights
    from flash_rt.frontends.torch.pi05_hopper import Pi05TorchFrontendHopper as Cell
    from flash_rt.kernels import triton as kernels
    from flash_rt.models.pi05 import cuda_forward
    from flash_rt.models.pi05.attention_sites import pi05_attention_spec
    from flash_rt.models.pi05.dims import Pi05Dims
    from flash_rt.models.pi05.oracle import cosine64
    from flash_rt.runtime.attention import TritonAttnBackend
    from flash_rt.runtime.fp8_scales import ActivationScales
    from flash_rt.runtime.quant import Bf16Context, CalibContext, Fp8Context
    from flash_rt.runtime.outlier_sites import (SiteSet, bf16_blocks_for, block_gemms, consumers, outlier_groups,
                                                product_ratios)
    from flash_rt.runtime.smoothing import MIN_RATIO, ChannelRecorder, column_max, compute_factors, groups
    from flash_rt.testing import TINY_STATE_DIM, build_tiny_checkpoint
    from flash_rt.testing.checkpoint import TINY_CONFIG
    from flash_rt.testing.observations import random_observation
    from flash_rt.testing.outlier_criterion import cpu_product_ratios, fp8_weights_in_place
    from flash_rt.testing.outliers import inject_checkpoint

    assert patch_interpreter_float_conversion(), "this Triton's interpreter cannot narrow floats like the GPU"
    MICRO = dataclasses.replace(TINY_CONFIG, num_patches=16, max_token_len=48, num_steps=2)
    VIEWS = 1
    PROXY_TOL = 0.05   # measured <= 0.032: BF16 activations here, FP32 there (the weights FP8 alike)

    class Rig:
        """One checkpoint on the GPU code path (CPU tensors), fed by the exact CPU policy's host buffers."""

        def __init__(self, ckpt):
            self.ckpt = ckpt
            self.cpu = flash_rt.load_model(ckpt, hardware="cpu", num_views=VIEWS, num_steps=MICRO.num_steps)
            self.cfg = self.cpu.config
            self.rng = np.random.default_rng(11)

        def weights(self, precision, factors=None):
            w, ws, _, mods, dt = unpack_weights(build_weights(self.ckpt, self.cfg, precision, "cpu", smoothing=factors),
                                                self.cfg, precision, "cpu")
            d = Pi05Dims.of(self.cfg, VIEWS, len(mods), dt, align=16)
            b = device_buffers(self.cfg, d, Cell.tuning.split_k, "cpu", mods)
            h = self.cpu.frontend.host
            b.update(images_u8=torch.from_numpy(h.images), image_mask=torch.from_numpy(h.image_mask),
                     token_ids=torch.from_numpy(h.token_ids), token_mask=torch.from_numpy(h.token_mask),
                     noise=torch.from_numpy(h.noise))
            attn = TritonAttnBackend(pi05_attention_spec(self.cfg, d), "cpu", Cell.tuning)
            return w, ws, b, d, attn

        def observe(self):
            images, state, prompt, noise = random_observation(self.rng, VIEWS, TINY_STATE_DIM, self.cfg.action_horizon)
            self.cpu.predict(images, state, prompt, noise)          # fills the host buffers the GPU path reads
            return self.cpu.frontend.host.model_out.copy()

        def twin(self, w, ws, b, d, attn, channels=None):
            scales = ActivationScales(cuda_forward.quant_sites(d), "cpu")
            scratch = torch.empty(max(v.numel() for v in w.values()), dtype=torch.bfloat16)
            cuda_forward.forward(w, b, d, attn, CalibContext(w, ws, scales.site_amax, kernels.amax_update, scratch,
                                                             channels), None)
            scales.set_from_amax()
            return scales

        def check_cpu_proxy(self, rec, w, ws):
            """The CPU proxy of the criterion (testing/outlier_criterion.py: a CPU cell of its own with FP8 weights,
            FP32 activations), which benchmarks/outlier_criterion_cpu.py runs at full size, against this path's (BF16
            twin) on the observation in the buffers: every group's ratio within PROXY_TOL, and the same verdict for
            every group further than that from the bar. Returns the proxy's flags."""
            gpu = product_ratios(self.cfg, rec.max, column_max(self.cfg, w, ws))
            proxy = flash_rt.load_model(self.ckpt, hardware="cpu", num_views=VIEWS, num_steps=MICRO.num_steps)
            src, dst = self.cpu.frontend.host, proxy.frontend.host
            for name in ("images", "image_mask", "token_ids", "token_mask", "noise"):
                getattr(dst, name)[...] = getattr(src, name)
            fp8_weights_in_place(proxy)
            cpu = cpu_product_ratios(proxy)
            assert cpu.keys() == gpu.keys() == {g.name for g in groups(self.cfg)}
            worst = max(abs(cpu[g] / gpu[g] - 1) for g in gpu)
            print(f"criterion ratios, CPU proxy vs this path: worst relative difference {worst:.4f}")
            assert worst <= PROXY_TOL, worst
            for g in gpu:
                if abs(cpu[g] / MIN_RATIO - 1) > PROXY_TOL:
                    assert (cpu[g] >= MIN_RATIO) == (gpu[g] >= MIN_RATIO), (g, cpu[g], gpu[g])
            return [g for g, r in cpu.items() if r >= MIN_RATIO]

        def fp8(self, w, ws, b, d, attn, scales, bf16_sites=None):
            opts = Cell.option_defaults
            q = Fp8Context(w, ws, scales.site_scale, tuning=Cell.tuning, fast_accum=False, fused=kernels,
                           fused_ops=("rope_qkv", "geglu", "splitk"), transposed=opts["transposed_gemms"],
                           flow_boundary=True, bf16_sites=bf16_sites)
            cuda_forward.forward(w, b, d, attn, q, None)
            return b["x_t"].numpy().copy()

    @pytest.fixture(scope="module")
    def micro_ckpt(tmp_path_factory):
        return build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), layout="openpi", cfg=MICRO)

    def test_bf16_chunk_is_unchanged_by_the_folds(micro_ckpt):
        rig = Rig(micro_ckpt)
        g = torch.Generator().manual_seed(5)
        f = {grp.name: torch.exp2(torch.randint(-2, 3, (grp.width,), generator=g).float()) for grp in groups(MICRO)}
        rig.observe()
        outs = []
        for factors in (None, f):
            w, _, b, d, attn = rig.weights("bf16", factors)
            cuda_forward.forward(w, b, d, attn, Bf16Context(w), None)
            outs.append(b["x_t"].numpy().copy())
        rel = float(np.abs(outs[1] - outs[0]).max() / np.abs(outs[0]).max())
        print(f"bf16 smoothed vs unsmoothed: max |diff| / max |x| = {rel:.2e}")
        assert np.isfinite(outs[1]).all() and rel <= 1e-5

    def test_fp8_with_measured_smoothing_holds_the_bar(micro_ckpt, tmp_path):
        """30x outliers in the expert's adaRMS modulation: the sites that get factors include the adaRMS folds."""
        kind = "ex_ada"
        ck = inject_checkpoint(micro_ckpt, tmp_path / kind, kind, 30.0, MICRO, n=2)
        rig = Rig(ck)
        want = rig.observe()
        w, ws, b, d, attn = rig.weights("fp8")
        rec = ChannelRecorder()
        plain = rig.fp8(w, ws, b, d, attn, rig.twin(w, ws, b, d, attn, channels=rec))
        factors = compute_factors(rig.cfg, rec.max, column_max(rig.cfg, w, ws), alpha=0.5)
        assert {"ex.0.norm1", "ex.1.norm2"} <= set(factors), sorted(factors)
        w, ws, b, d, attn = rig.weights("fp8", factors)
        smooth = rig.fp8(w, ws, b, d, attn, rig.twin(w, ws, b, d, attn))
        c_plain, c_smooth = cosine64(plain, want), cosine64(smooth, want)
        print(f"micro {kind}: fp8 cos without smoothing {c_plain:.6f}, with {c_smooth:.6f} ({len(factors)} sites)")
        assert np.isfinite(smooth).all() and c_smooth >= 0.995, (kind, c_plain, c_smooth)

    def test_fp8_with_bf16_at_outlier_sites(micro_ckpt, tmp_path):
        """The frontend's bf16_outlier_sites path: the sites whose channel maxima show outliers keep bf16 activations
        and their consumers bf16 weights; everything else stays FP8. Measured on this micro model it recovers what
        smoothing cannot (docs/calibration.md); here it must hold the bar on the 30x adaRMS injection."""
        ck = inject_checkpoint(micro_ckpt, tmp_path / "ex_ada", "ex_ada", 30.0, MICRO, n=2)
        rig = Rig(ck)
        rig.observe()                                   # calibrate on the first observation, as the frontend does
        w, ws, b, d, attn = rig.weights("fp8")
        rec = ChannelRecorder()
        rig.twin(w, ws, b, d, attn, channels=rec)
        hot = outlier_groups(rig.cfg, rec.max, col_max=column_max(rig.cfg, w, ws))   # the frontend's criterion
        assert {"ex.0.norm1", "ex.1.norm2"} <= set(hot), hot
        wb = rig.weights("bf16")[0]
        for c in consumers(rig.cfg, hot):
            w[c] = wb[c]
        scales = rig.twin(w, ws, b, d, attn)
        plain_w, plain_ws, pb, pd, pattn = rig.weights("fp8")
        plain_scales = rig.twin(plain_w, plain_ws, pb, pd, pattn)
        worst_mixed = worst_plain = 1.0
        for _ in range(2):
            want = rig.observe()
            mixed = rig.fp8(w, ws, b, d, attn, scales, bf16_sites=SiteSet(hot))
            plain = rig.fp8(plain_w, plain_ws, pb, pd, pattn, plain_scales)
            worst_mixed, worst_plain = min(worst_mixed, cosine64(mixed, want)), min(worst_plain, cosine64(plain, want))
        print(f"micro ex_ada 30x: fp8 worst {worst_plain:.5f}, bf16 at {len(hot)} outlier site groups {worst_mixed:.5f}")
        assert np.isfinite(mixed).all() and worst_mixed >= 0.995 and worst_mixed > worst_plain, (worst_plain,
                                                                                                  worst_mixed)

    def test_matched_outliers_hold_plain_fp8_and_are_not_flagged(micro_ckpt, tmp_path):
        """The same 30x adaRMS outlier with its consumer columns over 30 (':matched', the FP32 function unchanged):
        plain per-tensor FP8 holds it (measured 0.99999 here; the plain injection 0.988), and the frontend's product
        criterion (channel max times consumer column max) flags no site, where the activation alone would flag the
        expert norms -- so bf16_outlier_sites costs nothing on a model whose weights compensate its outliers."""
        ck = inject_checkpoint(micro_ckpt, tmp_path / "m", "ex_ada:matched", 30.0, MICRO, n=2)
        rig = Rig(ck)
        rig.observe()
        w, ws, b, d, attn = rig.weights("fp8")
        rec = ChannelRecorder()
        scales = rig.twin(w, ws, b, d, attn, channels=rec)
        assert {"ex.0.norm1", "ex.1.norm2"} <= set(outlier_groups(rig.cfg, rec.max))      # the activation has them
        flagged = outlier_groups(rig.cfg, rec.max, col_max=column_max(rig.cfg, w, ws))
        assert not any(g.startswith("ex.") and "norm" in g for g in flagged), flagged
        rig.check_cpu_proxy(rec, w, ws)
        worst = 1.0
        for _ in range(2):
            want = rig.observe()          # fills the host buffers the GPU path reads
            worst = min(worst, cosine64(rig.fp8(w, ws, b, d, attn, scales), want))
        print(f"micro ex_ada:matched 30x: plain fp8 worst {worst:.6f}; flagged {flagged}")
        assert worst >= 0.995, worst


    def test_the_default_remedy_flags_nothing_on_an_ordinary_checkpoint(micro_ckpt):
        """bf16_outlier_sites defaults to "blocks": a block runs in BF16 only where the product criterion flags a
        group. On the micro checkpoint without an injection it must flag none, so the default engine there is plain
        FP8 (the same kernels, weights and calibration key as with the remedy off)."""
        rig = Rig(micro_ckpt)
        rig.observe()
        w, ws, b, d, attn = rig.weights("fp8")
        rec = ChannelRecorder()
        rig.twin(w, ws, b, d, attn, channels=rec)
        flagged = outlier_groups(rig.cfg, rec.max, col_max=column_max(rig.cfg, w, ws))
        assert flagged == [], flagged
        assert rig.check_cpu_proxy(rec, w, ws) == []

    def test_bf16_at_outlier_blocks_recovers_more_than_the_groups(micro_ckpt, tmp_path):
        """bf16_outlier_sites="blocks": the blocks from the first through the last that holds a flagged group run in
        BF16 (their gelu inputs, in no group, too). On the plain 30x Gemma-norm injection -- the kind that failed the
        full-size rung, whose error is spread over every rounding upstream of its sharpened attention -- the flagged
        groups alone recover part of the gap (0.99535 -> 0.99726 measured here), the blocks more (0.99997: here a
        flagged expert group makes that all three); and every weight of those blocks is bf16. (The micro model is
        flagged at smoothing's bar, 6: its few channels keep every ratio small; the frontend's 30 is for full size.)"""
        ck = inject_checkpoint(micro_ckpt, tmp_path / "llm_norm", "llm_norm", 30.0, MICRO, n=2)
        rig = Rig(ck)
        rig.observe()
        w, ws, b, d, attn = rig.weights("fp8")
        wb = rig.weights("bf16")[0]
        rec = ChannelRecorder()
        plain_scales = rig.twin(w, ws, b, d, attn, channels=rec)
        hot = outlier_groups(rig.cfg, rec.max, col_max=column_max(rig.cfg, w, ws))
        blocks = bf16_blocks_for(hot)                 # what the frontend's "blocks" scope runs in BF16
        assert "prefix" in blocks, (hot, blocks)
        rig.check_cpu_proxy(rec, w, ws)
        runs = {}
        for scope, bl in (("groups", ()), ("blocks", blocks)):
            wm = dict(w)
            gemms = consumers(rig.cfg, hot) + block_gemms([g for g, _, _ in gemm_names(rig.cfg)], bl)
            for c in gemms:
                wm[c] = wb[c]
            rig.rng = np.random.default_rng(11)
            rig.observe()
            runs[scope] = (wm, rig.twin(wm, ws, b, d, attn), SiteSet(hot, bl))
        assert all(runs["blocks"][0][k].dtype == torch.bfloat16 for k in w
                   if k.endswith(("qkv_w", "o_w", "gu_w", "down_w")) and k.startswith("llm."))
        worst = {"plain": 1.0, "groups": 1.0, "blocks": 1.0}
        for _ in range(2):
            want = rig.observe()
            worst["plain"] = min(worst["plain"], cosine64(rig.fp8(w, ws, b, d, attn, plain_scales), want))
            for scope, (wm, sc, pred) in runs.items():
                worst[scope] = min(worst[scope], cosine64(rig.fp8(wm, ws, b, d, attn, sc, bf16_sites=pred), want))
        print(f"micro llm_norm 30x: fp8 worst {worst}, flagged {hot}, blocks {blocks}")
        assert worst["blocks"] > worst["groups"] > worst["plain"], worst

    @pytest.mark.parametrize("kind,scale,in_sample_ok,ok", [(None, 1.0, True, True),
                                                            ("ex_ada:matched", 30.0, True, True),
                                                            ("ex_ada", 30.0, True, False),
                                                            ("ex_ada", 100.0, False, False)])
    def test_the_fp8_self_check_flags_what_fails_and_passes_what_holds(micro_ckpt, tmp_path, kind, scale,
                                                                       in_sample_ok, ok):
        """runtime/fp8_check.py on real forwards, as the frontend runs it: the calibration twin's chunk against
        production FP8's on the calibrated observation, then on its held-out probe (held_out_inputs: the views
        mirrored, a new noise draw; the scales stay the calibrated ones). It passes the plain micro model and the
        matched 30x injection (FP8 holds them) and flags the plain 100x adaRMS injection in-sample (measured here:
        FP8 vs twin 0.97202, FP8 vs FP32 0.96068). The plain 30x injection measures 0.99882 in-sample -- FP8 at its
        best on its own scales -- and 0.98816 against FP32 on later observations: only the held-out probe flags
        it (docs/calibration.md)."""
        import warnings
        from flash_rt.runtime.fp8_check import Fp8Check, held_out_inputs
        ck = micro_ckpt if kind is None else inject_checkpoint(micro_ckpt, tmp_path / "k", kind, scale, MICRO, n=2)
        rig = Rig(ck)
        want = rig.observe()
        w, ws, b, d, attn = rig.weights("fp8")
        scales = rig.twin(w, ws, b, d, attn)
        twin = b["x_t"].numpy().copy()
        fp8 = rig.fp8(w, ws, b, d, attn, scales)
        chk = Fp8Check()
        c = chk.add(twin, fp8)
        h = rig.cpu.frontend.host   # the GPU path's input buffers alias these host arrays (Rig.weights)
        held_out_inputs(h.images, h.noise)
        rig.twin(w, ws, b, d, attn)              # its scales are discarded: the probe keeps the calibrated ones
        twin_ho = b["x_t"].numpy().copy()
        c_ho = chk.add(twin_ho, rig.fp8(w, ws, b, d, attn, scales), held_out=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = chk.result()
        print(f"micro {kind} {scale:g}x: fp8 vs twin {c:.5f} in-sample (fp8 vs fp32 {cosine64(fp8, want):.5f}), "
              f"{c_ho:.5f} held-out")
        assert (c >= 0.995) is in_sample_ok, c
        assert r["ok"] is ok and (len(caught) == 0) is ok, (c, c_ho, r)
        assert r["in_sample"] == c and r["held_out"] == c_ho and r["cosine"] == min(c, c_ho)
