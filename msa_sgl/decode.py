"""Decode in the FlashInfer style: ``plan()`` once per step, ``run()`` once per layer.

:class:`MSADecodeWrapper` serves calls with few query tokens per request (decode, multi-token
prediction, speculative verify: 1-16 tokens each), the case where per-call metadata and
allocation would cost as much as the kernels. The layouts are those of msa_sgl/__init__.py.

* ``__init__`` allocates every buffer once, for at most ``max_batch`` requests of at most
  ``max_q_len`` query tokens and ``max_pages`` blocks each.
* ``plan(page_table, cu_seqlens_q, seq_lens_k, total_q)`` (once per step, outside CUDA-graph
  capture): validates the metadata on the host, copies it into the wrapper's own buffers and
  derives the per-step metadata there (token -> request map, request tile offsets), with device
  ops only (no synchronisation). It fixes the launch shapes, which depend on ``(batch,
  total_q)`` and the wrapper's sizes only.
* ``run(q, k_cache, v_cache, q_idx, k_idx_cache)`` (once per layer): validates shapes on the
  host, then launches the index branch and the split main branch into the preallocated
  buffers. No allocation, no synchronisation, fixed launch shapes: a CUDA graph captured
  around ``run()`` replays correctly after any later ``plan()`` with the same ``batch`` and
  ``total_q`` (new lengths and page tables), because every pointer it reads is the wrapper's.

The returned ``out`` (and ``lse``) are views of the wrapper's buffers, overwritten by the next
``run()``; copy them (or pass ``out=``) to keep them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from . import _validate as V
from .api import _check_head_dim, _check_kernel_device, _ops
from .config import MSAConfig

__all__ = ["MSADecodeWrapper", "StepPlan"]

MAX_Q_LEN = 16
# Whether the split form's slot kernel merges the index lists itself (no index finalize kernel:
# one kernel and one memory round trip fewer a step). Each of a row's topk slot programs repeats
# the row's merge, so it pays while the slot kernel has at most one program per SM: H100, M3
# shapes, 1 x 32K-1M 2.1-2.6 us a step faster with bf16 index keys, 0.9-1.5 with 8-bit keys,
# batch 2 or 2 query tokens ~1.6 us; 4 or 8 requests and 8 query tokens 0.3-2.6 us slower
# (benchmarks/NOTES.md v13). None: that rule; True / False: always / never (tests, A/B studies).
FUSED_SELECT = None


def fused_select(method: str, total_q: int, hkv: int, topk: int, device) -> bool:
    """The split form merges the index lists in its slot kernel (see FUSED_SELECT)."""
    if method != "split":
        return False
    if FUSED_SELECT is not None:
        return FUSED_SELECT
    return total_q * hkv * topk <= _ops().metadata.num_sms(device)


class StepPlan(NamedTuple):
    """The launch choices of one ``MSADecodeWrapper.plan()`` (from shapes only)."""

    batch: int
    total_q: int
    index: object  # msa_sgl.ops.IndexLaunch: the index branch's launch shapes
    grid_tiles: int  # index-branch tiles launched
    method: str  # main-branch form: "split" or "q_outer"
    fused_select: bool  # the split form's slot kernel merges the index lists (no finalize kernel)


class MSADecodeWrapper:
    """Both MSA branches for calls of 1-16 query tokens per request, with plan/run split.

    Args:
        config: the MSA configuration.
        num_q_heads, num_kv_heads, head_dim, index_dim: the layer shapes (``Hq``, ``Hkv``,
            ``D``, ``d_idx``); ``Hq`` a multiple of ``Hkv``.
        max_batch: most requests per step.
        max_pages: most blocks per request (the page table's width; ``ceil(context / B)``).
        max_q_len: most query tokens per request (1..16).
        dtype: q's dtype (bf16 or fp16; fp32 for tests); device: where everything lives.
        pdl: launch ``run()``'s kernels with programmatic dependent launch, each one starting
            while its predecessor finishes (None: where supported, i.e. CUDA sm_90+ unless
            ``MSA_SGL_PDL=0``; see ``msa_sgl.ops.metadata.pdl_enabled``).
        index_fp8: ``run()`` gets 8-bit index keys (float8_e4m3fn ``k_idx_cache`` with
            ``k_idx_scale``); False: keys in q's dtype. The index scan's launch shapes differ
            (more programs, a deeper pipeline), so the key format is fixed here and ``run()``
            raises on the other one.
    """

    def __init__(self, config: MSAConfig, *, num_q_heads: int, num_kv_heads: int, head_dim: int, index_dim: int,
                 max_batch: int, max_pages: int, max_q_len: int = 1, dtype: torch.dtype = torch.bfloat16,
                 device="cuda", pdl: bool | None = None, index_fp8: bool = False):
        self.config = V.check_config(config)
        self.hq = V.check_positive_int("num_q_heads", num_q_heads)
        self.hkv = V.check_positive_int("num_kv_heads", num_kv_heads)
        if self.hq % self.hkv:
            raise ValueError(f"num_q_heads: expected a multiple of num_kv_heads={self.hkv}, got {self.hq}")
        _check_head_dim("head_dim", head_dim)
        _check_head_dim("index_dim", index_dim)
        self.head_dim, self.index_dim = head_dim, index_dim
        self.max_batch = V.check_positive_int("max_batch", max_batch)
        self.max_pages = V.check_positive_int("max_pages", max_pages)
        self.max_q_len = V.check_positive_int("max_q_len", max_q_len, MAX_Q_LEN)
        if dtype not in (torch.bfloat16, torch.float16, torch.float32):
            raise ValueError(f"dtype: expected torch.bfloat16, torch.float16 or torch.float32, got {dtype}")
        self.dtype = dtype
        probe = torch.empty(0, device=device)
        _check_kernel_device("device", probe)
        self.device = probe.device  # with its index: cuda -> cuda:0
        ops = _ops()
        self._ops = ops
        if pdl is not None and not isinstance(pdl, bool):
            raise ValueError(f"pdl: expected None, True or False, got {pdl!r}")
        supported = ops.pdl_enabled(self.device)
        if pdl and not supported:
            raise ValueError(f"pdl: programmatic dependent launch needs CUDA sm_90+ (NVIDIA, Triton >= 3.4) outside "
                             f"Triton's interpreter (and MSA_SGL_PDL unset or 1); got device {self.device}")
        self.pdl = supported if pdl is None else pdl
        if not isinstance(index_fp8, bool):
            raise ValueError(f"index_fp8: expected True or False, got {index_fp8!r}")
        self.index_fp8 = index_fp8

        max_q = self.max_batch * self.max_q_len
        i32 = dict(dtype=torch.int32, device=self.device)
        self._page_table = torch.zeros(self.max_batch, self.max_pages, **i32)
        self._seq_lens = torch.ones(self.max_batch, **i32)
        self._cu_seqlens = torch.zeros(self.max_batch + 1, **i32)
        self._token_req = torch.zeros(max_q, **i32)
        self._tile_cum = torch.zeros(self.max_batch + 1, **i32)
        self._topk = torch.full((max_q, self.hkv, config.topk), -1, **i32)
        self._out = torch.zeros(max_q, self.hq, head_dim, dtype=dtype, device=self.device)
        self._lse = torch.zeros(max_q, self.hq, dtype=torch.float32, device=self.device)
        # index partial lists: at least what any (batch, total_q) within the limits asks for
        idx_elems = ops.index_branch.workspace_bound(self.max_batch, self.max_q_len, self.max_pages, self.hkv,
                                                     config, self.device, fp8=index_fp8)
        self._part_keys = torch.empty(idx_elems, dtype=torch.int64, device=self.device)
        # main branch: the split form for the calls that choose it, query-outer beyond
        split_rows = max([t for t in range(1, max_q + 1) if ops.main_branch.choose_method(t, self.hkv, self.device)
                          == "split"] or [0])
        self._o_part, self._lse_part = ops.split_workspace(split_rows, self.hq, head_dim, config.topk, self.device)
        self._planned = None

    def workspace_bytes(self) -> int:
        """Device memory the wrapper holds."""
        bufs = (self._page_table, self._seq_lens, self._cu_seqlens, self._token_req, self._tile_cum,
                self._topk, self._out, self._lse, self._part_keys, self._o_part, self._lse_part)
        return sum(b.numel() * b.element_size() for b in bufs)

    def plan(self, page_table: torch.Tensor, cu_seqlens_q: torch.Tensor, seq_lens_k: torch.Tensor,
             total_q: int | None = None) -> None:
        """Takes one step's metadata (layouts of msa_sgl/__init__.py; ``page_table`` at most
        ``max_pages`` wide). ``total_q`` is the number of query rows of the step (host int;
        default: one per request, i.e. ``batch``). Device values must satisfy the contract
        (``msa_sgl.validate_metadata``); they are not read here."""
        batch, width = V.check_metadata(page_table, cu_seqlens_q, seq_lens_k)
        if batch > self.max_batch:
            raise ValueError(f"page_table: expected at most max_batch={self.max_batch} rows, got {batch}")
        if width > self.max_pages:
            raise ValueError(f"page_table: expected at most max_pages={self.max_pages} columns, got {width}")
        if page_table.device != self.device:
            raise ValueError(f"page_table: expected device {self.device}, got {page_table.device}")
        total_q = batch if total_q is None else total_q
        if not isinstance(total_q, int) or isinstance(total_q, bool) or not 0 <= total_q <= batch * self.max_q_len:
            raise ValueError(f"total_q: expected an int in [0, batch * max_q_len = {batch * self.max_q_len}], "
                             f"got {total_q!r}")
        ops = self._ops
        self._page_table[:batch, :width].copy_(page_table)
        self._seq_lens[:batch].copy_(seq_lens_k)
        self._cu_seqlens[: batch + 1].copy_(cu_seqlens_q)
        cu = self._cu_seqlens[: batch + 1]
        idx_plan = ops.plan_index(total_q, batch, self.max_pages, self.hkv, self.config, self.device,
                                  fp8=self.index_fp8)
        if total_q * self.hkv * idx_plan.n_split * idx_plan.kf > self._part_keys.numel():  # never, by the bound
            raise ValueError(f"total_q: the index workspace (sized at construction) is too small for "
                             f"{total_q} rows of {batch} requests; please report this")
        # the request of every query row (always in [0, batch)) and the index tile map, one launch
        tiles, _ = ops.metadata.call_rows(cu, total_q, idx_plan.block_t, out=(self._tile_cum, self._token_req))
        method = ops.main_branch.choose_method(total_q, self.hkv, self.device)
        if method == "kv_outer":  # (KV_OUTER_MIN_QUERIES rows or more, e.g. 64 requests x 16 tokens) the
            method = "q_outer"  # KV-outer form builds its block tiles per call: not a graph-safe run()
        if method == "split" and total_q * self.hq * self.config.topk > self._o_part.shape[0]:
            method = "q_outer"
        fused = fused_select(method, total_q, self.hkv, self.config.topk, self.device)
        self._planned = StepPlan(batch, total_q, idx_plan, tiles.grid_tiles, method, fused)

    def run(self, q, k_cache, v_cache, q_idx, k_idx_cache, *, k_idx_scale: torch.Tensor | None = None,
            out: torch.Tensor | None = None, return_lse: bool = False):
        """Both branches for the planned step: ``out [total_q, Hq, D]`` (and float32 ``lse
        [total_q, Hq]`` when ``return_lse``). ``q``/``q_idx`` hold the step's ``total_q``
        rows; caches as in msa_sgl/__init__.py (8-bit index keys: float8_e4m3fn ``k_idx_cache``
        with ``k_idx_scale``, for a wrapper built with ``index_fp8=True``)."""
        if self._planned is None:
            raise ValueError("run: expected a planned batch (call plan() first), got none")
        batch, total_q, idx_plan, grid_tiles, method, fused = self._planned
        pt, cu, sl = self._page_table[:batch], self._cu_seqlens[: batch + 1], self._seq_lens[:batch]
        V.check_wrapper_layer(self, q, k_cache, v_cache, q_idx, k_idx_cache, k_idx_scale, pt, cu, sl, total_q)
        if out is None:
            out = self._out[:total_q]
        elif out.shape != (total_q, self.hq, self.head_dim) or out.dtype != self.dtype or out.device != self.device:
            raise ValueError(f"out: expected {self.dtype} [{total_q}, {self.hq}, {self.head_dim}] on {self.device}, "
                             f"got {out.dtype} {list(out.shape)} on {out.device}")
        elif out.stride(2) != 1:
            raise ValueError(f"out: expected a unit stride in the last dim, got strides {out.stride()}")
        lse = self._lse[:total_q]
        if total_q == 0:
            return (out, lse) if return_lse else out
        ops = self._ops
        pdl = self.pdl
        topk = self._topk[:total_q]
        n = total_q * self.hkv * idx_plan.n_split * idx_plan.kf
        part_keys = self._part_keys[:n].view(total_q * self.hkv, idx_plan.n_split, idx_plan.kf)
        token_req = self._token_req[:total_q]
        ops.launch_index(q_idx, k_idx_cache, pt, cu, sl, self.config, idx_plan, self._tile_cum[: batch + 1],
                         grid_tiles, token_req, part_keys, topk, k_idx_scale, pdl=pdl, finalize=not fused)
        if method == "split":
            ops.launch_split(q, k_cache, v_cache, topk, pt, cu, sl, self.config, token_req, out, lse,
                             self._o_part, self._lse_part, pdl=pdl, select=(part_keys, idx_plan) if fused else None)
        else:
            ops.launch_q_outer(q, k_cache, v_cache, topk, pt, cu, sl, self.config, token_req, out, lse, pdl=pdl)
        return (out, lse) if return_lse else out

    @property
    def step_plan(self) -> StepPlan:
        """The last ``plan()``'s launch choices (index launch shapes, main-branch form, whether
        the index lists are merged in the slot kernel), for benchmarks and logs."""
        if self._planned is None:
            raise ValueError("step_plan: plan() first")
        return self._planned

    @property
    def topk_idx(self) -> torch.Tensor:
        """The last run's selection, int32 ``[total_q, Hkv, topk]`` (a view, overwritten by the next run)."""
        if self._planned is None:
            raise ValueError("topk_idx: plan() and run() first")
        return self._topk[: self._planned.total_q]
