"""Last-arriver reduction: of N programs that each wrote a partial result, the last to finish reduces them all.

Why: split work (the K splits of the action_out GEMM in linear_flow_update) needs a final pass over the
partials. As a separate kernel that pass is one more launch; done by the last program to arrive it costs only
that program's tail, and no program waits. Where the reduction is big it can lose: for the decoder attention's
split softmax (16 rows x 256 x 5 splits per tile) a last-arriver merge cost more than the merge launch it
removed (attention.py has the numbers).

Protocol (the split-K "semaphore" of CUTLASS / cuBLAS, with a counter the last arriver resets so the next
launch and every graph replay start from 0):
  1. each program stores its partials;
  2. `arrive_last(counter, n)`: a CTA barrier (every thread's stores are issued), then one acq_rel atomic
     increment at GPU scope; release is cumulative over the barrier, so all of this program's stores are
     visible to whoever acquires the counter after it;
  3. the program that sees n - 1 is the last: it resets the counter and reads every partial with `.cg` loads
     (L2, never a stale L1 line). It sums the partials in a fixed order, so the result is deterministic.
Counters are int32 tensors zeroed once at allocation, one per independent reduction (e.g. per row tile).
"""
from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["arrive_last"]


@triton.jit
def arrive_last(COUNTER, n_arrivals):
    """True in exactly one program: the last of `n_arrivals` to call this on COUNTER (which it resets to 0)."""
    tl.debug_barrier()
    prev = tl.atomic_add(COUNTER, 1, sem="acq_rel", scope="gpu")
    last = prev == n_arrivals - 1
    if last:
        tl.atomic_xchg(COUNTER, 0, sem="relaxed", scope="gpu")
    return last
