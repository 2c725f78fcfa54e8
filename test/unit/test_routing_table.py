"""The first-light cosine routing table (flash_rt/testing/first_light.py, printed in docs/plugin_model_template.md)
is measured, not guessed: each classic integration fault is injected into the tiny Pi0.5 model on the CPU (tiny
weights with the DROID norm stats of the full-size checkpoint), and the cosine of the faulty chunk against the
correct one, on the same observations and the same noise, must fall inside the band the table prints.

The correct engine equals the FP32 reference to 1e-4 (test_pi05_cpu_precision.py; asserted again here on the
first sample), so "vs the correct engine" is "vs the reference". Faults are injected where an integrator makes
them: into the loaded weights (a spec mistake), the host inputs (a preprocessing mistake), or one engine call for
the faulty run only (a pipeline mistake).
"""
import dataclasses
import os

import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.executors.torch_weights import rope_interleave_rows
from flash_rt.kernels import reference as K
from flash_rt.models.pi05.config import LLM
from flash_rt.models.pi05.flow import flow_schedule, precompute_modulation
from flash_rt.models.pi05.oracle import cosine64
from flash_rt.testing.first_light import ROUTES, markdown_table

SAMPLES = 4


@pytest.fixture(scope="module")
def sharp_tiny(tmp_path_factory):
    """The tiny Pi0.5 with the DROID norm stats, its attention sharpened (q/k projections x4) and the expert's
    attention output x8, so that its actions depend on the observation as a trained policy's do: with the plain
    random weights two different observations gave cosine 0.9999 (attention averaged 576 prefix tokens into one
    constant), and every prefix fault was invisible. Measured model-space cosine between observations: ~0.95."""
    from safetensors.torch import load_file, save_file

    from flash_rt.testing import build_tiny_checkpoint
    from flash_rt.testing.full_size import full_size_norm_stats
    ck = build_tiny_checkpoint(tmp_path_factory.mktemp("sharp_tiny"), layout="openpi",
                               norm_stats=full_size_norm_stats())
    sd = load_file(str(ck / "model.safetensors"))
    for k in sd:
        if "q_proj" in k or "k_proj" in k:
            sd[k] = sd[k] * 4.0
        if "gemma_expert" in k and "o_proj" in k:
            sd[k] = sd[k] * 8.0
    save_file(sd, str(ck / "model.safetensors"))
    return ck


def _observations(pol, n):
    """Camera frames with structure (4 x 4 blocks of colour; uniform noise frames all look alike to a model)."""
    rng = np.random.default_rng(7)
    obs = []
    for _ in range(n):
        imgs = [np.kron(rng.integers(0, 256, (4, 4, 3)), np.ones((56, 56, 1))).astype(np.uint8)
                for _ in range(pol.num_views)]
        state = rng.uniform(-0.8, 0.8, pol.state_dim)
        noise = rng.standard_normal((pol.action_horizon, 32)).astype(np.float32)
        obs.append((imgs, state, noise))
    return obs


PROMPT = "pick up the red cube and put it in the bowl"


# -- fault injectors: (policy, stage) -> None; stage "load" after loading, "images" on the images list ------------
def _cols(w, start, stop, fn):
    w[:, start:stop] = fn(w[:, start:stop].t()).t()


def qkv_head_interleave(fe):
    """q columns read as [head_dim, heads] instead of [heads, head_dim] (a wrong reshape in the QKV fusion)."""
    c = fe.cfg
    for p in [f"llm.{i}." for i in range(c.layers)] + [f"ex.{i}." for i in range(c.layers)]:
        _cols(fe.w[p + "qkv_w"], 0, c.heads * c.head_dim,
              lambda r: r.reshape(c.head_dim, c.heads, -1).transpose(0, 1).reshape(c.heads * c.head_dim, -1))


def norm_scale_w_not_1_plus_w(fe):
    """Gemma's RMSNorm scale folded as `w` instead of `1 + w` (prefix pre-attention and pre-MLP norms)."""
    for i in range(fe.cfg.layers):
        for name, norm in (("qkv_w", "input_layernorm"), ("gu_w", "post_attention_layernorm")):
            nw = fe.source.get(f"{LLM}layers.{i}.{norm}.weight").float()
            fe.w[f"llm.{i}.{name}"].mul_((nw / (1.0 + nw))[:, None])


def transposed_square_weight(fe):
    """A square nn.Linear weight (SigLIP out_proj, 32 x 32 in the tiny model) stored without its transpose."""
    for i in range(fe.cfg.vis_layers):
        w = fe.w[f"vis.{i}.o_w"]
        w.copy_(w.t().clone())


def rope_pairs_not_halves(fe):
    """RoPE rotates pairs (2j, 2j+1) where the model rotates halves (j, j + head_dim/2)."""
    c = fe.cfg
    q, k = c.heads * c.head_dim, c.kv_heads * c.head_dim
    for p in [f"llm.{i}." for i in range(c.layers)] + [f"ex.{i}." for i in range(c.layers)]:
        _cols(fe.w[p + "qkv_w"], 0, q, lambda r: rope_interleave_rows(r, c.heads))
        _cols(fe.w[p + "qkv_w"], q, q + k, lambda r: rope_interleave_rows(r, c.kv_heads))


def time_mlp_transposed(fe):
    """The action expert's time MLP input weight (square) loaded without its transpose."""
    w = fe.w["time_in_w"]
    w.copy_(w.t().clone())
    times, _ = flow_schedule(fe.cfg.num_steps)
    fe.b["mods"].copy_(precompute_modulation(fe.w, fe.cfg, times))


def embed_not_scaled(fe):
    """Token embeddings not multiplied by sqrt(width)."""
    fe.d = dataclasses.replace(fe.d, embed_scale=1.0)


def one_gemm_scale_off(fe):
    """One GEMM 25 % off (an FP8 weight scale taken from the wrong tensor): the prefix's first down projection."""
    fe.w["llm.0.down_w"].mul_(1.25)


def flow_direction_reversed(fe):
    """Euler steps with dt > 0 (t running the wrong way)."""
    fe.b["dt"].neg_()


def ada_norm_unused(fe):
    """The expert's adaRMS modulation dropped (plain RMSNorm, no gate): Pi0's norms used for Pi0.5."""
    m = fe.b["mods"]
    m[:, :, 0].zero_()
    m[:, :, 1].zero_()
    m[:, :, 2].fill_(1.0)


LOAD_FAULTS = {f.__name__: f for f in (qkv_head_interleave, norm_scale_w_not_1_plus_w, transposed_square_weight,
                                       rope_pairs_not_halves, time_mlp_transposed, embed_not_scaled,
                                       one_gemm_scale_off, flow_direction_reversed, ada_norm_unused)}


def _image_0_1(img, *, out):
    out.copy_(img.permute(0, 3, 1, 2).float() / 255.0)
    return out


def _no_padding_mask(mask, *, out):
    out.zero_()
    return out


_rope = K.rope_qkv_split


def _rope_reversed(qkv, positions, **kw):
    """rotate_half with the sign on the wrong half ([x2, -x1]): the same as rotating by -angle."""
    return _rope(qkv, -positions, **kw)


# pipeline faults: (module attribute of flash_rt.kernels.reference, faulty function) during the faulty step
CALL_FAULTS = {"image_range_0_1": ("uint8_to_model", _image_0_1),
               "prompt_padding_not_masked": ("key_padding_bias", _no_padding_mask),
               "rope_rotation_reversed": ("rope_qkv_split", _rope_reversed)}
# host faults: how the faulty run's inputs or output differ
HOST_FAULTS = ("image_bgr", "state_not_in_prompt", "state_not_normalized", "state_tokens_misplaced",
               "missing_unnormalize", "unmatched_noise")


def _state_first_prompt(pol, state):
    """Pi0.5's prompt with the state in the wrong place: "State: <bins>; Task: <text>\nAction: ", pre-tokenized."""
    from flash_rt.io.prompt import clean_prompt, discretize_state
    host = pol.frontend.host
    host.write_state(state)
    bins = " ".join(str(int(b)) for b in discretize_state(host.state_norm[:state.size]))
    tok = host.encoder.tokenizer
    ids = [tok.bos_id] + tok.encode(f"State: {bins}; Task: {clean_prompt(PROMPT)}\nAction: ")
    return np.array(ids), np.ones(len(ids), bool)


@pytest.fixture(scope="module")
def measured(sharp_tiny):
    """fault -> [cosine per sample] against the correct engine on the same inputs."""
    def load(**kw):
        return flash_rt.load_model(sharp_tiny, hardware="cpu", num_views=2, **kw)

    good = load()
    obs = _observations(good, SAMPLES)
    want = []
    for n, (imgs, state, noise) in enumerate(obs):
        want.append(good.predict(imgs, state=state, prompt=PROMPT, noise=noise))
        if n == 0:
            assert np.abs(want[0] - good.reference_chunk()).max() <= 1e-4
    res = {}
    for name in list(LOAD_FAULTS) + list(CALL_FAULTS) + list(HOST_FAULTS):
        bad = load(discrete_state_input=False) if name == "state_not_in_prompt" else load()
        if name in LOAD_FAULTS:
            with torch.no_grad():
                LOAD_FAULTS[name](bad.frontend)
        cos = []
        for n, (imgs, state, noise) in enumerate(obs):
            if name == "image_bgr":
                imgs = [np.ascontiguousarray(i[..., ::-1]) for i in imgs]
            if name == "unmatched_noise":
                noise = obs[(n + 1) % len(obs)][2]
            if name in CALL_FAULTS:
                attr, fn = CALL_FAULTS[name]
                mp = pytest.MonkeyPatch()
                mp.setattr(K, attr, fn)
                try:
                    got = bad.predict(imgs, state=state, prompt=PROMPT, noise=noise)
                finally:
                    mp.undo()
            elif name == "state_tokens_misplaced":
                got = bad.predict(imgs, state=state, prompt=_state_first_prompt(bad, state), noise=noise)
            elif name == "state_not_normalized":       # the raw state discretized into the prompt
                host = bad.frontend.host
                host.write_images(imgs)
                host.write_state(state)
                host.state_norm[:state.size] = host.state_raw[:state.size]
                bad.set_prompt(PROMPT)
                got = bad.step(noise).copy()
            else:
                got = bad.predict(imgs, state=state, prompt=PROMPT, noise=noise)
            if name == "missing_unnormalize":
                got = bad.frontend.host.model_out[:, :bad.action_dim].copy()
            cos.append(cosine64(got, want[n]))
        res[name] = cos
    if os.environ.get("FLASH_RT_PRINT_ROUTES"):
        for k, v in res.items():
            print(f"ROUTE {k:28s} min {min(v):.4f} max {max(v):.4f}")
    return res


def test_every_fault_falls_in_its_printed_band(measured):
    routes = {r.fault: r for r in ROUTES}
    assert set(routes) == set(measured), (sorted(set(routes) ^ set(measured)))
    for fault, cos in measured.items():
        r = routes[fault]
        assert r.lo <= min(cos) and max(cos) <= r.hi, f"{fault}: measured {min(cos):.4f}..{max(cos):.4f}, " \
                                                     f"table says {r.lo}..{r.hi}"


def test_the_doc_prints_the_table_of_the_data_module():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "plugin_model_template.md").read_text()
    assert markdown_table() in doc, "docs/plugin_model_template.md: regenerate the routing table with " \
                                    "python -m flash_rt.testing.first_light"
