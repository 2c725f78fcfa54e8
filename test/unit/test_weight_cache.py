"""Weight cache: key schema, exact round trip, and detection + rebuild of damaged files."""
from __future__ import annotations

import hashlib
import json
import logging
import struct
import warnings

import pytest
import torch
from safetensors.torch import save_file

from flash_rt.errors import CacheError
from flash_rt.executors.weight_cache import (ALIGN, ENV_CACHE_DIR, MAGIC, VERSION, WeightCache, WeightCacheWarning,
                                             cache_filename, cache_root, load_cache,
                                             read_cache_header, save_cache)

META = {"ckpt_hash": "0123456789abcdef", "spec_tag": "pi05-test-v1", "num_views": 2}


def bits(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def sample():
    g = torch.Generator().manual_seed(1)
    return {
        "dec_flat": torch.randn(1000, generator=g).to(torch.float8_e4m3fn),
        "dec_scales": torch.rand(4, generator=g),
        "emb": torch.randn(13, 7, generator=g).to(torch.bfloat16),
        "bias": torch.randn(5, generator=g).half(),
        "idx": torch.tensor(7, dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "nothing": torch.zeros(0, 3),
    }


# --------------------------------------------------------------------------------------------------------------
# key schema
# --------------------------------------------------------------------------------------------------------------
def test_cache_root_resolution(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_CACHE_DIR, raising=False)
    assert str(cache_root()).endswith(".flash_rt/weights")
    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    assert WeightCache().root == tmp_path / "env"


def test_cache_filename_schema():
    assert cache_filename(META) == "0123456789abcdef_pi05-test-v1_nv2.bin"
    with pytest.raises(ValueError, match="spec_tag"):
        cache_filename({**META, "spec_tag": "a/b"})
    with pytest.raises(ValueError, match="lacks"):
        cache_filename({"ckpt_hash": "x", "spec_tag": "y"})
    with pytest.raises(ValueError, match="reserved"):
        cache_filename({**META, "entries": []})


# --------------------------------------------------------------------------------------------------------------
# format and round trip
# --------------------------------------------------------------------------------------------------------------
def test_round_trip_bit_exact(tmp_path):
    ts = sample()
    p = save_cache(tmp_path / "c.bin", ts, {**META, "framework": "torch"})
    got = load_cache(p, {**META, "framework": "torch"})
    assert list(got) == list(ts)
    for k, v in ts.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert torch.equal(bits(got[k]), bits(v)), k
    assert not [q for q in tmp_path.iterdir() if q.name != "c.bin"]  # no temp files left


def test_file_layout(tmp_path):
    p = save_cache(tmp_path / "c.bin", sample(), META)
    raw = p.read_bytes()
    magic, version, hlen = struct.unpack("<4sIQ", raw[:16])
    assert magic == MAGIC == b"FRTW" and version == VERSION
    hdr = json.loads(raw[16:16 + hlen])
    assert (16 + hlen) % ALIGN == 0
    assert {k: hdr[k] for k in META} == META and hdr["version"] == VERSION and hdr["checksum"] == "crc32"
    assert len(raw) == 16 + hlen + hdr["total_bytes"]
    e = {x["name"]: x for x in hdr["entries"]}
    assert e["emb"]["dtype"] == "bfloat16" and e["emb"]["shape"] == [13, 7] and e["emb"]["nbytes"] == 13 * 7 * 2
    assert e["dec_flat"]["dtype"] == "float8_e4m3fn"
    assert all(x["offset"] % ALIGN == 0 for x in hdr["entries"])
    start = 16 + hlen + e["emb"]["offset"]
    assert raw[start:start + e["emb"]["nbytes"]] == bytes(bits(sample()["emb"]).numpy())


def test_meta_mismatch_is_stale(tmp_path):
    p = save_cache(tmp_path / "c.bin", sample(), META)
    with pytest.raises(CacheError, match="stale: num_views is 2, expected 3"):
        load_cache(p, {**META, "num_views": 3})
    with pytest.raises(CacheError, match="has no 'dtype'"):
        load_cache(p, {**META, "dtype": "fp8"})


def _damage(p, how):
    raw = bytearray(p.read_bytes())
    if how == "truncate":
        p.write_bytes(bytes(raw[: len(raw) - 100]))
    elif how == "bitflip":
        hlen = struct.unpack("<Q", raw[8:16])[0]
        hdr = json.loads(raw[16:16 + hlen])
        e = next(x for x in hdr["entries"] if x["name"] == "emb")
        raw[16 + hlen + e["offset"] + 3] ^= 0x10
        p.write_bytes(bytes(raw))
    elif how == "magic":
        raw[:4] = b"XXXX"
        p.write_bytes(bytes(raw))
    elif how == "version":
        raw[4:8] = struct.pack("<I", VERSION + 1)
        p.write_bytes(bytes(raw))
    elif how == "json":
        raw[16] = ord("#")
        p.write_bytes(bytes(raw))
    elif how == "tiny":
        p.write_bytes(b"FRT")
    elif how == "extra":
        p.write_bytes(bytes(raw) + b"\0")


@pytest.mark.parametrize("how,msg", [
    ("truncate", r"is truncated: file is \d+ bytes, its header says \d+"),
    ("bitflip", r"entry 'emb': checksum mismatch \(stored crc32 [0-9a-f]{8}, computed [0-9a-f]{8}\)"),
    ("magic", r"bad magic b'XXXX', expected b'FRTW'"),
    ("version", rf"format version {VERSION + 1}, this flash_rt reads version {VERSION}"),
    ("json", r"corrupt JSON header"),
    ("tiny", r"truncated: 3 bytes, shorter than the 16-byte preamble"),
    ("extra", r"is oversized"),
])
def test_damage_is_detected(tmp_path, how, msg):
    p = save_cache(tmp_path / "c.bin", sample(), META)
    _damage(p, how)
    with pytest.raises(CacheError, match=msg):
        load_cache(p, META)


def test_read_cache_header_missing(tmp_path):
    with pytest.raises(CacheError, match="does not exist"):
        read_cache_header(tmp_path / "none.bin")


# --------------------------------------------------------------------------------------------------------------
# get_or_build
# --------------------------------------------------------------------------------------------------------------
class Builder:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return sample()


def test_miss_then_hit(tmp_path):
    wc, b = WeightCache(tmp_path), Builder()
    ts, st = wc.get_or_build(META, b)
    assert st == "miss" and b.calls == 1 and wc.path_for(META).is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a hit is silent
        ts2, st2 = wc.get_or_build(META, b)
    assert st2 == "hit" and b.calls == 1 and wc.last_status == "hit"
    for k in ts:
        assert torch.equal(bits(ts2[k]), bits(ts[k]))


@pytest.mark.parametrize("how,reason", [("truncate", "truncated"), ("bitflip", "checksum mismatch"),
                                        ("version", "format version")])
def test_damaged_cache_is_rebuilt_with_warning(tmp_path, caplog, how, reason):
    wc, b = WeightCache(tmp_path), Builder()
    wc.get_or_build(META, b)
    _damage(wc.path_for(META), how)
    with caplog.at_level(logging.WARNING, logger="flash_rt.weight_cache"):
        with pytest.warns(WeightCacheWarning, match=reason):
            ts, st = wc.get_or_build(META, b)
    assert st == "rebuilt" and b.calls == 2 and reason in wc.last_reason
    assert any(reason in r.getMessage() for r in caplog.records)
    # the rebuilt file is valid again
    assert wc.get_or_build(META, b)[1] == "hit" and b.calls == 2
    got = load_cache(wc.path_for(META), META)
    for k, v in sample().items():
        assert torch.equal(bits(got[k]), bits(v))


def test_unwritable_cache_still_returns_tensors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    wc = WeightCache(blocker / "sub")
    with pytest.warns(WeightCacheWarning, match="could not write"):
        ts, st = wc.get_or_build(META, Builder())
    assert st == "miss" and set(ts) == set(sample())
