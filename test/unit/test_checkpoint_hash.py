"""The cache key of a checkpoint: every byte of every shard counts, remembered per file identity, and a
fine-tune that changes one tensor in the middle of a file (or of a later shard) gets a weight-cache miss and the
weights a fresh build gives -- never the first checkpoint's FP8 weights and scales (issue 16, part 2)."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import warnings

import pytest
import torch
from safetensors.torch import save_file

from flash_rt.executors import checkpoint_hash as ch
from flash_rt.executors.checkpoint_hash import INDEX_NAME, HashIndex, HashIndexWarning, checkpoint_hash
from flash_rt.executors.weight_cache import WeightCache
from flash_rt.frontends.torch._pi05_cuda_storage import build_weights, weight_spec_tag
from flash_rt.models.pi05.config import LLM
from flash_rt.testing import build_tiny_checkpoint
from flash_rt.testing.checkpoint import TINY_CONFIG
from flash_rt.testing.checkpoint_edit import overwrite_tensor, shard_checkpoint, tensor_byte_range

HEADTAIL = 64 * 1024
MID_KEY = LLM + "layers.0.mlp.up_proj.weight"   # a tensor in the middle of the file


@pytest.fixture
def no_racy(monkeypatch):
    """Trust remembered digests of files written just now (the tests' files are milliseconds old)."""
    monkeypatch.setattr(ch, "RACY_NS", 0)


def _bump(path, key):
    """Rewrite tensor `key` with new values of the same dtype and shape; return (old, new) file bytes."""
    from flash_rt.testing.checkpoint_edit import find_tensor
    f = find_tensor(path, key)
    before = f.read_bytes()
    a, b = tensor_byte_range(f, key)
    old = torch.frombuffer(bytearray(before[a:b]), dtype=torch.float32)
    overwrite_tensor(path, key, old * 1.5 + 0.25)
    return before, f.read_bytes()


def test_definition(tmp_path):
    f = tmp_path / "model.safetensors"
    save_file({"w": torch.arange(1000, dtype=torch.float32)}, f)
    raw = f.read_bytes()
    tree = hashlib.sha256(b"flash_rt-sha256-tree-v1\0" + struct.pack("<Q", 64 << 20) + hashlib.sha256(raw).digest())
    want = hashlib.sha256(b"flash_rt-checkpoint-v2\0" + b"model.safetensors\0" + struct.pack("<Q", len(raw))
                          + tree.digest()).hexdigest()[:32]
    assert checkpoint_hash(f) == checkpoint_hash(tmp_path) == want and len(want) == 32


def test_the_tree_digest_over_several_pieces(tmp_path, monkeypatch):
    """Pieces hashed in parallel threads, joined in order: the same digest as a serial hand computation."""
    monkeypatch.setattr(ch, "PIECE", 1000)
    monkeypatch.setattr(ch, "READ_CHUNK", 300)
    raw = bytes(range(256)) * 17 + b"tail"                       # 4356 bytes: 5 pieces, the last one short
    f = tmp_path / "x.bin"
    f.write_bytes(raw)
    leaves = b"".join(hashlib.sha256(raw[i:i + 1000]).digest() for i in range(0, len(raw), 1000))
    want = hashlib.sha256(b"flash_rt-sha256-tree-v1\0" + struct.pack("<Q", 1000) + leaves).hexdigest()
    assert ch.hash_file(f) == ch.hash_file(f, workers=1) == ch.hash_file(f, workers=3) == want
    (tmp_path / "empty.bin").write_bytes(b"")
    assert ch.hash_file(tmp_path / "empty.bin") == hashlib.sha256(
        b"flash_rt-sha256-tree-v1\0" + struct.pack("<Q", 1000) + hashlib.sha256(b"").digest()).hexdigest()


def test_a_change_in_the_middle_with_the_same_size_and_ends_changes_the_key(tmp_path):
    ck = build_tiny_checkpoint(tmp_path / "a")
    h0 = checkpoint_hash(ck)
    before, after = _bump(ck, MID_KEY)
    # what the old key (size + first/last 64 KiB) saw is unchanged: it would have served the old weights
    assert len(before) == len(after) and before[:HEADTAIL] == after[:HEADTAIL] and before[-HEADTAIL:] == after[-HEADTAIL:]
    assert before != after
    assert checkpoint_hash(ck) != h0


def test_a_change_in_a_later_shard_changes_the_key(tmp_path):
    ck = shard_checkpoint(build_tiny_checkpoint(tmp_path / "a"), tmp_path / "sharded", 3)
    h0 = checkpoint_hash(ck)
    key = json.loads((ck / "model.safetensors.index.json").read_text())["weight_map"]
    last = next(k for k, v in key.items() if v.startswith("model-00003") and k.endswith("proj.weight"))
    first_before = (ck / "model-00001-of-00003.safetensors").read_bytes()
    _bump(ck, last)
    assert (ck / "model-00001-of-00003.safetensors").read_bytes() == first_before   # what the old key read
    assert checkpoint_hash(ck) != h0
    assert checkpoint_hash(ck / "model.safetensors.index.json") == checkpoint_hash(ck)


def test_digests_are_remembered_per_file_identity(tmp_path, no_racy):
    ck = build_tiny_checkpoint(tmp_path / "a")
    root = tmp_path / "cache"
    idx = HashIndex(root)
    d0 = idx.digest(ck / "model.safetensors")
    idx.save()
    assert idx.hashed and (root / INDEX_NAME).is_file()
    warm = HashIndex(root)
    assert warm.digest(ck / "model.safetensors") == d0 and warm.hashed == []     # a warm start reads nothing
    # a same-size in-place edit with the mtime put back: ctime still moves, so the file is hashed again
    st = (ck / "model.safetensors").stat()
    time.sleep(0.02)
    _bump(ck, MID_KEY)
    os.utime(ck / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))
    again = HashIndex(root)
    assert again.digest(ck / "model.safetensors") != d0 and again.hashed


def test_a_racily_fresh_file_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setattr(ch, "RACY_NS", 3_600 * 10**9)   # every file counts as written "just now"
    ck = build_tiny_checkpoint(tmp_path / "a")
    checkpoint_hash(ck, index_root=tmp_path / "c")
    idx = HashIndex(tmp_path / "c")
    idx.digest(ck / "model.safetensors")
    assert idx.hashed, "a file stamped within RACY_NS of its hashing must be hashed again"


def test_the_index_cannot_serve_a_stale_digest_after_an_edit(tmp_path, no_racy):
    ck = build_tiny_checkpoint(tmp_path / "a")
    root = tmp_path / "cache"
    h0 = checkpoint_hash(ck, index_root=root)
    assert checkpoint_hash(ck, index_root=root) == h0
    _bump(ck, MID_KEY)
    assert checkpoint_hash(ck, index_root=root) == checkpoint_hash(ck) != h0


@pytest.mark.parametrize("junk", [b"{not json", b'{"version": 99, "algo": "sha256-tree64m", "files": {}}', b"\xff\xfe"])
def test_a_corrupt_index_is_reported_and_rebuilt(tmp_path, no_racy, junk, caplog):
    ck = build_tiny_checkpoint(tmp_path / "a")
    root = tmp_path / "cache"
    want = checkpoint_hash(ck)
    root.mkdir()
    (root / INDEX_NAME).write_bytes(junk)
    with pytest.warns(HashIndexWarning, match="unusable.*rebuilding"):
        assert checkpoint_hash(ck, index_root=root) == want
    doc = json.loads((root / INDEX_NAME).read_text())
    assert doc["version"] == 1 and len(doc["files"]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoint_hash(ck, index_root=root) == want


def test_a_lying_index_entry_is_not_served(tmp_path, no_racy):
    """An entry whose identity does not match the file (copied from another machine, a stale inode) is ignored."""
    ck = build_tiny_checkpoint(tmp_path / "a")
    root = tmp_path / "cache"
    want = checkpoint_hash(ck, index_root=root)
    doc = json.loads((root / INDEX_NAME).read_text())
    (entry,) = doc["files"].values()
    entry["digest"] = "00" * 32
    entry["ino"] += 1
    (root / INDEX_NAME).write_text(json.dumps(doc))
    assert checkpoint_hash(ck, index_root=root) == want


@pytest.mark.parametrize("sharded", [False, True])
def test_a_fine_tune_gets_a_cache_miss_and_its_own_weights(tmp_path, no_racy, sharded):
    """Two checkpoints that differ in one tensor deep inside (a later shard when sharded): the second one's
    weight-cache lookup misses and what it gets equals a fresh build of it, bit for bit; a warm start hits."""
    base = build_tiny_checkpoint(tmp_path / "base")
    a = shard_checkpoint(base, tmp_path / "a", 2) if sharded else base
    b = shard_checkpoint(base, tmp_path / "b", 2) if sharded else build_tiny_checkpoint(tmp_path / "b")
    key = LLM + f"layers.{TINY_CONFIG.layers - 1}.mlp.up_proj.weight"   # in shard 2 of 2 when sharded
    _bump(b, key)
    cache = WeightCache(tmp_path / "w")

    def get(ck):
        meta = {"ckpt_hash": checkpoint_hash(ck, index_root=cache.root),
                "spec_tag": weight_spec_tag("hopper", "fp8"), "num_views": 0}
        return cache.get_or_build(meta, lambda: build_weights(ck, TINY_CONFIG, "fp8", "cpu"))

    wa, sa = get(a)
    wb, sb = get(b)
    assert (sa, sb) == ("miss", "miss")
    fresh = build_weights(b, TINY_CONFIG, "fp8", "cpu")
    assert set(wb) == set(fresh)
    for k in fresh:
        assert torch.equal(wb[k].view(torch.uint8) if wb[k].dtype == torch.float8_e4m3fn else wb[k],
                           fresh[k].view(torch.uint8) if fresh[k].dtype == torch.float8_e4m3fn else fresh[k]), k
    changed = [k for k in wa if not torch.equal(wa[k].float(), wb[k].float())]
    assert "w.llm.1.gu_w" in changed, changed
    assert get(b)[1] == "hit" and get(a)[1] == "hit"
