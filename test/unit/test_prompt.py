"""Prompt format and tokenization per pi05_spec.md 1b, with a real (tiny) SentencePiece model."""

import warnings

import numpy as np
import pytest

from flash_rt.errors import InputError
from flash_rt.io.prompt import (MAX_PROMPT_CHARS, FlashRTWarning, PromptEncoder, clean_prompt, discretize_state,
                                pi05_prompt_string, validate_pretokenized)
from flash_rt.io.tokenizer import Tokenizer
from flash_rt.testing.tokenizer import build_tiny_tokenizer

EDGES = np.linspace(-1, 1, 257)[:-1]  # float64, as openpi


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return Tokenizer(build_tiny_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer.model"))


# ---- cleaning ---------------------------------------------------------------------------------------------

def test_clean_prompt():
    assert clean_prompt("  pick_up the\nRed block \n") == "pick up the Red block"  # no lower-casing
    assert clean_prompt("_pick_") == " pick "  # strip happens before "_" -> " ", as openpi
    assert clean_prompt("a\n\nb") == "a  b"


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "___"])
def test_empty_prompt_rejected(text):
    with pytest.raises(InputError, match="empty"):
        clean_prompt(text)


def test_long_prompt_rejected():
    clean_prompt("a" * MAX_PROMPT_CHARS)
    with pytest.raises(InputError, match=f"prompt is 10240 characters, at most {MAX_PROMPT_CHARS} supported"):
        clean_prompt("x" * 10240)


def test_non_str_prompt():
    with pytest.raises(InputError, match="must be a str"):
        clean_prompt(b"pick")


# ---- state bins --------------------------------------------------------------------------------------------

def test_bins_at_the_ends():
    below = np.nextafter(-1.0, -2.0)
    s = np.array([-1.0, below, -5.0, 0.9921875, np.nextafter(0.9921875, 0), 1.0, 5.0, 0.0])
    assert discretize_state(s).tolist() == [0, -1, -1, 255, 254, 255, 255, 128]


def test_bins_on_inner_edges_match_float64_digitize():
    k = np.arange(1, 256)
    on = EDGES[k]
    just_below = np.nextafter(on, -np.inf)
    assert discretize_state(on).tolist() == k.tolist()
    assert discretize_state(just_below).tolist() == (k - 1).tolist()
    rng = np.random.default_rng(0)
    s = np.concatenate([rng.uniform(-1.5, 1.5, 2000), on, just_below])
    np.testing.assert_array_equal(discretize_state(s), np.digitize(s, EDGES) - 1)


def test_bins_float32_compared_in_float64():
    # A float32 value just under a float64 edge must stay in the lower bin (no rounding to float32 edges).
    s32 = np.array([0.1, -0.3, 0.7], np.float32)
    np.testing.assert_array_equal(discretize_state(s32), np.digitize(s32.astype(np.float64), EDGES) - 1)
    s = np.array([np.float32(np.nextafter(np.float32(0.5), np.float32(0)))])
    assert discretize_state(s)[0] == 191


def test_bins_out_buffer_and_errors():
    out = np.full(3, 99, np.int64)
    assert discretize_state([-1.0, 0.0, 1.0], out=out) is out
    assert out.tolist() == [0, 128, 255]
    for bad in ([0.1, np.nan], [np.inf], [-np.inf, 0.0]):
        with pytest.raises(InputError, match="NaN/inf"):
            discretize_state(np.array(bad))
    with pytest.raises(InputError, match="1-D"):
        discretize_state(np.zeros((2, 2)))


# ---- prompt string and encoding ----------------------------------------------------------------------------

def test_pi05_prompt_string_exact():
    s = pi05_prompt_string("pick up the cup", np.array([0, 128, -1, 255]))
    assert s == "Task: pick up the cup, State: 0 128 -1 255;\nAction: "
    assert s.endswith(";\nAction: ") and not s.endswith("  ")


def test_pi05_encode(tok):
    enc = PromptEncoder(tok, max_len=200)
    state = np.array([-1.0, 0.0, 0.5, 1.0])
    ids, mask, n = enc.encode(" put_the bowl\non the plate ", state)
    expected = [2] + tok.encode("Task: put the bowl on the plate, State: 0 128 192 255;\nAction: ")
    assert ids.dtype == np.int64 and mask.dtype == np.bool_ and ids.shape == mask.shape == (200,)
    assert n == len(expected)
    assert ids[:n].tolist() == expected
    assert ids[0] == 2 and 1 not in ids[:n].tolist()  # BOS first, no EOS
    assert (ids[n:] == 0).all()
    assert mask[:n].all() and not mask[n:].any()


def test_state_required_for_pi05(tok):
    with pytest.raises(InputError, match="state is required"):
        PromptEncoder(tok, 200).encode("pick", None)


def test_pi05_nan_state(tok):
    with pytest.raises(InputError, match="NaN"):
        PromptEncoder(tok, 200).encode("pick", np.array([0.0, np.nan]))


def test_pi0_format_ignores_state(tok):
    enc = PromptEncoder(tok, max_len=48, discrete_state_input=False)
    ids, mask, n = enc.encode("open_the drawer", np.array([0.3, 0.9]))
    expected = [2] + tok.encode("open the drawer") + tok.encode("\n")
    assert ids[:n].tolist() == expected and n == len(expected)
    ids2, _, _ = enc.encode("open_the drawer", None)
    ids3, _, _ = enc.encode("open_the drawer", np.array([np.nan]))  # not even looked at
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(ids, ids3)


def test_truncation_warns(tok):
    enc = PromptEncoder(tok, max_len=10)
    full = [2] + tok.encode(pi05_prompt_string("pick up the red block", [1, 2, 3]))
    assert len(full) > 10
    with pytest.warns(FlashRTWarning, match=f"dropped the last {len(full) - 10} tokens"):
        ids, mask, n = enc.encode("pick up the red block", np.array([-0.99, -0.98, -0.97]))
    assert n == 10 and mask.all() and ids.tolist() == full[:10]
    assert issubclass(FlashRTWarning, UserWarning)


def test_no_warning_when_it_fits(tok):
    enc = PromptEncoder(tok, max_len=200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        enc.encode("pick", np.zeros(8))


def test_encode_writes_into_buffers(tok):
    enc = PromptEncoder(tok, max_len=64)
    ids_out = np.full(64, 12345, np.int64)
    mask_out = np.ones(64, bool)
    ids, mask, n = enc.encode("pick", np.zeros(3), ids_out=ids_out, mask_out=mask_out)
    assert ids is ids_out and mask is mask_out
    ref_ids, ref_mask, ref_n = enc.encode("pick", np.zeros(3))
    assert n == ref_n
    np.testing.assert_array_equal(ids_out, ref_ids)
    np.testing.assert_array_equal(mask_out, ref_mask)
    with pytest.raises(InputError, match="ids_out"):
        enc.encode("pick", np.zeros(3), ids_out=np.zeros(64, np.int32))
    with pytest.raises(InputError, match="mask_out"):
        enc.encode("pick", np.zeros(3), mask_out=np.zeros(63, bool))


def test_encoder_rejects_bad_prompts(tok):
    enc = PromptEncoder(tok, max_len=200)
    with pytest.raises(InputError, match="empty"):
        enc.encode("  ", np.zeros(2))
    with pytest.raises(InputError, match="10000 characters"):
        enc.encode("y" * 10000, np.zeros(2))


# ---- pre-tokenized prompts --------------------------------------------------------------------------------

def test_pretokenized_padded():
    ids, mask, n = validate_pretokenized([2, 10, 11], [True, True, True], max_len=8, vocab_size=512)
    assert ids.tolist() == [2, 10, 11, 0, 0, 0, 0, 0] and ids.dtype == np.int64
    assert mask.tolist() == [True] * 3 + [False] * 5 and n == 3
    ids, mask, n = validate_pretokenized(np.array([2, 10, 0, 0]), np.array([1, 1, 0, 0]), max_len=4)
    assert n == 2 and mask.tolist() == [True, True, False, False]


def test_pretokenized_out_buffers():
    ids_out, mask_out = np.full(6, 7, np.int64), np.ones(6, bool)
    ids, mask, _ = validate_pretokenized([2, 5], [True, True], 6, ids_out=ids_out, mask_out=mask_out)
    assert ids is ids_out and mask is mask_out and ids_out.tolist() == [2, 5, 0, 0, 0, 0]
    assert mask_out.tolist() == [True, True, False, False, False, False]


def test_pretokenized_trailing_padding_beyond_max_len_dropped():
    ids, mask, n = validate_pretokenized([2, 5, 0, 0, 0], [1, 1, 0, 0, 0], max_len=3)
    assert ids.tolist() == [2, 5, 0] and n == 2


@pytest.mark.parametrize("ids, mask, match", [
    ([2, 5, 6, 7], [True] * 4, "4 tokens, at most 3"),
    ([2, 5], [True], "must match"),
    ([2.0, 5.0], [True, True], "integers"),
    ([2, 5], [0.5, 1.0], "mask must be bool"),
    ([2, 5], [False, False], "no real tokens"),
    ([2, 5, 6], [True, False, True], "leading"),
    ([2, 600], [True, True], "\\[0, 512\\)"),
    ([2, -1], [True, True], "in \\[0,"),
    ([[2, 5]], [[True, True]], "1-D"),
])
def test_pretokenized_errors(ids, mask, match):
    with pytest.raises(InputError, match=match):
        validate_pretokenized(ids, mask, max_len=3, vocab_size=512)
