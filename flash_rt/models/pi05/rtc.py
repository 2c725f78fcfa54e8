"""Real-time chunking (RTC): the next chunk starts where the executing one is, by inpainting during flow sampling.

When chunk k+1 is computed while chunk k executes, the first d rows of k+1 ("frozen", the rows that execute during
the inference delay) must equal what the robot is doing anyway: the rows of chunk k at the same wall-clock steps.
Black et al. 2025 ("Real-Time Execution of Action Chunking Flow Policies") guide the sampler toward the previous
chunk with soft weights over the overlap:

    W_i = 1                              for i < d                      (frozen)
    W_i = c_i * (e^c_i - 1) / (e - 1)    for d <= i < d + b,  c_i = (d + b - i) / (b + 1)
    W_i = 0                              for i >= d + b

(the paper's c_i = (H - s - i) / (H - s - d + 1) with H - s = d + b, the rows of the previous chunk that overlap
the new one; b = `blend`, by default every prefix row after the frozen ones).

What we run: guidance-free inpainting with those weights. openpi's convention is x_t = t * noise + (1 - t) * actions
(t = 1 noise, t = 0 data; x <- x + dt * v with dt = -1/N). After every Euler step, at the time t_k it reached,

    x_{t_k} <- W * (t_k * eps + (1 - t_k) * A) + (1 - W) * x_{t_k}        (row-wise W, all 32 model dims)

with eps the chunk's initial noise and A the previous chunk in MODEL space (delta dims minus the new observation's
state, then normalized; the padded model dims are 0, as openpi pads the training actions after normalization).
At t = 1 the blend is the identity (x = eps), so it is skipped; after the last step it is taken at t = 0 exactly,
so rows with W = 1 come out as A bit for bit (1 * A + 0 * x), and every row ends as the W-weighted mix of A and
what the sampler produced; the blends before it keep the velocity field consistent with that: at every step the
model sees the frozen rows on the straight noise-to-A path it was trained on, and fills the rest around them. (1 - W) is precomputed on the
host, so W = 1 gives an exact 0 and W = 0 an exact identity: with all weights 0 the chunk is bit-identical to
plain sampling.

Why not the paper's guidance (a vector-Jacobian product of the denoiser at every step): it needs a backward pass
through the expert, and the production expert is an FP8 forward captured in one CUDA graph, with no autograd
(and a backward would roughly double the expert's cost per tick on a robot that is already latency bound). The
inpainting above costs one row-wise blend per flow step (fused into the seam kernel on the GPU), and keeps the
weights and the prefix as data in device buffers, so changing d or the prefix never recaptures.
"""
from __future__ import annotations

import math

import numpy as np

from flash_rt.errors import InputError
from flash_rt.models.pi05.flow import flow_schedule


def soft_weights(frozen: int, blend: int, out: np.ndarray) -> np.ndarray:
    """Fill `out` (float32 [H]) with the RTC weights for `frozen` = d fixed rows and `blend` soft rows after them;
    the rest are 0. No allocation: a Python loop over at most H rows."""
    out.fill(0.0)
    for i in range(frozen):
        out[i] = 1.0
    for i in range(frozen, frozen + blend):
        c = (frozen + blend - i) / (blend + 1)
        out[i] = c * math.expm1(c) / (math.e - 1.0)
    return out


def inpaint_times(num_steps: int) -> tuple[float, ...]:
    """The times the blend runs at, one per flow step: the time that step's Euler update reached (openpi's fp32
    schedule), with the last one exactly 0 so frozen rows end bit-equal to the prefix."""
    times, _ = flow_schedule(num_steps)
    return tuple(times[1:]) + (0.0,)


class ActionPrefix:
    """Host side of RTC: the previous chunk's rows in output units (`write`, pending), turned into the model-space
    target and the weights the forward reads (`prepare`, once per step, when the new observation's state is known).

    Device-facing buffers come from the frontend's allocator (pinned on the GPU): `w` [H], `w1` = 1 - W [H] and
    `target` [H, model_dim] (float32); with `n`, `frozen`, `blend` they describe the constraint of the current/last
    step, and change only in `prepare` -- so the oracle (reference_chunk) reads exactly what that step used, even if
    a new prefix was written since. Everything is preallocated; a tick only writes into it."""

    def __init__(self, horizon: int, action_dim: int, model_dim: int, alloc):
        self.horizon, self.action_dim, self.model_dim = horizon, action_dim, model_dim
        self.w = alloc((horizon,), np.float32)
        self.w1 = alloc((horizon,), np.float32)
        self.target = alloc((horizon, model_dim), np.float32)
        self.w1.fill(1.0)
        self.n = self.frozen = self.blend = 0
        # pending: what write() took, applied by the next prepare()
        self._rows = np.zeros((horizon, action_dim), np.float64)   # the prefix as written, output units
        self._w = np.zeros(horizon, np.float32)
        self._w1 = np.ones(horizon, np.float32)
        self._pending = (0, 0, 0)                                   # (n, frozen, blend)
        self._model = np.zeros((horizon, action_dim), np.float64)  # scratch: model space (contiguous rows)
        self._finite = np.zeros((horizon, action_dim), np.bool_)   # scratch: the finiteness check

    @property
    def pending(self) -> tuple[int, int, int]:
        """(n, frozen, blend) of the prefix the next step will use."""
        return self._pending

    def write(self, prefix, frozen: int, blend: int | None = None) -> None:
        """prefix [n, action_dim] in output units (what step()/predict returned), row 0 = the new chunk's row 0;
        `frozen` rows fixed, `blend` soft rows after them (default: the rest of the prefix). None clears. A refused
        call changes nothing."""
        if prefix is None:
            if frozen != 0 or blend not in (None, 0):
                raise InputError(f"write_action_prefix(None, ...) clears the prefix and takes frozen=0; got "
                                 f"frozen={frozen!r}, blend={blend!r}")
            self._pending = (0, 0, 0)
            self._w.fill(0.0)
            self._w1.fill(1.0)
            return
        x = np.asarray(prefix)
        h, a = self.horizon, self.action_dim
        if x.ndim != 2 or x.shape[1] != a or not 1 <= x.shape[0] <= h:
            raise InputError(f"action prefix must be [n, {a}] with 1 <= n <= action_horizon={h} (rows of the last "
                             f"chunk in output units); got shape {x.shape}")
        n = x.shape[0]
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating) or \
                not np.isfinite(x, out=self._finite[:n]).all():
            raise InputError("action prefix must be finite real numbers (it holds NaN/inf or is not numeric)")
        if isinstance(frozen, bool) or not isinstance(frozen, (int, np.integer)) or not 0 <= frozen <= n:
            raise InputError(f"frozen must be an int in 0..{n} (the prefix's rows); got {frozen!r}")
        if blend is None:
            blend = n - int(frozen)
        if isinstance(blend, bool) or not isinstance(blend, (int, np.integer)) or not 0 <= blend <= n - frozen:
            raise InputError(f"blend must be an int in 0..{n - frozen} (prefix rows after the {frozen} frozen ones) "
                             f"or None; got {blend!r}")
        np.copyto(self._rows[:n], x, casting="unsafe")
        self._pending = (n, int(frozen), int(blend))
        soft_weights(int(frozen), int(blend), self._w)
        np.subtract(1.0, self._w, out=self._w1)

    def prepare(self, normalizer, delta) -> None:
        """The pending prefix becomes this step's constraint: weights copied to the device-facing buffers, rows to
        model space -- delta dims minus this observation's state (`delta`, a DeltaActions whose offset is set, or
        None), then the action normalization; padded model dims and rows past the prefix 0."""
        n = self._pending[0]
        self.n, self.frozen, self.blend = self._pending
        np.copyto(self.w, self._w)
        np.copyto(self.w1, self._w1)
        self.target[n:].fill(0.0)
        if n == 0:
            return
        rows, a = self._model[:n], self.action_dim
        np.copyto(rows, self._rows[:n])
        if delta is not None:
            delta.remove(rows)
        if normalizer is not None and normalizer.action_dim is not None:
            normalizer.normalize_actions(rows, out=rows)
        np.copyto(self.target[:n, :a], rows, casting="same_kind")
        self.target[:n, a:] = 0.0
