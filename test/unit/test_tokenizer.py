"""Tokenizer discovery/loading and the tiny test tokenizer (a real SentencePiece model trained here)."""

import time

import pytest

from flash_rt.errors import TokenizerError
from flash_rt.io.tokenizer import Tokenizer, find_tokenizer, load_tokenizer
from flash_rt.testing.tokenizer import build_tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.model")


def test_build_is_fast_deterministic_and_self_contained(tmp_path):
    t0 = time.perf_counter()
    a = build_tiny_tokenizer(tmp_path / "a" / "x.model")
    assert time.perf_counter() - t0 < 3.0
    (tmp_path / "b").mkdir()
    b = build_tiny_tokenizer(tmp_path / "b")  # an existing directory gets tokenizer.model
    assert b == tmp_path / "b" / "tokenizer.model"
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.model"]


def test_special_ids_like_paligemma(tiny_model):
    tok = Tokenizer(tiny_model)
    assert tok.bos_id == 2 and tok.pad_id == 0
    assert tok._sp.eos_id() == 1 and tok._sp.unk_id() == 3
    assert tok.vocab_size == 512


def test_encode_no_bos_eos_and_round_trip(tiny_model):
    tok = Tokenizer(tiny_model)
    for text in ["Task: pick up the red block, State: 0 128 255;\nAction: ", "ünïcödé 🤖 ok", "xyzzy_42"]:
        ids = tok.encode(text)
        assert ids and 2 not in ids and 1 not in ids and 3 not in ids  # byte fallback: no unk
        assert all(0 <= i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    assert tok.encode("\n") == [tok._sp.piece_to_id("\n")]


def test_find_in_checkpoint_dir_order(tmp_path, tiny_model):
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "paligemma_tokenizer.model").write_bytes(tiny_model.read_bytes())
    assert find_tokenizer(tmp_path) == tmp_path / "assets" / "paligemma_tokenizer.model"
    (tmp_path / "paligemma_tokenizer.model").write_bytes(tiny_model.read_bytes())
    assert find_tokenizer(tmp_path) == tmp_path / "paligemma_tokenizer.model"
    (tmp_path / "tokenizer.model").write_bytes(tiny_model.read_bytes())
    assert find_tokenizer(tmp_path) == tmp_path / "tokenizer.model"
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert find_tokenizer(tmp_path / "model.safetensors") == tmp_path / "tokenizer.model"  # file -> its dir
    assert load_tokenizer(tmp_path).bos_id == 2


def test_explicit_path(tmp_path, tiny_model):
    assert find_tokenizer(tmp_path, explicit=tiny_model) == tiny_model
    assert find_tokenizer(None, explicit=str(tiny_model)) == tiny_model
    assert find_tokenizer(None, explicit=tiny_model.parent) == tiny_model  # directory searched
    with pytest.raises(TokenizerError, match="does not exist"):
        find_tokenizer(tmp_path, explicit=tmp_path / "nope.model")


def test_missing_tokenizer_message(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(TokenizerError) as e:
        find_tokenizer(tmp_path)
    msg = str(e.value)
    for name in ("tokenizer.model", "paligemma_tokenizer.model", "assets/paligemma_tokenizer.model"):
        assert str(tmp_path / name) in msg
    assert "tokenizer=" in msg and "(token_ids, mask)" in msg
    assert "Hugging Face" in msg  # tokenizer.json found but not usable
    with pytest.raises(TokenizerError, match="tokenizer="):
        load_tokenizer(None)


@pytest.mark.parametrize("content", [b"", b"definitely not a sentencepiece model", None])
def test_corrupt_tokenizer_file(tmp_path, tiny_model, content):
    p = tmp_path / "tokenizer.model"
    p.write_bytes(content if content is not None else tiny_model.read_bytes()[:100])  # None: truncated
    with pytest.raises(TokenizerError, match="cannot load SentencePiece model"):
        load_tokenizer(tmp_path)
