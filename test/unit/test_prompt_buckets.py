"""Prefix-length buckets (models/pi05/prompt_buckets.py) and the kernel count of a graph's DOT dump
(runtime/graph.py), on the CPU: the slot counts an option gives, the bucket a token count gets (a prompt longer
than every bucket gets the last, the full length), the dims and the buffer views of a bucket over the very buffers
the GPU frontend allocates, and that selecting buckets across prompts never captures. The forward itself runs
bucketed under the interpreter (test_prompt_buckets_interpret.py) and on the device (test/gpu).
"""
import dataclasses

import pytest
import torch

from flash_rt.errors import InputError
from flash_rt.frontends.torch._pi05_cuda_storage import device_buffers
from flash_rt.kernels.triton.attention import MqaWorkspace
from flash_rt.models.pi05.dims import Pi05Dims
from flash_rt.models.pi05.prompt_buckets import (DEFAULT_BUCKETS, bucket_dims, bucket_slots, build_buckets,
                                                 choose_bucket)
from flash_rt.runtime.graph import count_dot_nodes
from flash_rt.testing.checkpoint import TINY_CONFIG

CFG = dataclasses.replace(TINY_CONFIG, max_token_len=200)   # openpi's default slots


def dims(views=2, align=16):
    return Pi05Dims.of(CFG, views, 3, -1 / 3, align=align)


def test_bucket_slots_default_off_and_rounding():
    assert DEFAULT_BUCKETS == (64, 128)
    assert bucket_slots(None, 200, 512, 16) == bucket_slots(True, 200, 512, 16) == (64, 128, 200)
    assert bucket_slots(False, 200, 512, 16) == bucket_slots((), 200, 512, 16) == (200,)
    assert bucket_slots(None, 64, 512, 16) == (64,)          # the full length covers 64: one graph, as before
    assert bucket_slots((128, 64, 64, 199, 300), 200, 512, 16) == (64, 128, 200)   # sorted, deduplicated
    # image tokens + slots aligned: 520 image tokens -> 64 slots become 72 (592 rows)
    assert bucket_slots((64,), 200, 520, 16) == (72, 200)
    assert bucket_slots((190,), 200, 512, 16) == (192, 200)   # 704 rows, below the full 720
    assert bucket_slots((195,), 200, 512, 16) == (200,)       # rounds up to the full prefix: dropped
    for bad in ((0,), ("a",), (True,), (3.5,), 64, "64"):
        with pytest.raises(InputError, match="prompt_buckets"):
            bucket_slots(bad, 200, 512, 16)


def test_choose_bucket_smallest_that_holds_the_tokens():
    slots = (64, 128, 200)
    got = {n: slots[choose_bucket(slots, n)] for n in (0, 1, 63, 64, 65, 128, 129, 199, 200)}
    assert got == {0: 64, 1: 64, 63: 64, 64: 64, 65: 128, 128: 128, 129: 200, 199: 200, 200: 200}
    # longer than every bucket (the host truncates to max_token_len, so only the last can hold it): the last
    assert choose_bucket(slots, 250) == 2 and choose_bucket((200,), 70) == 0


def test_bucket_dims_per_layout():
    d = dims()
    assert (d.image_tokens, d.prefix_len, d.prefix_rows, d.kv_len) == (512, 720, 720, 736)
    ex = bucket_dims(d, 64, 16, "exact")
    assert (ex.max_tokens, ex.prefix_rows, ex.prefix_len, ex.kv_len) == (64, 576, 720, 736)
    co = bucket_dims(d, 64, 16, "compact")
    assert (co.max_tokens, co.prefix_rows, co.prefix_len, co.kv_len) == (64, 576, 576, 592)
    with pytest.raises(InputError, match="prompt_bucket_layout"):
        bucket_dims(d, 64, 16, "tight")
    with pytest.raises(ValueError, match="multiple of 16"):
        bucket_dims(d, 60, 16)
    with pytest.raises(ValueError, match="prefix_rows"):
        dataclasses.replace(d, prefix_rows=800)


@pytest.mark.parametrize("layout", ["exact", "compact"])
def test_bucket_buffers_are_views_of_the_full_length(layout):
    d = dims()
    b = device_buffers(CFG, d, 2, "cpu", torch.zeros(1))
    b.update(token_ids=torch.zeros(200, dtype=torch.int64), token_mask=torch.zeros(200, dtype=torch.bool))
    bs = build_buckets(d, b, "full-attn", (64, 128, 200), 16, lambda dd, ks: f"attn-{dd.prefix_rows}", layout)
    assert bs.slots == (64, 128, 200) and bs.full.b is b and bs.full.attn == "full-attn"
    bk = bs.bucket(64)
    db, bb = bk.d, bk.b
    assert bk.attn == "attn-576"
    P = 576
    for k in ("x", "h", "h8", "qkv", "att", "o", "gu", "act8", "down", "pad", "pos"):
        assert bb[k].shape[0] == P and bb[k].data_ptr() == b[k].data_ptr() and bb[k].is_contiguous(), k
    assert bb["q"].shape == (CFG.heads, P, CFG.head_dim) and bb["q"].is_contiguous()
    assert bb["q"].data_ptr() == b["q"].data_ptr()
    for k in ("o_t", "down_t", "gu_t"):
        assert bb[k].shape == (b[k].shape[0], P) and bb[k].is_contiguous() and bb[k].data_ptr() == b[k].data_ptr()
    assert bb["gu_t"].data_ptr() == b["gu"].data_ptr()      # gate+up's transposed result shares gu's storage
    assert bb["token_ids"].shape == bb["token_mask"].shape == (64,) and bb["emb_rows"].shape[0] == 64
    assert bb["k_cache"] is b["k_cache"] and bb["x_t"] is b["x_t"] and bb["mods"] is b["mods"]
    # its own key bias: the prompt's rows (written each replay), masked up to the suffix, the suffix visible
    bias = bb["dec_bias"]
    assert bias.data_ptr() != b["dec_bias"].data_ptr() and bias.shape == (db.kv_len,)
    S = d.horizon
    assert (bias[db.prefix_len:db.prefix_len + S] == 0).all() and (bias[db.prefix_len + S:] < -1e38).all()
    assert (bias[P:db.prefix_len] < -1e38).all()   # the exact layout's gap (empty in the compact one)
    # beside the full length: the buckets' own bias rows (the stand-in attention backends have no workspaces)
    assert bs.extra_bytes() == sum(bs.bucket(t).b["dec_bias"].numel() * 2 for t in (64, 128))
    with pytest.raises(InputError, match="no prompt bucket of 96"):
        bs.bucket(96)


def test_fixed_key_splits():
    """A bucket's split-softmax workspace with its full length's split boundaries (the exact layout)."""
    from flash_rt.hardware.hopper.tuning import TUNING
    # Pi0.5 full size, one view, 200 slots on Hopper: prefix 464 rows x 8 heads; the 64-slot bucket 320 rows
    full = MqaWorkspace(8 * 464, 464, 256, "meta", TUNING.attention_tiles(8 * 464))
    t = TUNING.attention_tiles(8 * 320)
    fixed = MqaWorkspace(8 * 320, 320, 256, "meta", t, keys_per_split=full.keys_per_split)
    assert fixed.keys_per_split == full.keys_per_split == 256 and (full.splits, fixed.splits) == (2, 2)
    assert MqaWorkspace(8 * 320, 320, 256, "meta", t).keys_per_split == 128   # its own rule: other boundaries
    for bad in (0, 100):
        with pytest.raises(ValueError, match="multiple of block_n"):
            MqaWorkspace(8 * 320, 320, 256, "meta", t, keys_per_split=bad)


@pytest.mark.parametrize("layout", ["exact", "compact"])
def test_bucket_attention_takes_the_full_lengths_tiles_and_splits(layout):
    """A bucket's split-softmax sites take the full length's tiles and keys per split, where the rules would pick
    others for its row count (here: 32 prefix rows get the table's decode tiles, the full 224 its prefill tiles)."""
    from flash_rt.hardware.hopper.tuning import TUNING
    from flash_rt.models.pi05.attention_sites import pi05_attention_spec
    from flash_rt.runtime.attention import TritonAttnBackend
    cfg = dataclasses.replace(CFG, num_patches=16)   # one view: 16 image tokens
    d = Pi05Dims.of(cfg, 1, 3, -1 / 3, align=16)

    def make_attn(dd, like=None):
        return TritonAttnBackend(pi05_attention_spec(cfg, dd), "meta", TUNING, None, like)

    b = device_buffers(cfg, d, 2, "meta", None)
    b.update(token_ids=torch.zeros(200, dtype=torch.int64), token_mask=torch.zeros(200, dtype=torch.bool))
    full = make_attn(d)
    bs = build_buckets(d, b, full, bucket_slots((16,), 200, 16, 16), 16, make_attn, layout)
    small = bs.bucket(16)
    own = make_attn(small.d)
    assert own.ws["prefix"].tiles != full.ws["prefix"].tiles   # what the rules alone would give it
    for site in ("prefix", "decoder") if layout == "exact" else ("prefix",):
        ws, fw = small.attn.ws[site], full.ws[site]
        assert ws.tiles == fw.tiles and ws.keys_per_split == fw.keys_per_split, site
        assert ws.rows == cfg.heads * (small.d.prefix_rows if site == "prefix" else d.horizon)
    if layout == "compact":   # the decoder's keys are the bucket's own: its own rule
        assert small.attn.ws["decoder"].keys == small.d.kv_len < d.kv_len


def test_switching_prompts_across_buckets_never_captures():
    d = dims()
    b = device_buffers(CFG, d, 2, "cpu", torch.zeros(1))
    b.update(token_ids=torch.zeros(200, dtype=torch.int64), token_mask=torch.zeros(200, dtype=torch.bool))
    bs = build_buckets(d, b, None, (64, 128, 200), 16, lambda dd, ks: None)
    captured = []
    bs.capture(lambda bk: captured.append(bk.slots) or f"graph-{bk.slots}")
    assert captured == [64, 128, 200] and bs.captures == 3
    for n, want in [(70, 128), (10, 64), (150, 200), (199, 200), (64, 64), (129, 200), (0, 64)]:
        assert bs.select(n).slots == want and bs.active.graph == f"graph-{want}"
    assert bs.captures == 3 and captured == [64, 128, 200]


# CUDA's DOT as cudaGraphDebugDotPrint writes it with verbose flags (what torch's CUDAGraph.debug_dump asks for):
# a cluster per graph, one record node per graph node (type first in the label), then the edges
DOT = r'''digraph dot {
subgraph cluster_1 {
label="graph_1" graph[style="dashed"];
"graph_1_node_0"[style="solid" shape="record" label="{KERNEL
| {ID | 0 | _Z9uint8_to_modelPhP13__nv_bfloat16\<\<\<147,256,0\>\>\>}
| {{node handle | func handle} | {0x5581a4e0 | 0x7f11c0}}
| {accessPolicyWindow | {base_ptr | num_bytes | hitRatio | hitProp | missProp} | {0 | 0 | 0.000000 | N | N}}
| {cooperative | 0}
| {priority | 0}
}"];
"graph_1_node_1"[style="solid" shape="record" label="{MEMCPY
| {{ID | node handle} | {1 | 0x5581a600}}
| {kind | DtoD}
}"];
"graph_1_node_2"[style="solid" shape="record" label="{KERNEL
| {ID | 2 | rms_norm_kernel\<\<\<64,128,0\>\>\>}
}"];
"graph_1_node_3"[style="solid" shape="record" label="{EVENT_RECORD
| {{ID | node handle} | {3 | 0x5581a900}}
}"];
"graph_1_node_4"[style="solid" shape="record" label="{WAIT_EVENT
| {{ID | node handle} | {4 | 0x5581aa00}}
}"];
"graph_1_node_5"[style="solid" shape="record" label="{KERNEL
| {ID | 5 | _mqa_partial\<\<\<25,128,0\>\>\>}
}"];
"graph_1_node_6"[style="solid" shape="record" label="{MEMSET
| {{ID | node handle} | {6 | 0x5581ab00}}
}"];
"graph_1_node_0" -> "graph_1_node_1" [style="solid"];
"graph_1_node_1" -> "graph_1_node_2" [style="solid" label="KERNEL"];
"graph_1_node_2" -> "graph_1_node_5";
"graph_1_node_3" -> "graph_1_node_4";
}
}
'''


def test_count_dot_nodes_reads_node_types():
    c = count_dot_nodes(DOT)
    assert dict(c) == {"KERNEL": 3, "MEMCPY": 1, "EVENT_RECORD": 1, "WAIT_EVENT": 1, "MEMSET": 1}
    # the plain (non-verbose) label form, and a label without a known type
    plain = '"graph_0_node_0"[label="0\nKERNEL\nk"];\n"graph_0_node_1" [label="1\nEMPTY"];\n"graph_0_node_2"[label="x"];'
    assert dict(count_dot_nodes(plain)) == {"KERNEL": 1, "EMPTY": 1, "OTHER": 1}
    with pytest.raises(ValueError, match="no graph node"):
        count_dot_nodes("digraph dot {\n}\n")
