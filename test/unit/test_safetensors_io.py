"""Checkpoint resolution, header validation (truncated / corrupt files) and the streaming writer."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from flash_rt.errors import CheckpointError
from flash_rt.executors.safetensors_io import (StreamingSafetensorsWriter, open_checkpoint, read_header,
                                               resolve_checkpoint_files, write_safetensors_streaming)
from flash_rt.executors.torch_weights import SafetensorsSource

SENT = "paligemma_with_expert."


def bits(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        SENT + "w_bf16": torch.randn(64, 33, generator=g).to(torch.bfloat16),
        SENT + "w_fp32": torch.randn(128, 17, generator=g),
        "b_fp16": torch.randn(7, generator=g).half(),
        "ids": torch.arange(5, dtype=torch.int64),
        "scalar": torch.tensor(3.5),
        "q_fp8": torch.randn(9, generator=g).to(torch.float8_e4m3fn),
        "empty": torch.zeros(0, 4),
    }


# --------------------------------------------------------------------------------------------------------------
# streaming writer
# --------------------------------------------------------------------------------------------------------------
def test_streaming_writer_round_trips_through_safe_open(tmp_path):
    ts = sample_tensors()
    path = tmp_path / "model.safetensors"
    calls = []

    def filler(name):
        def f():
            calls.append(name)
            return ts[name]
        return f

    out = write_safetensors_streaming(path, [(k, tuple(v.shape), v.dtype, filler(k)) for k, v in ts.items()],
                                      metadata={"format": "pt"})
    assert out == path and calls == list(ts)  # one fill_fn call per tensor, in order
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}
        assert set(f.keys()) == set(ts)
        for k, v in ts.items():
            got = f.get_tensor(k)
            assert got.dtype == v.dtype and got.shape == v.shape
            assert torch.equal(bits(got), bits(v)), k
    loaded = load_file(str(path))
    assert torch.equal(bits(loaded[SENT + "w_bf16"]), bits(ts[SENT + "w_bf16"]))
    hdr = read_header(path)
    assert (8 + hdr.header_len) % 8 == 0 and hdr.metadata == {"format": "pt"}
    assert not list(tmp_path.glob("*.tmp"))


def test_streaming_writer_chunked_add_then_write(tmp_path):
    big = torch.arange(60, dtype=torch.float32).reshape(12, 5).to(torch.bfloat16)
    small = torch.tensor([1.0, 2.0])
    path = tmp_path / "x.safetensors"
    with StreamingSafetensorsWriter(path, metadata={"format": "pt"}) as w:
        w.add("big", torch.bfloat16, (12, 5))
        w.add("small", "F32", [2])
        w.write("big", (big[r:r + 4] for r in range(0, 12, 4)))  # three row chunks
        w.write("small", small)
    src = SafetensorsSource(path)
    assert torch.equal(bits(src.get("big")), bits(big))
    assert torch.equal(src.get("small"), small)


def test_streaming_writer_errors_leave_no_file(tmp_path):
    path = tmp_path / "x.safetensors"
    w = StreamingSafetensorsWriter(path)
    w.add("a", torch.float32, (2,))
    w.add("b", torch.float32, (2,))
    with pytest.raises(ValueError, match="out of order"):
        w.write("b", torch.zeros(2))
    with pytest.raises(TypeError, match="declared F32"):
        w.write("a", torch.zeros(2, dtype=torch.float16))
    with pytest.raises(ValueError, match="declared"):
        w.write("a", torch.zeros(3))
    w.write("a", torch.zeros(2))
    with pytest.raises(RuntimeError, match="after writing started"):
        w.add("c", torch.float32, (1,))
    with pytest.raises(ValueError, match="close\\(\\) before"):
        w.close()
    assert not path.exists() and not list(tmp_path.iterdir())

    with pytest.raises(ZeroDivisionError):
        with StreamingSafetensorsWriter(path) as w2:
            w2.add("a", torch.float32, (1,))
            w2.write("a", torch.zeros(1))
            1 / 0
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="duplicated"):
        StreamingSafetensorsWriter(path).add("__metadata__", torch.float32, (1,))


# --------------------------------------------------------------------------------------------------------------
# truncated / corrupt files
# --------------------------------------------------------------------------------------------------------------
def _real_file(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    save_file(sample_tensors(), d / "model.safetensors", metadata={"format": "pt"})
    return d, d / "model.safetensors"


def test_valid_header_parses(tmp_path):
    _, f = _real_file(tmp_path)
    h = read_header(f)
    assert set(h.tensors) == set(sample_tensors())
    assert h.tensors[SENT + "w_bf16"].dtype == "BF16" and h.tensors[SENT + "w_bf16"].shape == (64, 33)
    assert h.file_size == f.stat().st_size


def test_truncated_in_half_is_reported_before_safe_open(tmp_path, monkeypatch):
    d, f = _real_file(tmp_path)
    size = f.stat().st_size
    f.write_bytes(f.read_bytes()[: size // 2])
    import safetensors

    def boom(*a, **k):  # proves the check happens before anything is mapped
        raise AssertionError("safe_open must not be reached for a truncated file")
    monkeypatch.setattr(safetensors, "safe_open", boom)
    for call in (lambda: read_header(f), lambda: open_checkpoint(d), lambda: SafetensorsSource(f)):
        with pytest.raises(CheckpointError, match="truncated/corrupt") as ei:
            call()
        msg = str(ei.value)
        assert str(f) in msg and str(size // 2) in msg  # names the file and the byte count it has


def test_truncated_inside_header(tmp_path):
    _, f = _real_file(tmp_path)
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"truncated/corrupt: header length field says \d+ bytes but the "
                                              r"file has only 92 bytes"):
        read_header(f)
    f.write_bytes(b"\x01\x02\x03")
    with pytest.raises(CheckpointError, match="3 bytes, shorter than the 8-byte"):
        read_header(f)


def test_corrupt_header_json(tmp_path):
    _, f = _real_file(tmp_path)
    raw = bytearray(f.read_bytes())
    raw[8] = ord("X")  # first char of the JSON object
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="truncated/corrupt: the \\d+-byte JSON header does not parse"):
        open_checkpoint(f)


def test_absurd_header_length(tmp_path):
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", 2 ** 40) + b"{}")
    with pytest.raises(CheckpointError, match="not a safetensors header"):
        read_header(f)


def _hand_file(path, header: dict, data: bytes):
    js = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(js)) + js + data)


def test_data_offsets_beyond_file(tmp_path):
    f = tmp_path / "model.safetensors"
    _hand_file(f, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="tensor 'a' ends at byte 16 of the data region, but the file holds "
                                              "only 8 data bytes"):
        read_header(f)


def test_inconsistent_entries(tmp_path):
    f = tmp_path / "model.safetensors"
    _hand_file(f, {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}}, b"\0" * 12)
    with pytest.raises(CheckpointError, match="spans 12 bytes but F32\\[4\\] needs 16"):
        read_header(f)
    _hand_file(f, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8)
    with pytest.raises(CheckpointError, match="gap"):
        read_header(f)
    _hand_file(f, {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 9)
    with pytest.raises(CheckpointError, match="5 unexpected trailing bytes"):
        read_header(f)
    _hand_file(f, {"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 1]}}, b"\0")
    with pytest.raises(CheckpointError, match="unknown dtype"):
        read_header(f)
    _hand_file(f, {"a": {"shape": [1]}}, b"")
    with pytest.raises(CheckpointError, match="malformed"):
        read_header(f)


# --------------------------------------------------------------------------------------------------------------
# resolution
# --------------------------------------------------------------------------------------------------------------
def test_missing_paths_name_what_was_expected(tmp_path):
    with pytest.raises(CheckpointError) as ei:
        open_checkpoint(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(ei.value) and "model.safetensors" in str(ei.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="has no model.safetensors") as ei:
        open_checkpoint(tmp_path / "empty")
    assert "config.json" in str(ei.value)


def test_open_checkpoint_dir_and_file(tmp_path):
    d, f = _real_file(tmp_path)
    for p in (d, f, str(d)):
        src = open_checkpoint(p)
        assert isinstance(src, SafetensorsSource) and src.files == [f]
        assert torch.equal(bits(src.get("ids")), bits(torch.arange(5)))


def test_sharded_resolution(tmp_path):
    parts = [{SENT + "a": torch.ones(2)}, {SENT + "b": torch.zeros(3)}, {"c": torch.ones(1)}]
    wm = {}
    for j, p in enumerate(parts):
        fn = f"model-{j + 1:05d}-of-00003.safetensors"
        save_file(p, tmp_path / fn)
        wm.update({k: fn for k in p})
    files, idx = resolve_checkpoint_files(tmp_path)
    assert [x.name for x in files] == [f"model-0000{j}-of-00003.safetensors" for j in (1, 2, 3)] and idx is None
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    files, idx = resolve_checkpoint_files(tmp_path)
    assert len(files) == 3 and idx == wm
    assert set(open_checkpoint(tmp_path).keys()) == {SENT + "a", SENT + "b", "c"}
    # a shard listed in the index is gone
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing.*model-00002-of-00003"):
        open_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    with pytest.raises(CheckpointError, match=r"shard\(s\) \[2\] are missing"):
        open_checkpoint(tmp_path)


def test_corrupt_index(tmp_path):
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="shard index .* is corrupt"):
        open_checkpoint(tmp_path)
