"""The public entry points of msa_sgl (layouts documented once, in msa_sgl/__init__.py).

Each call validates its arguments on the host (shapes, dtypes, devices, strides; no device
synchronisation), then launches the Triton kernels of msa_sgl/ops. They run on CUDA devices;
on the CPU they run only through Triton's interpreter (slow, for tests), which must be chosen
with ``TRITON_INTERPRET=1`` in the environment before the first msa_sgl call of the process
(Triton fixes the mode when the kernels are first imported). Anything else raises ValueError:
there is no silent fallback to the float64 reference; call ``msa_sgl.reference`` for that.
"""

from __future__ import annotations

import torch

from . import _validate as V
from .config import MSAConfig

__all__ = ["index_topk", "sparse_attention", "msa_attention", "quantize_index_keys"]

# Head dims the kernels are built for (the reference takes any).
_KERNEL_HEAD_DIMS = (16, 32, 64, 128)  # what the tests cover; 256 is not yet tested


def _ops():
    """The kernels, imported on first use so that TRITON_INTERPRET set before then counts."""
    from . import ops

    return ops


def _check_kernel_device(name: str, x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        return
    if x.device.type == "cpu" and _ops().INTERPRETED:
        return
    hint = (
        "set TRITON_INTERPRET=1 before the first msa_sgl call of the process to run the kernels in "
        "Triton's interpreter (slow; for tests), or use msa_sgl.reference"
        if x.device.type == "cpu"
        else "msa_sgl runs on CUDA devices"
    )
    raise ValueError(f"{name}: expected a CUDA tensor for msa_sgl's kernels, got device {x.device} ({hint})")


def _check_head_dim(name: str, value: int) -> None:
    if value not in _KERNEL_HEAD_DIMS:
        raise ValueError(f"{name}: expected a head dim in {_KERNEL_HEAD_DIMS} for the kernels, got {value}")


def index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig,
               k_idx_scale=None) -> torch.Tensor:
    """Index branch: the top-k KV blocks of every (query token, KV group).

    Args:
        q_idx: ``[total_q, Hkv, d_idx]`` index queries, one head per KV group.
        k_idx_cache: ``[num_pages, block_size, d_idx]`` index keys, one head shared by all groups;
            q_idx's dtype, or float8_e4m3fn (8-bit keys, see :func:`quantize_index_keys`).
        page_table, cu_seqlens_q, seq_lens_k, config: see msa_sgl/__init__.py.
        k_idx_scale: float32 ``[num_pages, block_size]`` per-token scales of 8-bit keys (else None).
            With 8-bit keys each index query row is rounded to e4m3 too (scaled by 448 / max|q|)
            and the products run on fp8 tensor cores; ``msa_sgl.reference`` scores the same way.

    Returns:
        int32 ``[total_q, Hkv, topk]``: logical block ids, ascending, ``-1`` tail,
        ``min(topk, p + 1)`` valid entries (MSA.md section 3).
    """
    dims = V.check_index_inputs(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, k_idx_scale)
    _check_kernel_device("q_idx", q_idx)
    _check_head_dim("q_idx.shape[2]", dims.index_dim)
    return _ops().index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, k_idx_scale=k_idx_scale)


def _check_workspace_bytes(value):
    if value is not None:
        V.check_positive_int("workspace_bytes", value)


_WORKSPACE_DOC = """workspace_bytes: upper bound on the partial outputs the KV-outer form (calls of
            ``ops.main_branch.KV_OUTER_MIN_QUERIES`` = 1024 query rows or more) holds at once,
            in bytes: ``Hq * topk * (D * q.element_size() + 4)`` per query row (260 KiB at
            MiniMax-M3 shapes), at least one tile's rows (``128 // G`` with G rounded up to a
            power of two). A call whose partials exceed it runs in passes: KV groups apart
            while all of its rows fit for at least one group (each group's K/V is read once),
            else row ranges of one group (each re-reading the K/V its queries chose). None: the
            default, ``ops.main_branch.KV_OUTER_WORKSPACE_BYTES`` (2.25 GiB: a 16K chunk at M3
            shapes in two passes of two groups); one pass for the whole chunk (~4.3 GB there)
            was 2-3% faster on an H100 (benchmarks/NOTES.md v18). Other forms ignore it."""


def sparse_attention(
    q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig, return_lse: bool = False,
    *, workspace_bytes: int | None = None,
):
    """Main branch: exact softmax attention over the blocks in ``topk_idx``.

    Args:
        q: ``[total_q, Hq, D]``.
        k_cache, v_cache: ``[num_pages, block_size, Hkv, D]``.
        topk_idx: int32 ``[total_q, Hkv, topk]`` as returned by :func:`index_topk`; negative
            entries are empty slots, ids past the query's block attend nothing.
        page_table, cu_seqlens_q, seq_lens_k, config: see msa_sgl/__init__.py.
        return_lse: also return the log-sum-exp of the scaled logits.
        {workspace}

    Returns:
        ``out`` ``[total_q, Hq, D]`` in q's dtype, and float32 ``lse`` ``[total_q, Hq]`` (natural
        log) when ``return_lse``.
    """
    dims = V.check_attention_inputs(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    V.check_topk_idx(topk_idx, dims, config, q)
    _check_workspace_bytes(workspace_bytes)
    _check_kernel_device("q", q)
    _check_head_dim("q.shape[2]", dims.head_dim)
    return _ops().sparse_attention(
        q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, return_lse=return_lse,
        workspace_bytes=workspace_bytes,
    )


sparse_attention.__doc__ = sparse_attention.__doc__.replace("{workspace}", _WORKSPACE_DOC)


def msa_attention(
    q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig,
    return_lse: bool = False, k_idx_scale=None, *, workspace_bytes: int | None = None,
):
    """Both branches in one call: :func:`index_topk` then :func:`sparse_attention`
    (``workspace_bytes``: as there). Queries whose own block is below ``config.topk`` select
    every block up to it (the contract), so they run as dense causal attention, without the
    reverse index; a page table at most ``config.topk`` blocks wide (every query such a one)
    skips the index branch. (Calls of more than 1024 requests take these paths only where the
    dense kernel's grid, then sized from shapes, is mostly used; see
    ops.main_branch.dense_rows_pay.) Outputs equal the two calls' up to rounding."""
    dims = V.check_msa_inputs(q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config,
                              k_idx_scale)
    _check_workspace_bytes(workspace_bytes)
    _check_kernel_device("q", q)
    _check_head_dim("q.shape[2]", dims.head_dim)
    _check_head_dim("q_idx.shape[2]", dims.index_dim)
    ops = _ops()
    # the selection below follows the contract, so rows that select every block may skip it
    dense = ops.main_branch.dense_rows_pay(q.shape[0], page_table.shape[0], q.shape[1], k_cache.shape[2], config)
    topk_idx = token_req = None
    if not (dense and ops.main_branch.every_row_dense(page_table, config)):  # else no selection needed
        topk_idx, token_req = ops.index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config,
                                             k_idx_scale=k_idx_scale, with_token_req=True)  # the main branch's too
    return ops.sparse_attention(
        q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, return_lse=return_lse,
        workspace_bytes=workspace_bytes, dense_rows=dense, token_req=token_req,
    )


def quantize_index_keys(k_idx, slots, k8_cache, scale_cache) -> None:
    """Stores index keys as 8-bit keys (quantize on store), in place.

    Args:
        k_idx: ``[n, d_idx]`` new index keys (float16, bfloat16 or float32).
        slots: int64 (or int32) ``[n]``: flat slot of each key, ``page * block_size + offset``
            (SGLang's ``out_cache_loc``). Slots outside ``[0, num_pages * block_size)`` are skipped.
        k8_cache: float8_e4m3fn ``[num_pages, block_size, d_idx]``.
        scale_cache: float32 ``[num_pages, block_size]``.

    Each key becomes ``k8 = e4m3(k * 448 / max|k|)`` (round to nearest even) and ``scale = max|k| /
    448`` (0 and zeros for an all-zero key); :func:`index_topk` reads them with ``k_idx_scale``.
    One kernel launch, no synchronisation.
    """
    V.check_quantize_inputs(k_idx, slots, k8_cache, scale_cache)
    _check_kernel_device("k_idx", k_idx)
    _ops().quantize_index_keys(k_idx, slots, k8_cache, scale_cache)
