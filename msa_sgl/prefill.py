"""Prefill (and any other call) in the FlashInfer style: ``plan()`` once per batch, ``run()``
once per layer.

A model runs ``msa_attention`` once per sparse layer with the same metadata (page table,
``cu_seqlens_q``, ``seq_lens_k``) every time; only the layer's tensors change. The per-call
metadata and launch choices cost host time that matters at short chunks (benchmarks/NOTES.md
v21-v22: a call with an index branch costs ~1.4-2.5 ms of host time, more than its GPU work below
~8K query tokens on a short context). :class:`MSAPrefillWrapper` pays it once per batch (0.1-0.56
ms less a layer where the index branch runs, H100, NOTES.md v22b):

* ``plan(page_table, cu_seqlens_q, seq_lens_k, total_q)``: validates the metadata on the host,
  decides which rows take the dense kernel, fixes the index branch's launch shapes, builds the
  row requests and the index tile map on the device (one launch, no synchronisation) and
  allocates the index branch's buffers (the selection and its partial lists).
* ``run(q, k_cache, v_cache, q_idx, k_idx_cache)``: validates the layer's tensors on the host
  and launches the kernels: the same kernels, launch shapes and results (bitwise) as
  ``msa_sgl.msa_attention`` with the planned metadata. Each call returns new ``out`` (and
  ``lse``) tensors, so layers keep their own outputs.

The wrapper keeps references to the planned metadata tensors: their values must not change
until the batch's last ``run()``. ``run()`` calls are ordered by the current CUDA stream (the
selection buffer is reused by every layer): run them on one stream. Not for CUDA-graph capture
(the main branch allocates its workspace per call); decode steps under graphs take
:class:`msa_sgl.MSADecodeWrapper`.
"""

from __future__ import annotations

import torch

from . import _validate as V
from .api import _check_head_dim, _check_kernel_device, _check_workspace_bytes, _ops
from .config import MSAConfig

__all__ = ["MSAPrefillWrapper"]


class MSAPrefillWrapper:
    """Both MSA branches for a batch's layers, with plan/run split (see the module docstring).

    Args:
        config: the MSA configuration.
        num_q_heads, num_kv_heads, head_dim, index_dim: the layer shapes (``Hq``, ``Hkv``,
            ``D``, ``d_idx``); ``Hq`` a multiple of ``Hkv``.
        dtype: q's dtype (bf16 or fp16; fp32 for tests); device: where the calls run.
        index_fp8: ``run()`` gets 8-bit index keys (float8_e4m3fn ``k_idx_cache`` with
            ``k_idx_scale``); False: keys in q's dtype.
        workspace_bytes: as ``msa_sgl.msa_attention``'s (None: its default).
    """

    def __init__(self, config: MSAConfig, *, num_q_heads: int, num_kv_heads: int, head_dim: int, index_dim: int,
                 dtype: torch.dtype = torch.bfloat16, device="cuda", index_fp8: bool = False,
                 workspace_bytes: int | None = None):
        self.config = V.check_config(config)
        self.hq = V.check_positive_int("num_q_heads", num_q_heads)
        self.hkv = V.check_positive_int("num_kv_heads", num_kv_heads)
        if self.hq % self.hkv:
            raise ValueError(f"num_q_heads: expected a multiple of num_kv_heads={self.hkv}, got {self.hq}")
        _check_head_dim("head_dim", head_dim)
        _check_head_dim("index_dim", index_dim)
        self.head_dim, self.index_dim = head_dim, index_dim
        if dtype not in (torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"dtype: expected torch.bfloat16, torch.float16 or torch.float32, got {dtype}")
        self.dtype = dtype
        probe = torch.empty(0, device=device)
        _check_kernel_device("device", probe)
        self.device = probe.device
        if not isinstance(index_fp8, bool):
            raise ValueError(f"index_fp8: expected True or False, got {index_fp8!r}")
        self.index_fp8 = index_fp8
        _check_workspace_bytes(workspace_bytes)
        self.workspace_bytes = workspace_bytes
        self._ops = _ops()
        self._planned = None

    def plan(self, page_table: torch.Tensor, cu_seqlens_q: torch.Tensor, seq_lens_k: torch.Tensor,
             total_q: int) -> None:
        """Takes a batch's metadata (layouts of msa_sgl/__init__.py); ``total_q``: its query rows
        (host int, ``cu_seqlens_q[-1]``). Device values must satisfy the contract
        (``msa_sgl.validate_metadata``); they are not read here. Replaces any earlier plan."""
        if not isinstance(total_q, int) or isinstance(total_q, bool) or total_q < 0:
            raise ValueError(f"total_q: expected a non-negative int (the batch's query rows), got {total_q!r}")
        batch, width = V.check_metadata(page_table, cu_seqlens_q, seq_lens_k, total_q)
        if page_table.device != self.device:
            raise ValueError(f"page_table: expected device {self.device}, got {page_table.device}")
        ops, config = self._ops, self.config
        self._planned = None
        dense = ops.main_branch.dense_rows_pay(total_q, batch, self.hq, self.hkv, config)
        index = None
        if total_q and not (dense and ops.main_branch.every_row_dense(page_table, config)):
            plan = ops.plan_index(total_q, batch, width, self.hkv, config, self.device, fp8=self.index_fp8,
                                  dtype=self.dtype, index_dim=self.index_dim)
            tiles, token_req = ops.metadata.call_rows(cu_seqlens_q, total_q, plan.block_t)
            topk = torch.empty(total_q, self.hkv, config.topk, dtype=torch.int32, device=self.device)
            index = (plan, tiles, token_req, plan.workspace(total_q, self.hkv, self.device), topk)
        self._planned = (page_table, cu_seqlens_q, seq_lens_k, total_q, dense, index)

    def run(self, q, k_cache, v_cache, q_idx, k_idx_cache, *, k_idx_scale: torch.Tensor | None = None,
            return_lse: bool = False):
        """Both branches for the planned batch, as ``msa_sgl.msa_attention``: ``out [total_q, Hq,
        D]`` (and float32 ``lse [total_q, Hq]`` when ``return_lse``), new tensors each call."""
        if self._planned is None:
            raise ValueError("run: expected a planned batch (call plan() first), got none")
        pt, cu, sl, total_q, dense, index = self._planned
        V.check_wrapper_layer(self, q, k_cache, v_cache, q_idx, k_idx_cache, k_idx_scale, pt, cu, sl, total_q)
        ops = self._ops
        topk = token_req = None
        if index is not None:
            plan, tiles, token_req, part_keys, topk = index
            ops.launch_index(q_idx, k_idx_cache, pt, cu, sl, self.config, plan, tiles.tile_cum, tiles.grid_tiles,
                             token_req, part_keys, topk, k_idx_scale)
        return ops.sparse_attention(q, k_cache, v_cache, topk, pt, cu, sl, self.config, return_lse=return_lse,
                                    workspace_bytes=self.workspace_bytes, dense_rows=dense, token_req=token_req)
