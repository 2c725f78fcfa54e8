"""Pi0CudaFrontend: Pi0 on any CUDA target -- the shared GPU frontend (_pi05_cuda.py) with Pi0's weights, buffers,
compute file and oracle. The (pi0, torch, <gpu>) cells (pi0_hopper.py, pi0_thor.py, pi0_rtx.py) are thin subclasses
naming the hardware key, the tuning table, the compute file and their option defaults, as Pi0.5's are.

Everything that is not the model -- option handling, weight cache, pinned host IO, FP8 calibration (first real
tick or the cache), the whole forward as one CUDA graph, latency recording -- is inherited unchanged. What Pi0
overrides: the checkpoint schema / config inference / z-score normalization (the base's hooks), the weights
(`build_weights` / `unpack_weights`: Pi0's spec, the time half of action_time_mlp_in precomputed per flow step, no
adaRMS modulation), the buffers (`device_buffers`: Pi0.5's plus the state row's and the action rows' own, the
suffix positions 1 + H, the state site's key bias), one more per-tick input (the model-space state, staged like the
images), the calibration key and the oracle.
"""
from __future__ import annotations

import importlib
import types

import numpy as np
import torch

from flash_rt.executors.safetensors_io import open_checkpoint
from flash_rt.executors.weight_cache import WeightCache
from flash_rt.errors import InputError
from flash_rt.executors.weight_loader import WeightLoader
from flash_rt.frontends.torch._pi05_cuda import Pi05CudaFrontend
from flash_rt.frontends.torch._pi05_cuda_storage import device_buffers as pi05_device_buffers
from flash_rt.frontends.torch._pi05_cuda_storage import weight_scales
from flash_rt.frontends.torch._pi0_cuda_spec import build_spec, gemm_names
from flash_rt.models.pi0 import pipeline_cpu
from flash_rt.models.pi0.attention_sites import pi0_attention_spec
from flash_rt.models.pi0.config import infer_config
from flash_rt.models.pi0.precision import BLOCKS, DEFAULT_BF16_BLOCKS, Bf16Blocks
from flash_rt.models.pi0.keys import validate_shapes
from flash_rt.models.pi0.oracle import Pi0Oracle
from flash_rt.models.pi05.config import EXP, LLM, PROJ, VIS
from flash_rt.models.pi05.dims import Pi05Dims, round_up
from flash_rt.models.pi05.flow import flow_schedule
from flash_rt.runtime.memory import require_free_memory
from flash_rt.runtime.quant import FP8

MASKED = -2.3819763e38


def blocks_tag(precision: str, bf16_blocks: tuple) -> str:
    """'-bf16-vision-expert' for an fp8 build with those blocks in bf16: weight and calibration caches key on it."""
    return "".join(f"-bf16-{b}" for b in Bf16Blocks(bf16_blocks).blocks) if precision == "fp8" else ""


def weight_spec_tag(hardware: str, precision: str, bf16_blocks: tuple = ()) -> str:
    return f"pi0-{hardware.replace('_', '-')}-{precision}{blocks_tag(precision, bf16_blocks)}-v1"


def fp8_gemm_names(cfg, w: dict) -> list:
    """gemm_names(cfg) restricted to the weights this build stored in FP8 (not those of its bf16 blocks)."""
    return [g for g in gemm_names(cfg) if w[g[0]].dtype == FP8]


def build_weights(checkpoint, cfg, precision: str, device, bf16_blocks: tuple = DEFAULT_BF16_BLOCKS,
                  open_source=open_checkpoint) -> dict:
    """The flat dict the weight cache stores; `open_source` reads another checkpoint format (the jax cells')."""
    src = open_source(checkpoint, device=str(device))
    target = types.SimpleNamespace(w={})
    WeightLoader(build_spec(cfg, precision, bf16_blocks), src).run(target)
    flat = {f"w.{k}": v for k, v in target.w.items()}
    for _, grp, _ in fp8_gemm_names(cfg, target.w) if precision == "fp8" else []:
        flat.setdefault(f"s.{grp}", getattr(target, grp))
    return flat


def unpack_weights(flat: dict, cfg, precision: str, device):
    """(w, FP8 weight scales by name, their aligned storage, dt): Pi0.5's unpacking of the shared parts (scales on
    256-byte boundaries, the patch kernel as a GEMM operand, pos + patch bias folded) plus Pi0's heads: the action
    half of action_time_mlp_in folded with action_in_proj (`at_ia_w` [A, W]), its time half + bias per flow step
    with action_in_proj's bias carried through (`at_c_rows`)."""
    flat = {k: v.to(device) for k, v in flat.items()}
    w = {k[2:]: v for k, v in flat.items() if k.startswith("w.")}
    ws, store = weight_scales(flat, fp8_gemm_names(cfg, w), device) if precision == "fp8" else ({}, None)
    w["patch_w"] = w["patch_w"].reshape(cfg.vis_width, -1).contiguous()
    w["pos_emb_b"] = (w.pop("pos_emb") + w.pop("patch_b")).contiguous()
    w["at_a_w"] = w["at_in_w"][:, :cfg.ex_width].t().contiguous()
    w["time_rows"] = pipeline_cpu.time_rows(w, cfg).contiguous()
    # action_in_proj folded into the action half of action_time_mlp_in (both linear, computed in fp64 once): a step
    # begins with x_t @ at_ia_w + at_c_rows[s] ([H, 32] @ [32, W]) instead of action_in_proj, a [H, W] @ [W, W]
    # fp32 GEMM (4 MB of weights a flow step) and the bias add
    a64 = w["at_a_w"].double()
    w["at_ia_w"] = (w["action_in_w"].double() @ a64).float().contiguous()
    w["at_c_rows"] = (w["action_in_b"].double() @ a64 + w["time_rows"].double()).float().contiguous()
    del w["at_a_w"], w["time_rows"]
    del w["at_in_w"], w["at_in_b"]
    _, dt = flow_schedule(cfg.num_steps)
    return w, ws, store, dt


def pi0_gpu_dims(cfg, num_views: int, realtime_chunking: bool = False) -> Pi05Dims:
    times, dt = flow_schedule(cfg.num_steps)
    d = Pi05Dims.of(cfg, num_views, len(times), dt, align=16, realtime_chunking=realtime_chunking)
    import dataclasses
    return dataclasses.replace(d, kv_len=round_up(d.prefix_len + 1 + d.horizon, 16))


def state_keys(d) -> int:
    return round_up(d.prefix_len + 1, 16)


def device_buffers(c, d, split_k: int, dev) -> dict:
    """Pi0.5's device buffers for the shared prefix, plus Pi0's: the state pass's rows ("st") and the action rows'
    ("ac", each with the split-K partials of its o and down), the suffix positions (state + actions), the state site's key bias, and the key-bias tail after P + 1 + H
    masked. A function of the shapes alone (the interpreter test builds the very same on the CPU)."""
    b = pi05_device_buffers(c, d, split_k, dev, None)
    for k in [k for k in b if k.startswith("ex_")]:
        del b[k]   # Pi0.5's expert rows; Pi0's are b["ac"]
    P, S = d.prefix_len, d.horizon
    qn, kvn, W = c.heads * c.head_dim, c.kv_heads * c.head_dim, c.ex_width

    def z(*shape, dtype=torch.bfloat16):
        return torch.zeros(*shape, dtype=dtype, device=dev)

    def rows(n):
        return {"x": z(n, W, dtype=torch.float32), "h": z(n, W), "h8": z(n, W, dtype=FP8), "qkv": z(n, qn + 2 * kvn),
                "q": z(c.heads, n, c.head_dim), "att": z(n, qn), "att8": z(n, qn, dtype=FP8), "o": z(n, W),
                "gu": z(n, 2 * c.ex_mlp), "act": z(n, c.ex_mlp), "act8": z(n, c.ex_mlp, dtype=FP8), "down": z(n, W),
                # split-K partials of o and down (q.linear_partials), summed by the next add_rms_norm
                "o_parts": z(split_k, n, W, dtype=torch.float32), "down_parts": z(split_k, n, W, dtype=torch.float32)}

    b["st"] = rows(1)
    b["ac"] = {**rows(S), "hid": z(S, W, dtype=torch.float32),
               "hf": z(S, W, dtype=torch.float32)}
    b["suffix_pos"] = z(1 + S, dtype=torch.int64)
    b["dec_bias"][P:] = 0.0
    b["dec_bias"][P + 1 + S:] = MASKED
    b["st_bias"] = z(state_keys(d))
    b["st_bias"][P + 1:] = MASKED
    return b


class Pi0CudaFrontend(Pi05CudaFrontend):
    """A Pi0 GPU cell sets hardware, tuning, pipeline (models/pi0/pipeline_<hw>.py) and option_defaults."""

    infer_config = staticmethod(infer_config)
    validate_shapes = staticmethod(validate_shapes)
    normalization = "zscore"

    def __init__(self, checkpoint, *, bf16_blocks=None, **kw):
        """bf16_blocks: the blocks ("vision", "prefix", "expert") that the fp8 build keeps in BF16; None = the default
        ("vision",), () = all FP8. Why (measured): models/pi0/precision.py."""
        blocks = DEFAULT_BF16_BLOCKS if bf16_blocks is None else tuple(bf16_blocks)
        try:
            self.bf16_blocks = Bf16Blocks(blocks)
        except ValueError as e:
            raise InputError(str(e)) from None
        if len(self.bf16_blocks.blocks) == len(BLOCKS) and kw.get("precision", "fp8") == "fp8":
            raise InputError(f"bf16_blocks={blocks}: every block in BF16 is the bf16 build; pass precision='bf16'")
        # Pi0 names its BF16 blocks itself (bf16_blocks); Pi0.5's outlier-site default does not apply to its build
        kw.setdefault("bf16_outlier_sites", False)
        super().__init__(checkpoint, **kw)

    def _device_bytes_needed(self) -> int:
        """The base's estimate (GEMM weights 1 byte in fp8) plus 1 byte per GEMM weight of the bf16 blocks."""
        total = super()._device_bytes_needed()
        if self.precision != "fp8":
            return total
        roots = {"vision": (VIS, PROJ), "prefix": (LLM,), "expert": (EXP,)}
        prefixes = tuple(r for blk in self.bf16_blocks.blocks for r in roots[blk])
        return total + sum(int(np.prod(shape)) for key, shape in self.source.key_shapes().items()
                           if len(shape) > 1 and key.startswith(prefixes))

    def _build_weights(self) -> dict:
        return build_weights(self.checkpoint, self.cfg, self.precision, self.device,
                             self.bf16_blocks.blocks, open_source=self.open_source)

    def _load_weights(self) -> str:
        require_free_memory(self._device_bytes_needed(), self.device, hardware=self.hardware,
                            unified=self.tuning.unified_memory)
        self._weights_root = None if self.cache_dir is None else f"{self.cache_dir}/weights"
        self.ckpt_hash = self._checkpoint_hash()    # full-content key; the jax cells hash the params files
        status = "weight cache off"
        if self.weight_cache:
            meta = {"ckpt_hash": self.ckpt_hash, "spec_tag": weight_spec_tag(self.hardware, self.precision,
                                                                                  self.bf16_blocks.blocks),
                    "num_views": 0}
            flat, self.weight_cache_status = WeightCache(self._weights_root).get_or_build(meta, self._build_weights,
                                                                             device=str(self.device))
            status = f"weight cache {self.weight_cache_status}"
        else:
            self.weight_cache_status = "off"
            flat = self._build_weights()
        self.w, self.ws, self._w_scale_store, self.dt = unpack_weights(flat, self.cfg, self.precision, self.device)
        self.mods = None
        return f"{self.precision}, {status}"

    def dims(self) -> Pi05Dims:
        return pi0_gpu_dims(self.cfg, self.num_views, self.realtime_chunking)

    def _alloc_buffers(self) -> None:
        from flash_rt.runtime.attention import TritonAttnBackend
        c, h, dev = self.cfg, self.host, self.device
        self.d = d = self.dims()
        self._pipeline = importlib.import_module(self.pipeline)
        b = device_buffers(c, d, self.tuning.split_k, dev)
        self.state = self.pinned.alloc((c.state_dim,), np.float32)     # model-space state, written each step
        inputs = {"images_u8": h.images, "image_mask": h.image_mask, "token_ids": h.token_ids,
                  "token_mask": h.token_mask, "noise": h.noise, "state": self.state}
        if h.rtc is not None:   # real-time chunking: weights and model-space prefix, written by the host per tick
            inputs.update(rtc_w=h.rtc.w, rtc_w1=h.rtc.w1, rtc_target=h.rtc.target)
        self._bind_host_inputs(inputs, b, dev)
        self.b = b
        self.attn = TritonAttnBackend(pi0_attention_spec(c, d, state_keys(d)), dev, self.tuning,
                                      self.attention_tiles)
        # the state pass and flow step 0 beside the prefix (models/pi0/cuda_forward.prefix_with_state_and_first_step)
        self._overlap = ((torch.cuda.Stream(dev), [torch.cuda.Event() for _ in range(c.layers + 2)])
                         if self.overlap_first_step else None)
        self._production_context(d, b, h, dev, flow_boundary=False, bf16_sites=self.bf16_blocks)

    def _upload(self) -> None:
        self.host.write_model_state(self.state)   # the host's normalized state -> state_proj's input, then H2D
        super()._upload()

    def shape_key(self) -> str:
        return "pi0" + super().shape_key()[len("pi05"):] + blocks_tag(self.precision, self.bf16_blocks.blocks)

    def reference_oracle(self, device: str = "cpu") -> Pi0Oracle:
        return Pi0Oracle(self.source, self.cfg, device=device)
