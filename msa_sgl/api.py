"""The public entry points of msa_sgl (layouts documented once, in msa_sgl/__init__.py).

Each call validates its arguments on the host (shapes, dtypes, devices, strides; no device
synchronisation), then runs the implementation. Until the Triton kernels of msa_sgl/ops land,
the implementation is the float64 reference (msa_sgl.reference) with the results cast to the
input dtype: correct on any device, slow, and synchronising. The kernels will replace it behind
these same signatures.
"""

from __future__ import annotations

import torch

from . import _validate as V
from . import reference as _ref
from .config import MSAConfig

__all__ = ["index_topk", "sparse_attention", "msa_attention"]


def _cast(result, dtype: torch.dtype, return_lse: bool):
    if return_lse:
        out, lse = result
        return out.to(dtype), lse.to(torch.float32)
    return result.to(dtype)


def index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig) -> torch.Tensor:
    """Index branch: the top-k KV blocks of every (query token, KV group).

    Args:
        q_idx: ``[total_q, Hkv, d_idx]`` index queries, one head per KV group.
        k_idx_cache: ``[num_pages, block_size, d_idx]`` index keys, one head shared by all groups.
        page_table, cu_seqlens_q, seq_lens_k, config: see msa_sgl/__init__.py.

    Returns:
        int32 ``[total_q, Hkv, topk]``: logical block ids, ascending, ``-1`` tail,
        ``min(topk, p + 1)`` valid entries (MSA.md section 3).
    """
    V.check_index_inputs(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    return _ref.index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config)


def sparse_attention(
    q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig, return_lse: bool = False
):
    """Main branch: exact softmax attention over the blocks in ``topk_idx``.

    Args:
        q: ``[total_q, Hq, D]``.
        k_cache, v_cache: ``[num_pages, block_size, Hkv, D]``.
        topk_idx: int32 ``[total_q, Hkv, topk]`` as returned by :func:`index_topk`; negative
            entries are empty slots, ids past the query's block attend nothing.
        page_table, cu_seqlens_q, seq_lens_k, config: see msa_sgl/__init__.py.
        return_lse: also return the log-sum-exp of the scaled logits.

    Returns:
        ``out`` ``[total_q, Hq, D]`` in q's dtype, and float32 ``lse`` ``[total_q, Hq]`` (natural
        log) when ``return_lse``.
    """
    dims = V.check_attention_inputs(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    V.check_topk_idx(topk_idx, dims, config, q)
    result = _ref.sparse_attention(
        q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, return_lse=return_lse
    )
    return _cast(result, q.dtype, return_lse)


def msa_attention(
    q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig,
    return_lse: bool = False,
):
    """Both branches in one call: :func:`index_topk` then :func:`sparse_attention`."""
    V.check_msa_inputs(q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    result = _ref.msa_attention(
        q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, return_lse=return_lse
    )
    return _cast(result, q.dtype, return_lse)
