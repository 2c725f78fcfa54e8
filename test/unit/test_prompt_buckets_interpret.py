"""Prefix-length buckets (models/pi05/prompt_buckets.py) on the shared GPU forward under Triton's CPU interpreter:
the bucketed forward against the full-length one, for prompts of several lengths, on a micro model.

What must hold: (1) the prefix rows (images + prompt) and their K/V are bit-identical to the full length's -- the
masked tail contributes exact zeros; (2) the chunk is bit-identical to the full length's in the "exact" key layout,
and within the ulp-level regrouping of the suffix keys in the "compact" one (the module docstring says why), far
inside the precision bars; (3) a bucket run right after another prompt's full-length run (stale rows in the
shared buffers: a longer prompt's visible keys, its K/V) is still right; (4) the FP8 scales calibrated at full length serve every bucket (one set per
site: same sites, and each prefix site's bucket amax <= the full length's); (5) switching prompts across buckets
selects the smallest bucket that holds the tokens (the last for a prompt longer than every other bucket) and
captures nothing: the bucket set's capture count stays at the warm-up's.
"""
import pytest

from _interpreter import IN_CHILD, patch_interpreter_float_conversion, run_child

if not IN_CHILD:
    def test_prompt_buckets_under_the_interpreter():
        run_child(__file__)

else:
    import dataclasses

    import numpy as np
    import torch

    import flash_rt
    from flash_rt.frontends.torch._pi05_cuda_storage import build_weights, device_buffers, unpack_weights
    from flash_rt.frontends.torch.pi05_hopper import Pi05TorchFrontendHopper as CELL
    from flash_rt.kernels import triton as kernels
    from flash_rt.models.pi05 import cuda_forward
    from flash_rt.models.pi05.attention_sites import pi05_attention_spec
    from flash_rt.models.pi05.dims import Pi05Dims
    from flash_rt.models.pi05.oracle import cosine64
    from flash_rt.models.pi05.prompt_buckets import bucket_slots, build_buckets
    from flash_rt.runtime.attention import TritonAttnBackend
    from flash_rt.runtime.fp8_scales import ActivationScales
    from flash_rt.runtime.quant import CalibContext, Fp8Context
    from flash_rt.testing import TINY_STATE_DIM, build_tiny_checkpoint
    from flash_rt.testing.checkpoint import TINY_CONFIG
    from flash_rt.testing.observations import random_observation

    assert patch_interpreter_float_conversion(), "this Triton's interpreter cannot narrow floats like the GPU"
    # micro model (16 image tokens, 48 prompt slots, two flow steps): buckets of 16, 32 and the full 48 slots
    MICRO = dataclasses.replace(TINY_CONFIG, num_patches=16, max_token_len=48, num_steps=2)
    VIEWS, BUCKETS = 1, (16, 32)
    # prefix attention in two key splits at full length (64 keys, 32 a split), as the full-size model has at one view
    # on Hopper: a bucket must keep those split boundaries (16 slots: one split, written directly, against the full
    # length's merge) to keep the bits
    TILES = {"prefix": {"block_m": 16, "block_n": 16, "target_programs": 64}}

    @pytest.fixture(scope="module", params=["exact", "compact"])
    def setup(request, tmp_path_factory):
        layout = request.param
        ckpt = build_tiny_checkpoint(tmp_path_factory.mktemp("micro"), layout="openpi", cfg=MICRO)
        pol = flash_rt.load_model(ckpt, hardware="cpu", num_views=VIEWS, num_steps=MICRO.num_steps)
        cfg = pol.config
        w, ws, _, mods, dt = unpack_weights(build_weights(ckpt, cfg, "fp8", "cpu"), cfg, "fp8", "cpu")
        d = Pi05Dims.of(cfg, VIEWS, len(mods), dt, align=16)
        b = device_buffers(cfg, d, CELL.tuning.split_k, "cpu", mods)
        h = pol.frontend.host
        b.update(images_u8=torch.from_numpy(h.images), image_mask=torch.from_numpy(h.image_mask),
                 token_ids=torch.from_numpy(h.token_ids), token_mask=torch.from_numpy(h.token_mask),
                 noise=torch.from_numpy(h.noise))

        def make_attn(dims, split_like=None):
            return TritonAttnBackend(pi05_attention_spec(cfg, dims), "cpu", CELL.tuning, TILES, split_like)

        slots = bucket_slots(BUCKETS, cfg.max_token_len, d.image_tokens, 16)
        assert slots == (16, 32, 48)
        buckets = build_buckets(d, b, make_attn(d), slots, 16, make_attn, layout)
        full_ws, small_ws = buckets.full.attn.ws["prefix"], buckets.bucket(16).attn.ws["prefix"]
        assert (full_ws.splits, full_ws.keys_per_split) == (2, 32)
        assert (small_ws.splits, small_ws.keys_per_split) == (1, 32)   # its own rule would take 2 x 16
        scales = ActivationScales(cuda_forward.quant_sites(d), "cpu")
        rng = np.random.default_rng(3)
        images, state, _, noise = random_observation(rng, VIEWS, TINY_STATE_DIM, cfg.action_horizon)
        h.write_images(images)
        write_prompt(h, 40, rng)
        h.prepare_step(noise)
        # calibrate at full length (the frontend's rule), then the production context
        scratch = torch.empty(max(v.numel() for v in w.values()), dtype=torch.bfloat16)
        cuda_forward.forward(w, b, d, buckets.full.attn,
                             CalibContext(w, ws, scales.site_amax, kernels.amax_update, scratch), None)
        scales.set_from_amax()
        q = Fp8Context(w, ws, scales.site_scale, tuning=CELL.tuning, fast_accum=False, fused=kernels,
                       fused_ops=("rope_qkv", "geglu", "splitk"), transposed=CELL.option_defaults["transposed_gemms"],
                       flow_boundary=True)
        return dict(layout=layout, w=w, ws=ws, b=b, d=d, h=h, q=q, buckets=buckets, scales=scales, scratch=scratch, rng=rng,
                    noise=noise)

    def write_prompt(h, n, rng):
        """A pre-tokenized prompt of n tokens (right-padded to max_token_len)."""
        ids = np.zeros(h.cfg.max_token_len, np.int64)
        ids[:n] = rng.integers(1, h.cfg.vocab, n)
        mask = np.arange(h.cfg.max_token_len) < n
        h.apply_prompt(h.prepare_prompt((ids, mask)))

    def run(s, bk):
        cuda_forward.forward(s["w"], bk.b, bk.d, bk.attn, s["q"], None)
        L = bk.d.image_tokens + s["h"].n_tokens
        return (s["b"]["x_t"].clone(), s["b"]["k_cache"][:, :, :L].clone(), s["b"]["v_cache"][:, :, :L].clone())

    def test_bucketed_forward_equals_the_full_length(setup):
        s = setup
        h, buckets = s["h"], s["buckets"]
        captures = buckets.captures
        report = []
        # lengths across every bucket and its edges (compact: fewer, it is the slower path to check), each bucket
        # run right after the previous prompt's full-length run (a longer one's, mostly)
        lengths = (45, 5, 30, 16, 17, 3) if s["layout"] == "exact" else (45, 5, 30)
        for n in lengths:
            write_prompt(h, n, s["rng"])
            h.prepare_step(s["noise"])
            bk = buckets.select(h.n_tokens)
            assert bk.slots == min(t for t in (16, 32, 48) if n <= t), (n, bk.slots)
            got = run(s, bk)
            full = run(s, buckets.full)
            # the prefix K/V of the images and the prompt: bit-identical
            torch.testing.assert_close(got[1], full[1], rtol=0, atol=0)
            torch.testing.assert_close(got[2], full[2], rtol=0, atol=0)
            a, r = got[0].numpy(), full[0].numpy()
            diff = float(np.abs(a - r).max())
            cos = cosine64(a, r)
            report.append(f"n={n} bucket={bk.slots}: max|diff| {diff:.3g} cos {cos:.9f}")
            assert np.isfinite(a).all()
            assert cos >= 0.99999 and diff <= 1e-2 * float(np.abs(r).max()), report[-1]
            if bk is buckets.full or s["layout"] == "exact":
                np.testing.assert_array_equal(a, r)
        print(s["layout"] + ":\n" + "\n".join(report))
        assert buckets.captures == captures   # selection never captures

    def test_full_length_scales_cover_every_bucket(setup):
        """One scale set per site: a bucket's twin measures the same sites, each prefix site's amax at most the
        full length's (its rows are the full length's rows without the padded tail)."""
        s = setup
        h, buckets, scales = s["h"], s["buckets"], s["scales"]
        write_prompt(h, 12, s["rng"])
        h.prepare_step(s["noise"])
        amax = {}
        for bk in (buckets.full, buckets.bucket(16)):
            assert cuda_forward.quant_sites(bk.d) == cuda_forward.quant_sites(buckets.full.d)
            scales.amax.zero_()
            cuda_forward.forward(s["w"], bk.b, bk.d, bk.attn, CalibContext(s["w"], s["ws"], scales.site_amax,
                                                                          kernels.amax_update, s["scratch"]), None)
            amax[bk.slots] = {k: float(v) for k, v in zip(cuda_forward.quant_sites(bk.d), scales.amax.tolist())}
        full, small = amax[48], amax[16]
        for site in full:
            if site.startswith(("vis.", "llm.")):
                assert small[site] <= full[site], site
        # the expert's sites: the same bits in the exact layout, moved only by the decoder attention's rounding in
        # the compact one
        ex = [k for k in full if k.startswith("ex.")]
        if s["layout"] == "exact":
            assert all(small[k] == full[k] for k in ex)
        else:
            assert max(abs(small[k] - full[k]) / max(full[k], 1e-6) for k in ex) < 0.05
