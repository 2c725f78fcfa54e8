"""The tokenizer is found where users already have it: the checkpoint, then openpi's download cache, then the Hugging
Face hub cache of google/paligemma-3b-pt-224 (every framework); the file used is logged and its vocabulary checked
against the checkpoint's embedding. The caches are temp dirs named through the real environment variables."""
from __future__ import annotations

import logging
import shutil

import pytest

import flash_rt
from flash_rt.errors import TokenizerError
from flash_rt.io.prompt import FlashRTWarning
from flash_rt.io.tokenizer import find_tokenizer, load_tokenizer
from flash_rt.testing.tokenizer import build_tiny_tokenizer

HF_DIR = "models--google--paligemma-3b-pt-224"


@pytest.fixture(scope="module")
def tok512(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.model")


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty openpi and HF caches in tmp_path (HF_HUB_CACHE unset, so HF_HOME decides)."""
    monkeypatch.setenv("OPENPI_DATA_HOME", str(tmp_path / "openpi"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    return tmp_path


def _hf_snapshot(hub, tok, rev="abc123", main=True):
    snap = hub / HF_DIR / "snapshots" / rev
    snap.mkdir(parents=True)
    shutil.copy(tok, snap / "tokenizer.model")
    if main:
        (hub / HF_DIR / "refs").mkdir(parents=True, exist_ok=True)
        (hub / HF_DIR / "refs" / "main").write_text(rev)
    return snap / "tokenizer.model"


def test_lookup_order_checkpoint_then_openpi_then_hf(caches, tok512, caplog):
    ckpt = caches / "ckpt"
    ckpt.mkdir()
    hf = _hf_snapshot(caches / "hf" / "hub", tok512)
    assert find_tokenizer(ckpt) == hf
    op = caches / "openpi" / "big_vision" / "paligemma_tokenizer.model"
    op.parent.mkdir(parents=True)
    shutil.copy(tok512, op)
    assert find_tokenizer(ckpt) == op
    shutil.copy(tok512, ckpt / "tokenizer.model")
    assert find_tokenizer(ckpt) == ckpt / "tokenizer.model"
    op.unlink()
    (ckpt / "tokenizer.model").unlink()
    with caplog.at_level(logging.INFO, logger="flash_rt.tokenizer"):
        load_tokenizer(ckpt, vocab=512)
    assert str(hf) in caplog.text   # the file used is logged


def test_hf_hub_cache_env_and_revisions(caches, tok512, monkeypatch):
    hub = caches / "elsewhere"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))   # wins over HF_HOME
    _hf_snapshot(caches / "hf" / "hub", tok512, rev="home")
    old = _hf_snapshot(hub, tok512, rev="old", main=False)
    assert find_tokenizer(None) == old
    new = _hf_snapshot(hub, tok512, rev="new")     # refs/main names it
    assert find_tokenizer(None) == new


def test_default_openpi_home_is_under_the_user_cache(monkeypatch, tmp_path, tok512):
    monkeypatch.delenv("OPENPI_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "nohub"))
    f = tmp_path / ".cache" / "openpi" / "big_vision" / "paligemma_tokenizer.model"
    f.parent.mkdir(parents=True)
    shutil.copy(tok512, f)
    assert find_tokenizer(None) == f


def test_nothing_found_names_every_place(caches):
    with pytest.raises(TokenizerError) as e:
        find_tokenizer(caches / "nockpt")
    msg = str(e.value)
    assert str(caches / "openpi" / "big_vision" / "paligemma_tokenizer.model") in msg
    assert str(caches / "hf" / "hub" / HF_DIR) in msg and "tokenizer=" in msg


def test_vocabulary_is_checked_against_the_embedding(caches, tok512, tmp_path):
    op = caches / "openpi" / "big_vision" / "paligemma_tokenizer.model"
    op.parent.mkdir(parents=True)
    shutil.copy(tok512, op)
    # a shared-cache file must be exactly the checkpoint's vocabulary
    with pytest.raises(TokenizerError, match=r"has 512 pieces but the checkpoint's token embedding has 257152 rows"):
        load_tokenizer(caches / "ckpt", vocab=257152)
    # more pieces than embedding rows: always an error (ids would index past the table)
    with pytest.raises(TokenizerError, match=r"512 pieces .* 300 rows"):
        load_tokenizer(None, explicit=tok512, vocab=300)
    # a smaller vocabulary chosen on purpose only warns
    with pytest.warns(FlashRTWarning, match="fewer than the checkpoint's 1024"):
        assert load_tokenizer(None, explicit=tok512, vocab=1024).vocab_size == 512


def test_a_torch_checkpoint_without_tokenizer_uses_the_openpi_cache(caches, tiny_openpi, tok512):
    ckpt = caches / "no_tok"
    shutil.copytree(tiny_openpi, ckpt)
    (ckpt / "tokenizer.model").unlink()
    op = caches / "openpi" / "big_vision" / "paligemma_tokenizer.model"
    op.parent.mkdir(parents=True)
    shutil.copy(tok512, op)
    pol = flash_rt.load_model(ckpt, hardware="cpu", num_views=1)
    assert pol.frontend.host.encoder.tokenizer.path == op
    pol.set_prompt("pick up the red block")
