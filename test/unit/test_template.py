"""The new-model template is code: copy it into a temporary plugin package for a TOY model, fill it by exactly the
steps its README documents (the copy and rename tables are read from the README itself), register the cell at
run time and get first inference on the CPU matching the toy's own FP32 reference (max |d| <= 1e-4).

The toy has its own checkpoint names and dims (a real safetensors file + config.json) and its own reference,
written here from the toy's definition in plain PyTorch, independent of the engine's kernels: Pi0-shaped (image
patches + prompt tokens as the prefix, a state token + action tokens as the suffix over the cached prefix,
Gemma-style RMSNorm x * (1 + w), GQA, half-split RoPE, GeGLU, flow matching with Euler steps).
"""
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import flash_rt
from flash_rt import hardware

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "flash_rt" / "frontends" / "torch" / "_template"
PKG, M, CAMEL = "toyvla_pkg", "toyvla", "Toyvla"

TOY = dict(width=48, layers=2, heads=4, kv_heads=2, head_dim=12, mlp=80, vocab=64, patch=4, image_size=16,
           state_dim=5, action_dim=6, horizon=7, max_token_len=9, num_steps=3)
# the toy checkpoint's own tensor names (what an integrator writes into KEYS)
TOY_KEYS = {
    "patch_w": "tower.stem.weight", "patch_b": "tower.stem.bias", "pos_emb": "tower.positions",
    "embed": "lm.tok_embeddings", "norm1": "blocks.{i}.attn_norm.scale", "q": "blocks.{i}.wq.weight",
    "k": "blocks.{i}.wk.weight", "v": "blocks.{i}.wv.weight", "o": "blocks.{i}.wo.weight",
    "norm2": "blocks.{i}.ffn_norm.scale", "gate": "blocks.{i}.w_gate.weight", "up": "blocks.{i}.w_up.weight",
    "down": "blocks.{i}.w_down.weight", "final_norm": "head.norm.scale", "state_w": "head.state_in.weight",
    "state_b": "head.state_in.bias", "action_in_w": "head.act_in.weight", "action_in_b": "head.act_in.bias",
    "time_in_w": "head.t1.weight", "time_in_b": "head.t1.bias", "time_out_w": "head.t2.weight",
    "time_out_b": "head.t2.bias", "action_out_w": "head.act_out.weight", "action_out_b": "head.act_out.bias",
}


def toy_weights(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    t = TOY
    D, hd, p = t["width"], t["head_dim"], t["patch"]
    n_patches = (t["image_size"] // p) ** 2

    def r(*shape, s=0.2):
        return (torch.randn(*shape, generator=g) * s).contiguous()
    sd = {"tower.stem.weight": r(D, 3, p, p), "tower.stem.bias": r(D), "tower.positions": r(n_patches, D),
          "lm.tok_embeddings": r(t["vocab"], D, s=0.05), "head.norm.scale": r(D),
          "head.state_in.weight": r(D, t["state_dim"]), "head.state_in.bias": r(D),
          "head.act_in.weight": r(D, t["action_dim"]), "head.act_in.bias": r(D),
          "head.t1.weight": r(D, D), "head.t1.bias": r(D), "head.t2.weight": r(D, D), "head.t2.bias": r(D),
          "head.act_out.weight": r(t["action_dim"], D), "head.act_out.bias": r(t["action_dim"])}
    for i in range(t["layers"]):
        b = f"blocks.{i}."
        sd.update({b + "attn_norm.scale": r(D), b + "wq.weight": r(t["heads"] * hd, D),
                   b + "wk.weight": r(t["kv_heads"] * hd, D), b + "wv.weight": r(t["kv_heads"] * hd, D),
                   b + "wo.weight": r(D, t["heads"] * hd), b + "ffn_norm.scale": r(D),
                   b + "w_gate.weight": r(t["mlp"], D), b + "w_up.weight": r(t["mlp"], D),
                   b + "w_down.weight": r(D, t["mlp"])})
    return sd


def write_toy_checkpoint(path: Path, seed=0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(toy_weights(seed), str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "num_attention_heads": TOY["heads"], "num_key_value_heads": TOY["kv_heads"], "head_dim": TOY["head_dim"],
        "image_size": TOY["image_size"], "action_horizon": TOY["horizon"], "max_token_len": TOY["max_token_len"],
        "num_inference_steps": TOY["num_steps"]}))
    return path


# -- the toy's own FP32 reference (the "source model"), written from its definition ---------------------------
TOY_REFERENCE = '''
"""The toy VLA's FP32 reference, in plain PyTorch, from the toy's definition (the source model)."""
import math

import torch
import torch.nn.functional as F


class ToyvlaReference:
    def __init__(self, weights, cfg, device="cpu"):
        self.p = {k: v.to(device, torch.float32) for k, v in weights.items()}
        self.cfg, self.device = cfg, device

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1.0 + w)

    def rope(self, x, pos):                       # x [T, heads, hd]; rotate_half
        hd = x.shape[-1]
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32, device=x.device) / hd))
        ang = pos.float()[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos(), ang.cos()], -1)[:, None], torch.cat([ang.sin(), ang.sin()], -1)[:, None]
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def layer(self, i, x, pos, past, key_ok):
        c, p = self.cfg, self.p
        L = lambda n: p[f"blocks.{i}.{n}"]
        h = self.rms(x, L("attn_norm.scale"))
        q = (h @ L("wq.weight").T).view(-1, c.heads, c.head_dim)
        k = (h @ L("wk.weight").T).view(-1, c.kv_heads, c.head_dim)
        v = (h @ L("wv.weight").T).view(-1, c.kv_heads, c.head_dim)
        q, k = self.rope(q, pos), self.rope(k, pos)
        kk, vv = (k, v) if past is None else (torch.cat([past[0], k]), torch.cat([past[1], v]))
        rep = c.heads // c.kv_heads
        kr, vr = kk.repeat_interleave(rep, dim=1), vv.repeat_interleave(rep, dim=1)
        s = torch.einsum("qnh,knh->nqk", q, kr) / math.sqrt(c.head_dim)
        s = s.masked_fill(~key_ok[None, None, :], float("-inf"))
        att = torch.einsum("nqk,knh->qnh", s.softmax(-1), vr).reshape(x.shape[0], -1)
        x = x + att @ L("wo.weight").T
        h = self.rms(x, L("ffn_norm.scale"))
        x = x + (F.gelu(h @ L("w_gate.weight").T, approximate="tanh") * (h @ L("w_up.weight").T)) @ L("w_down.weight").T
        return x, (k, v)

    @torch.no_grad()
    def sample_actions(self, images, image_mask, token_ids, token_mask, state, noise):
        c, p, dev = self.cfg, self.p, self.device
        images, noise, state = images.to(dev), noise.to(dev).float(), state.to(dev).float()
        img = F.conv2d(images, p["tower.stem.weight"], p["tower.stem.bias"], stride=c.patch_size)
        img = img.flatten(2).transpose(1, 2) + p["tower.positions"]                 # [V, patches, D]
        txt = p["lm.tok_embeddings"][token_ids.to(dev)] * math.sqrt(c.width)
        x = torch.cat([img.reshape(-1, c.width), txt])
        ok = torch.cat([image_mask.to(dev).repeat_interleave(img.shape[1]), token_mask.to(dev)])
        pos = (torch.cumsum(ok.long(), 0) - 1).clamp(min=0)
        kv = []
        for i in range(c.layers):
            x, cache = self.layer(i, x, pos, None, ok)
            kv.append(cache)
        n_suffix = 1 + noise.shape[0]
        spos = ok.long().sum() + torch.arange(n_suffix, device=dev)
        sok = torch.cat([ok, torch.ones(n_suffix, dtype=torch.bool, device=dev)])
        xt, n = noise.clone(), c.num_steps
        for s in range(n):
            t = torch.tensor([1.0 - s / n], dtype=torch.float32, device=dev).double()
            frac = torch.linspace(0.0, 1.0, c.width // 2, dtype=torch.float64, device=dev)
            period = 4e-3 * (4.0 / 4e-3) ** frac
            ang = (2 * math.pi / period)[None, :] * t[:, None]
            temb = torch.cat([ang.sin(), ang.cos()], 1).float()
            temb = F.silu(temb @ p["head.t1.weight"].T + p["head.t1.bias"]) @ p["head.t2.weight"].T + p["head.t2.bias"]
            a = xt @ p["head.act_in.weight"].T + p["head.act_in.bias"] + temb
            st = state @ p["head.state_in.weight"].T + p["head.state_in.bias"]
            h = torch.cat([st[None], a])
            for i in range(c.layers):
                h, _ = self.layer(i, h, spos, kv[i], sok)
            v = self.rms(h[1:], p["head.norm.scale"]) @ p["head.act_out.weight"].T + p["head.act_out.bias"]
            xt = xt + (-1.0 / n) * v
        return xt
'''


def readme_table(section: str) -> list[list[str]]:
    """Rows of the first table under the README heading `section`, each cell's backticked text."""
    text = (TEMPLATE / "README.md").read_text()
    body = text.split(section, 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in body.splitlines() if ln.startswith("|") and "---" not in ln][1:]   # drop the header
    return [[(re.findall(r"`([^`]*)`", cell) or [cell.strip()])[0] for cell in row.strip("|").split("|")]
            for row in rows]


def fill_template(dest: Path, pkg_name: str = PKG, m: str = M, camel: str = CAMEL) -> Path:
    """Copy + rename exactly as README.md says (plugin column), then the step-2 edit of KEYS."""
    pkg = dest / pkg_name
    pkg.mkdir(parents=True)
    subs = {"<pkg>": pkg_name, "<m>": m, "<M>": camel}

    def fill(s):
        for k, v in subs.items():
            s = s.replace(k, v)
        return s
    renames = [(old, fill(plugin)) for old, _repo, plugin in readme_table("## 2. Rename")]
    copied = []
    for src, _repo, plugin in readme_table("## 1. Copy"):
        target = dest / fill(plugin)
        if "empty" in src:
            target.write_text("")
            continue
        if not src.endswith(".py"):
            continue                                  # "(you write it)": the reference, below
        text = (TEMPLATE / src).read_text()
        for old, new in renames:
            text = text.replace(old, new)
        target.write_text(text)
        copied.append(target)
    assert len(copied) == 4, copied
    # step 1 of the order of work: the reference
    (pkg / "reference.py").write_text(TOY_REFERENCE.replace("ToyvlaReference", f"{camel}Reference"))
    # step 2: the right-hand sides of KEYS -> the toy checkpoint's names
    spec = pkg / f"_{m}_cpu_spec.py"
    text = spec.read_text()
    for name, key in TOY_KEYS.items():
        text, n = re.subn(rf'^(\s*"{name}": )"[^"]+"', rf'\1"{key}"', text, flags=re.M)
        assert n == 1, f"KEYS[{name!r}] not found once in the template's weights spec"
    spec.write_text(text)
    return pkg


@pytest.fixture(scope="module")
def toy_policy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    ckpt = write_toy_checkpoint(root / "ckpt")
    fill_template(root / "site")
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(root / "site"))
    flash_rt.register_pipeline(M, "torch", "cpu", f"{PKG}.{M}_cpu:{CAMEL}TorchFrontendCpu")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")             # the toy has no tokenizer and no norm stats
            pol = flash_rt.load_model(ckpt, config=M, hardware="cpu", num_views=2, seed=0)
        yield pol
    finally:
        hardware.unregister_pipeline(M, "torch", "cpu")
        mp.undo()


def _observe(pol, rng):
    for slot in range(pol.num_views):
        pol.write_image(slot, rng.integers(0, 256, (TOY["image_size"], TOY["image_size"], 3), dtype=np.uint8))
    pol.write_state(rng.standard_normal(TOY["state_dim"]))
    ids = rng.integers(1, TOY["vocab"], TOY["max_token_len"])
    mask = np.arange(TOY["max_token_len"]) < 6
    pol.set_prompt((ids, mask))


def test_filled_template_matches_the_toy_reference(toy_policy):
    pol = toy_policy
    assert type(pol.frontend).__name__ == f"{CAMEL}TorchFrontendCpu" and pol.frontend.cfg.layers == TOY["layers"]
    assert (pol.action_horizon, pol.action_dim) == (TOY["horizon"], TOY["action_dim"])
    rng = np.random.default_rng(3)
    worst = 0.0
    for trial in range(3):
        _observe(pol, rng)
        if trial == 2:
            pol.set_image_mask(1, False)              # a masked camera: its keys must be ignored by both
        out = pol.step().copy()
        ref = pol.reference_chunk()
        assert out.shape == ref.shape == (TOY["horizon"], TOY["action_dim"])
        worst = max(worst, float(np.abs(out - ref).max()))
        assert float(np.abs(ref).max()) > 0.1      # the comparison is not of two near-zero chunks
    assert worst <= 1e-4, worst


def test_filled_template_reference_reads_this_observations_state(toy_policy):
    """prepare_inputs() + reference_chunk() without a step (the rosbag report's path): the template's oracle once
    read the frontend's state buffer, which holds the last STEP's state -- Pi0's copy had the same trap."""
    pol = toy_policy
    rng = np.random.default_rng(8)
    _observe(pol, rng)
    pol.step()
    pol.write_state(rng.standard_normal(TOY["state_dim"]) + 3.0)
    pol.prepare_inputs()
    ref_only = pol.reference_chunk().copy()
    got = pol.step(pol.frontend.host.noise.copy())
    assert float(np.abs(got - ref_only).max()) <= 1e-4


def test_filled_template_takes_the_delta_mask(toy_policy):
    """A copy of the template takes action_delta_mask like every cell: the observed state added to the delta dims."""
    ckpt = toy_policy.frontend.checkpoint
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pol = flash_rt.load_model(ckpt, config=M, hardware="cpu", num_views=2, seed=0, action_delta_mask=[2, -1])
    assert pol.action_delta_mask_source == "action_delta_mask=" and pol.action_delta_mask[:3] == (True, True, False)
    rng = np.random.default_rng(9)
    _observe(toy_policy, rng)
    _observe(pol, np.random.default_rng(9))
    noise = toy_policy.frontend.host.noise.copy()
    a, b = toy_policy.step(noise).copy(), pol.step(noise).copy()
    state = pol.frontend.host.state_raw
    np.testing.assert_array_equal(b[:, 2:], a[:, 2:])
    np.testing.assert_allclose(b[:, :2], a[:, :2] + state[:2], rtol=0, atol=1e-5)
    assert float(np.abs(state[:2]).max()) > 1e-3                # a state that moves the delta dims


def test_filled_template_follows_the_repository_contract(toy_policy, tmp_path):
    """The filled cell is named by the rule, takes the loader options, and refuses what it does not take."""
    from flash_rt import api
    cls = type(toy_policy.frontend)
    assert set(api.LOADER_OPTIONS) <= api.frontend_options(cls)
    with pytest.raises(TypeError, match=r"discrete_state_input"):
        flash_rt.load_model(toy_policy.frontend.checkpoint, config=M, hardware="cpu", discrete_state_input=False)
    # the CPU cell refuses calibration with its reason, like Pi0.5's
    with pytest.raises(NotImplementedError, match="exact FP32"):
        toy_policy.calibrate()


def test_each_template_file_documents_its_step_and_translation_table():
    for n, name in enumerate(["weights_spec.py", "attention.py", "pipeline.py", "frontend.py"], start=2):
        doc = (TEMPLATE / name).read_text().split('"""')[1]
        assert doc.startswith(f"STEP {n} of 5"), name
        assert re.search(r"^\|.*\|\n\|[-| ]+\|$", doc, re.M), f"{name}: no translation table in the docstring"


def test_a_wrong_key_name_is_reported_with_the_fix(tmp_path, monkeypatch):
    """Step 2 done wrong (a name left as the template's): a CheckpointError names the key and the fix."""
    from flash_rt.errors import CheckpointError
    ckpt = write_toy_checkpoint(tmp_path / "ckpt")
    pkg = fill_template(tmp_path / "site", "toybad_pkg", "toybad", "Toybad")
    spec = pkg / "_toybad_cpu_spec.py"
    spec.write_text(spec.read_text().replace('"blocks.{i}.w_up.weight"', '"blocks.{i}.mlp.up_proj.weight"'))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    flash_rt.register_pipeline("toybad", "torch", "cpu", "toybad_pkg.toybad_cpu:ToybadTorchFrontendCpu")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.up_proj\.weight"):
                flash_rt.load_model(ckpt, config="toybad", hardware="cpu", num_views=2)
    finally:
        hardware.unregister_pipeline("toybad", "torch", "cpu")
