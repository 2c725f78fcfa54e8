"""Host buffers of the GPU frontends: pinned memory, and the two ways a captured graph reaches it.

* staged (discrete GPUs): the graph reads its own device buffers; each step copies the pinned host inputs into
  them (async DMA) before the replay and the output back after it.
* zero copy (`device_alias`, Jetson's unified memory): the graph reads and writes the pinned host buffers in
  place. With unified virtual addressing (every 64-bit CUDA platform), memory from cudaHostAlloc -- what torch's
  pinned allocator uses -- is addressable from kernels at its host address, so a CUDA tensor over that address is
  the same bytes, no copy. On Thor CPU and GPU share one DRAM, so the staging copy would only move bytes within
  it; on a discrete GPU the same path works over PCIe (the GPU suite runs it on an H200 to check the bits).
"""
from __future__ import annotations

import numpy as np
import torch

_NP_TO_TORCH = {np.uint8: torch.uint8, np.bool_: torch.bool, np.int64: torch.int64, np.float32: torch.float32,
                np.float64: torch.float64}


class _CudaBytesView:
    """A __cuda_array_interface__ over a pinned host tensor's bytes (as uint8: every dtype, bool included, is then
    a view of it); holds the tensor so it outlives the view."""

    def __init__(self, t: torch.Tensor):
        self._owner = t
        self.__cuda_array_interface__ = {"shape": (t.numel() * t.element_size(),), "typestr": "|u1",
                                         "data": (t.data_ptr(), False), "version": 3, "strides": None}


class PinnedHostBuffers:
    """`alloc` hands out numpy views of pinned torch tensors (what the host-side IO writes); `pinned` finds the
    tensor behind such an array, `device_alias` a CUDA tensor over the same memory."""

    def __init__(self):
        self._pinned: dict[int, torch.Tensor] = {}

    def alloc(self, shape, dtype) -> np.ndarray:
        t = torch.zeros(shape, dtype=_NP_TO_TORCH[np.dtype(dtype).type], pin_memory=True)
        a = t.numpy()
        self._pinned[a.__array_interface__["data"][0]] = t
        return a

    def pinned(self, a: np.ndarray) -> torch.Tensor:
        return self._pinned[a.__array_interface__["data"][0]]

    def device_alias(self, a: np.ndarray, device) -> torch.Tensor:
        """A CUDA tensor that IS the pinned host array `a` (zero copy; see the module doc)."""
        t = self.pinned(a)
        alias = torch.as_tensor(_CudaBytesView(t), device=device).view(t.dtype).view(t.shape)
        if alias.data_ptr() != t.data_ptr():
            raise RuntimeError("zero-copy alias landed at another address than the pinned buffer")
        return alias
