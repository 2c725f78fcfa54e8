"""capture_graph (flash_rt/runtime/graph.py) keeps Python's garbage collector out of a CUDA-graph capture.

The hazard: a dead reference cycle whose finalizer makes a non-capturable CUDA call (what freeing a dead
policy's pinned buffers and events amounts to) is collected mid-capture, triggered by allocations the capture
makes, and the capture is invalidated. The GPU suite hit it once, order-dependent. The first test shows the
hazard is real with a plain torch.cuda.graph (so the second one can fail); the second that capture_graph
avoids it and still lets the finalizer run, before the capture.
"""
import gc

import pytest
import torch

from flash_rt.runtime.graph import capture_graph

pytestmark = pytest.mark.gpu


class _DeadCycle:
    """Unreachable once created; its finalizer synchronizes the device, which a capture forbids."""
    finalized = 0

    def __init__(self):
        self.me = self

    def __del__(self):
        _DeadCycle.finalized += 1
        torch.cuda.synchronize()


def _work(x, keep):
    keep.extend([] for _ in range(500))   # live container allocations: past gen-0's threshold of 100
    x.add_(1)


@pytest.fixture
def eager_gc():
    old = gc.get_threshold()
    gc.collect()
    gc.set_threshold(100)
    yield
    gc.set_threshold(*old)
    gc.collect()


def test_plain_capture_is_broken_by_a_collection_mid_capture(eager_gc):
    x, keep, s = torch.zeros(4, device="cuda"), [], torch.cuda.Stream()
    _DeadCycle()
    with pytest.raises(Exception, match="captur"):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=s):
            _work(x, keep)
    torch.cuda.synchronize()


def test_capture_graph_collects_before_and_never_during(eager_gc):
    x, keep, s = torch.zeros(4, device="cuda"), [], torch.cuda.Stream()
    before = _DeadCycle.finalized
    _DeadCycle()
    g = capture_graph(lambda: _work(x, keep), s)
    assert _DeadCycle.finalized == before + 1      # collected, before the capture began
    assert gc.isenabled()
    g.replay()
    torch.cuda.synchronize()
    assert x.tolist() == [1.0] * 4
