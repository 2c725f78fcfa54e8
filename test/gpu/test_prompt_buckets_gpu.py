"""Prefix-length buckets on the device (models/pi05/prompt_buckets.py): every bucket's graph against the full
length's on the same inputs, bucket switches without a capture or an allocation, and the kernels per replay read
from the graph's DOT dump against torch.profiler's count of one replay.

Run on the device: `python3 -m pytest -m gpu test/gpu/test_prompt_buckets_gpu.py -q -s` (prints the max |diff| per
bucket and the kernel counts). The tiny checkpoint at openpi's default of 200 prompt slots, buckets 64 and 128;
prompts pre-tokenized to exact lengths so every bucket and its edges are hit.
"""
import numpy as np
import pytest
import torch

import flash_rt
from flash_rt.models.pi05.oracle import cosine64
from flash_rt.testing import TINY_STATE_DIM
from flash_rt.testing.observations import random_observation

pytestmark = pytest.mark.gpu
SLOTS = 200
LENGTHS = (10, 64, 65, 100, 128, 129, 190)   # -> buckets 64, 64, 128, 128, 128, 200, 200


def tokens(n, rng, vocab):
    ids = np.zeros(SLOTS, np.int64)
    ids[:n] = rng.integers(1, vocab, n)
    return ids, np.arange(SLOTS) < n


def load(tiny_openpi, tmp_path, cell, **kw):
    kw.setdefault("prompt_buckets", True)    # off by default until these device runs exist
    return flash_rt.load_model(tiny_openpi, hardware=cell, cache_dir=tmp_path, max_token_len=SLOTS, **kw)


@pytest.mark.parametrize("layout", ["exact", "compact"])
def test_every_bucket_gives_the_full_length_chunk(tiny_openpi, tmp_path, cell, layout):
    """exact: the bits of the full-length graph (the goal; a GEMM library that picks another algorithm for another
    row count would break it, and this says so); compact: within the decoder's ulp-level regrouping."""
    pol = load(tiny_openpi, tmp_path, cell, prompt_bucket_layout=layout)
    fe = pol.frontend
    assert fe.buckets.slots == (64, 128, 200)
    rng = np.random.default_rng(5)
    images, state, _, noise = random_observation(rng, pol.num_views, TINY_STATE_DIM, pol.action_horizon)
    report = []
    for n in LENGTHS:
        pol.predict(images, state, tokens(n, rng, pol.config.vocab), noise)
        bk = fe.buckets.active
        assert bk.slots == min(t for t in (64, 128, 200) if n <= t), (n, bk.slots)
        torch.cuda.synchronize()
        got = fe.b["x_t"].cpu().numpy().copy()
        fe.replay_only(SLOTS)   # the full length's graph on the same device inputs
        torch.cuda.synchronize()
        want = fe.b["x_t"].cpu().numpy().copy()
        diff = float(np.abs(got - want).max())
        report.append(f"{cell} {layout} n={n} bucket={bk.slots}: max|diff| {diff:.3g} cos {cosine64(got, want):.9f}")
        print(report[-1])
        assert np.isfinite(got).all()
        if layout == "exact" or bk.slots == SLOTS:
            assert diff == 0.0, report[-1]
        else:
            assert cosine64(got, want) >= 0.9999, report[-1]


def test_bucket_switches_never_capture_nor_allocate(tiny_openpi, tmp_path, cell):
    pol = load(tiny_openpi, tmp_path, cell)
    fe = pol.frontend
    rng = np.random.default_rng(6)
    images, state, _, noise = random_observation(rng, pol.num_views, TINY_STATE_DIM, pol.action_horizon)
    pol.predict(images, state, tokens(10, rng, pol.config.vocab), noise)   # calibrate + capture every bucket
    captures, graphs = fe.buckets.captures, [bk.graph for bk in fe.buckets.buckets]
    assert captures == 3 and all(g is not None for g in graphs) and fe.graph is graphs[-1]
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    seen = set()
    for k in range(30):
        n = LENGTHS[k % len(LENGTHS)]
        pol.predict(images, state + 0.01 * k, tokens(n, rng, pol.config.vocab), noise)
        seen.add(fe.buckets.active.slots)
    # text prompts too: the state tokens move the count every tick, the bucket follows on the host
    for k in range(10):
        pol.predict(images, state + 0.05 * k, "open the drawer", noise)
        seen.add(fe.buckets.active.slots)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before
    assert seen >= {64, 128, 200}
    assert fe.buckets.captures == captures and [bk.graph for bk in fe.buckets.buckets] == graphs
    print(f"{cell}: buckets {fe.buckets.slots}, {fe.buckets.extra_bytes() / 2**20:.2f} MiB beside the full length")


def test_kernel_count_from_the_dot_dump_equals_the_profilers(tiny_openpi, tmp_path, cell):
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile
    pol = load(tiny_openpi, tmp_path, cell)
    fe = pol.frontend
    fe.graph_debug = True
    rng = np.random.default_rng(7)
    images, state, _, noise = random_observation(rng, pol.num_views, TINY_STATE_DIM, pol.action_horizon)
    pol.predict(images, state, tokens(30, rng, pol.config.vocab), noise)
    # one profile first, not counted: the first profiler session of a process starts CUPTI (the hopper case, which
    # runs first, failed and the thor case passed in the same process on an H200, eleventh session)
    with profile(activities=[ProfilerActivity.CUDA]):
        fe.replay_only(fe.buckets.slots[0])
        torch.cuda.synchronize()
    for slots in fe.buckets.slots:
        counts = fe.kernel_count(slots)
        fe.replay_only(slots)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fe.replay_only(slots)
            torch.cuda.synchronize()
        # device-side events only (the host's cudaGraphLaunch carries its kernels' device time too), minus copies
        # A graph's MEMCPY node may run on the copy engine ("Memcpy DtoD ...") or as the driver's own copy kernel
        # ("memcpy32_post": the hopper case's two on an H100, driver 580, fifteenth session, which this count took
        # for kernels of ours: 245 against the DOT's 243). Both are the DOT's MEMCPY nodes, not KERNEL ones.
        events = {e.key: e.count for e in prof.key_averages() if e.device_type == DeviceType.CUDA
                  and not e.key.lower().startswith(("memset", "memcpy"))}
        kernels = sum(events.values())
        print(f"{cell} bucket {slots}: DOT {counts}, profiler kernels {kernels}")
        if counts["KERNEL"] != kernels:
            print("profiler events:", "; ".join(f"{k[:70]} x{n}" for k, n in sorted(events.items())))
        assert counts["KERNEL"] == kernels, (counts, kernels)
