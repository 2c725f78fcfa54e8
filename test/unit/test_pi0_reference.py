"""The Pi0 FP32 reference against an independent, straightforward joint forward written here.

The independent version follows openpi's training-time formulation instead of the reference's inference one: no KV
cache, every denoising step runs the WHOLE sequence [images, prompt, state, actions] through both experts layer by
layer (prefix rows through the PaliGemma weights, suffix rows through the expert's), with one 2-D mask built from
the big_vision cumsum rule over ar = [0...0 | 1 | 1, 0...0]. If the reference put the state token in the wrong
mask block, let it see the actions, dropped a `1 + w`, or mixed up the action/time concat order, the two disagree.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flash_rt.errors import CheckpointError
from flash_rt.models.pi0.config import infer_config
from flash_rt.models.pi0.keys import expected_shapes, validate_shapes
from flash_rt.models.pi0.reference import Pi0Reference
from flash_rt.testing.pi0_checkpoint import TINY_PI0_CONFIG as C, tiny_pi0_state_dict

VIS = "paligemma_with_expert.paligemma.model.vision_tower.vision_model."
LLM = "paligemma_with_expert.paligemma.model.language_model."
EXP = "paligemma_with_expert.gemma_expert.model."


def _rms(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + 1e-6) * (1 + w)


def _rope(x, pos):            # x [T, n, h], pos [T]
    h = x.shape[-1]
    f = 10000.0 ** (-torch.arange(0, h // 2, dtype=torch.float64) * 2 / h)
    a = pos.double()[:, None] * f[None]
    c, s = torch.cos(a).float()[:, None], torch.sin(a).float()[:, None]
    x1, x2 = x[..., :h // 2], x[..., h // 2:]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)


def _attn(q, k, v, mask):     # q [T, n, h], k/v [T, 1, h], mask [T, T]
    sc = torch.einsum("qnh,kh->nqk", q, k[:, 0]) / math.sqrt(q.shape[-1])
    sc = sc.masked_fill(~mask[None], -1e30)   # padded query rows: garbage, never read
    return torch.einsum("nqk,kh->qnh", torch.softmax(sc, -1), v[:, 0]).reshape(q.shape[0], -1)


def _siglip(sd, img):         # img [V, 3, S, S] -> [V * 256, width]
    x = F.conv2d(img, sd[VIS + "embeddings.patch_embedding.weight"], sd[VIS + "embeddings.patch_embedding.bias"],
                 stride=C.patch_size).flatten(2).transpose(1, 2) + sd[VIS + "embeddings.position_embedding.weight"]
    n, hd = C.vis_heads, C.vis_width // C.vis_heads

    def ln(t, p):
        return F.layer_norm(t, (C.vis_width,), sd[p + ".weight"], sd[p + ".bias"], 1e-6)

    def lin(t, p):
        return t @ sd[p + ".weight"].T + sd[p + ".bias"]
    for i in range(C.vis_layers):
        p = f"{VIS}encoder.layers.{i}."
        h = ln(x, p + "layer_norm1")
        q, k, v = (lin(h, p + f"self_attn.{m}_proj").unflatten(-1, (n, hd)).transpose(1, 2) for m in "qkv")
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        x = x + lin(a.transpose(1, 2).flatten(2), p + "self_attn.out_proj")
        x = x + lin(F.gelu(lin(ln(x, p + "layer_norm2"), p + "mlp.fc1"), approximate="tanh"), p + "mlp.fc2")
    x = ln(x, VIS + "post_layernorm")
    proj = "paligemma_with_expert.paligemma.model.multi_modal_projector.linear"
    return (lin(x, proj)).reshape(-1, C.width)


def _joint_velocity(sd, prefix, pad, state, x_t, t):
    """Whole sequence, both experts per layer, one mask -- openpi's compute_loss-style forward."""
    H = x_t.shape[0]
    freq = torch.linspace(0, 1, C.ex_width // 2, dtype=torch.float64)
    ang = t * 2 * math.pi / (4e-3 * (4.0 / 4e-3) ** freq)
    temb = torch.cat([torch.sin(ang), torch.cos(ang)]).float()
    act = x_t @ sd["action_in_proj.weight"].T + sd["action_in_proj.bias"]
    hid = torch.cat([act, temb.expand(H, -1)], 1) @ sd["action_time_mlp_in.weight"].T + sd["action_time_mlp_in.bias"]
    at = (hid * torch.sigmoid(hid)) @ sd["action_time_mlp_out.weight"].T + sd["action_time_mlp_out.bias"]
    st = state @ sd["state_proj.weight"].T + sd["state_proj.bias"]
    suf = torch.cat([st[None], at], 0)
    P = prefix.shape[0]
    full_pad = torch.cat([pad, torch.ones(1 + H, dtype=torch.bool)])
    ar = torch.zeros(P + 1 + H, dtype=torch.long)
    ar[P] = ar[P + 1] = 1
    c = torch.cumsum(ar, 0)
    mask = (c[None, :] <= c[:, None]) & full_pad[None] & full_pad[:, None]
    pos = torch.cumsum(full_pad.long(), 0) - 1
    xs = [prefix.clone(), suf]
    for i in range(C.layers):
        qs, ks, vs, hs = [], [], [], []
        for x, root in zip(xs, (LLM, EXP)):
            p = f"{root}layers.{i}."
            h = _rms(x, sd[p + "input_layernorm.weight"])
            hs.append(h)
            qs.append((h @ sd[p + "self_attn.q_proj.weight"].T).unflatten(-1, (C.heads, C.head_dim)))
            ks.append((h @ sd[p + "self_attn.k_proj.weight"].T).unflatten(-1, (1, C.head_dim)))
            vs.append((h @ sd[p + "self_attn.v_proj.weight"].T).unflatten(-1, (1, C.head_dim)))
        q, k, v = _rope(torch.cat(qs), pos), _rope(torch.cat(ks), pos), torch.cat(vs)
        a = _attn(q, k, v, mask)
        out = []
        for x, root, rows in zip(xs, (LLM, EXP), (slice(0, P), slice(P, None))):
            p = f"{root}layers.{i}."
            x = x + a[rows] @ sd[p + "self_attn.o_proj.weight"].T
            h = _rms(x, sd[p + "post_attention_layernorm.weight"])
            g = h @ sd[p + "mlp.gate_proj.weight"].T
            u = h @ sd[p + "mlp.up_proj.weight"].T
            x = x + (F.gelu(g, approximate="tanh") * u) @ sd[p + "mlp.down_proj.weight"].T
            out.append(x)
        xs = out
    h = _rms(xs[1][1:], sd[EXP + "norm.weight"])
    return h @ sd["action_out_proj.weight"].T + sd["action_out_proj.bias"]


def _independent(sd, img, img_mask, tokens, tok_mask, state, noise):
    x_img = _siglip(sd, img)
    emb = sd["paligemma_with_expert.paligemma.lm_head.weight"][tokens] * math.sqrt(C.width)
    prefix = torch.cat([x_img, emb])
    pad = torch.cat([img_mask[:, None].expand(-1, C.num_patches).reshape(-1), tok_mask])
    x, t = noise.clone(), 1.0
    for _ in range(C.num_steps):
        x = x + (-1.0 / C.num_steps) * _joint_velocity(sd, prefix, pad, state, x, t)
        t -= 1.0 / C.num_steps
    return x


def _inputs(seed, views=2):
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(views, 3, 224, 224, generator=g) * 2 - 1
    img_mask = torch.tensor([True] * (views - 1) + [False])
    tokens = torch.randint(0, C.vocab, (C.max_token_len,), generator=g)
    tok_mask = torch.arange(C.max_token_len) < 9
    state = torch.randn(C.state_dim, generator=g)
    noise = torch.randn(C.action_horizon, C.action_dim, generator=g)
    return img, img_mask, tokens, tok_mask, state, noise


@pytest.fixture(scope="module")
def sd():
    return tiny_pi0_state_dict(C, seed=3)


def test_reference_matches_the_independent_joint_forward(sd):
    ref = Pi0Reference(sd, C)
    for seed in (0, 1):
        img, im, tok, tm, st, nz = _inputs(seed)
        got = ref.sample_actions(img[None], im[None], tok[None], tm[None], st[None], nz[None])[0]
        want = _independent(sd, img, im, tok, tm, st, nz)
        assert torch.isfinite(got).all()
        assert (got - want).abs().max().item() <= 1e-4, (got - want).abs().max().item()


def test_state_token_changes_the_chunk_and_actions_do_not_reach_it(sd):
    """The state must matter (it enters through state_proj), and the joint forward with the state row allowed to
    see the actions gives another answer -- so the comparison above can see a wrong mask."""
    ref = Pi0Reference(sd, C)
    img, im, tok, tm, st, nz = _inputs(2)
    a = ref.sample_actions(img[None], im[None], tok[None], tm[None], st[None], nz[None])[0]
    b = ref.sample_actions(img[None], im[None], tok[None], tm[None], (st + 1.0)[None], nz[None])[0]
    assert (a - b).abs().max().item() > 1e-3


def test_config_inferred_from_shapes_and_pi05_rejected(sd):
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    cfg = infer_config(shapes, {"vision_num_heads": C.vis_heads, "head_dim": C.head_dim,
                                "action_horizon": C.action_horizon})
    assert cfg == C
    validate_shapes(shapes, cfg)
    assert infer_config(shapes, {"vision_num_heads": 2, "head_dim": 16}).max_token_len == 48   # openpi's Pi0 default
    bad = dict(shapes)
    del bad["state_proj.bias"]
    bad["time_mlp_in.weight"] = (32, 32)
    with pytest.raises(CheckpointError, match="Pi0.5"):
        infer_config(bad, {"vision_num_heads": 2, "head_dim": 16})
    with pytest.raises(CheckpointError, match=r"missing +state_proj.bias(.|\n)*unexpected +time_mlp_in.weight"):
        validate_shapes(bad, cfg)
    assert set(expected_shapes(cfg)) >= {"state_proj.weight", "action_time_mlp_in.weight", EXP + "norm.weight"}
    # lerobot's layout: embed_tokens beside (or instead of) the tied lm_head -- a mis-shaped one is named (Pi0's
    # own copy of the check let it through; it shares Pi0.5's check_schema now)
    from flash_rt.models.pi05.config import EMBED_LM_HEAD, EMBED_TOKENS
    lerobot = dict(shapes)
    lerobot[EMBED_TOKENS] = shapes[EMBED_LM_HEAD]
    validate_shapes(lerobot, cfg)
    validate_shapes({k: v for k, v in lerobot.items() if k != EMBED_LM_HEAD}, cfg)
    lerobot[EMBED_TOKENS] = (shapes[EMBED_LM_HEAD][0] - 1, shapes[EMBED_LM_HEAD][1])
    with pytest.raises(CheckpointError, match=r"mis-shaped [\w.]*embed_tokens"):
        validate_shapes(lerobot, cfg)


def test_full_size_schema_and_yaml():
    """The full-size Pi0 schema holds the spec's parameter count (pi05_spec.md 1g: 3,238,048,528 used at inference;
    777 tensors in the file = these + the unused expert lm_head), and configs/pi0.yaml states Pi0Config()."""
    from pathlib import Path

    import yaml

    from flash_rt.models.pi0.config import Pi0Config
    s = expected_shapes(Pi0Config())
    assert len(s) + 1 == 777 and sum(math.prod(v) for v in s.values()) == 3_238_048_528
    y = yaml.safe_load((Path(__file__).resolve().parents[2] / "flash_rt" / "configs" / "pi0.yaml").read_text())
    assert y["model"] == "pi0"
    flat = {k: v for section in y.values() if isinstance(section, dict) for k, v in section.items()}
    for k, v in flat.items():
        assert getattr(Pi0Config(), k) == v, f"configs/pi0.yaml {k}={v} but Pi0Config().{k}={getattr(Pi0Config(), k)}"
    assert flat["max_token_len"] == 48 and flat["discrete_state_input"] is False
