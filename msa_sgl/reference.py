"""Float64 reference of every MSA stage: the oracle the kernels are tested against.

Plain and readable rather than fast: inputs are upcast to float64, every request is handled on
its own, and each stage follows ../shared/MSA.md (sections 2-4) line by line.

Stages:
  * :func:`index_scores`  - max-pooled index logits per (query, group, block), -inf where a block
                            holds no key visible to the query;
  * :func:`index_topk`    - the selection rule (forced init/local blocks, best others, ties to
                            the lower block id), ascending ids, -1 tail;
  * :func:`sparse_attention` - exact softmax attention over the selected blocks;
  * :func:`msa_attention` - both branches;
  * :func:`dense_attention` - dense causal GQA over the same paged cache, written independently,
                            the cross-check for "topk >= number of blocks".

The signatures are those of the public API (``msa_sgl.index_topk`` and friends); outputs are
float64 (``topk_idx`` int32). The metadata values are validated (the reference may synchronise).
"""

from __future__ import annotations

import math
from typing import List, Tuple

import torch

from . import _validate as V
from .config import MSAConfig

__all__ = [
    "index_scores",
    "index_topk",
    "select_blocks",
    "sparse_attention",
    "msa_attention",
    "dense_attention",
    "query_positions",
    "quantize_index_keys",
]

_F64 = torch.float64


def query_positions(cu_seqlens_q: torch.Tensor, seq_lens_k: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(request id, position) of every query row, int64 ``[total_q]`` each (MSA.md section 2).

    Query ``i`` of request ``b`` sits at ``pos = seq_len_k[b] - q_len[b] + i`` (bottom-right).
    """
    cu = cu_seqlens_q.cpu().to(torch.int64)
    lens = seq_lens_k.cpu().to(torch.int64)
    q_lens = cu[1:] - cu[:-1]
    req = torch.repeat_interleave(torch.arange(len(lens)), q_lens)
    within = torch.arange(int(cu[-1])) - cu[:-1][req]
    pos = lens[req] - q_lens[req] + within
    return req, pos


def _requests(cu_seqlens_q, seq_lens_k):
    cu = cu_seqlens_q.cpu().tolist()
    lens = seq_lens_k.cpu().tolist()
    for b in range(len(lens)):
        yield b, cu[b], cu[b + 1], lens[b]


_ROW_CHUNK = 256


def _row_chunks(start: int, end: int):
    """Query rows ``start:end`` in slices of ``_ROW_CHUNK``, to bound the float64 logits kept at once."""
    for lo in range(start, end, _ROW_CHUNK):
        yield lo, min(lo + _ROW_CHUNK, end)


def _gather_tokens(cache: torch.Tensor, page_row: torch.Tensor, seq_len: int) -> torch.Tensor:
    """The first ``seq_len`` tokens of one request from a paged cache ``[pages, B, ...]``,
    as float64 ``[seq_len, ...]`` in logical order."""
    block_size = cache.shape[1]
    n_blocks = (seq_len + block_size - 1) // block_size
    pages = page_row[:n_blocks].cpu().to(torch.int64)
    tokens = cache.cpu()[pages].to(_F64)  # [n_blocks, B, ...]
    return tokens.reshape(n_blocks * block_size, *cache.shape[2:])[:seq_len]


def index_scores(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig,
                 k_idx_scale=None) -> torch.Tensor:
    """Block scores ``M[t, g, b] = max_{j in block b, j <= pos_t} <q_idx[t, g], k_idx[j]> * scale_idx``.

    Returns float64 ``[total_q, Hkv, max_pages]`` on the CPU; ``-inf`` for blocks with no visible key
    (blocks after the query's own block, and columns past the request's pages).

    8-bit index keys (``k_idx_cache`` float8_e4m3fn, ``k_idx_scale`` float32 ``[pages, B]``): the
    keys are ``k8 * scale`` and every index query row is rounded the same way (e4m3 after scaling
    by ``448 / max|q|``, then scaled back), which is what the kernels multiply.
    """
    dims = V.check_index_inputs(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, k_idx_scale)
    V.validate_metadata(
        page_table, cu_seqlens_q, seq_lens_k, total_q=dims.total_q, num_pages=dims.num_pages, block_size=dims.block_size
    )
    B = config.block_size
    scale = config.resolved_index_scale(dims.index_dim)
    out = torch.full((dims.total_q, dims.num_kv_heads, dims.max_pages), -math.inf, dtype=_F64)
    q64 = q_idx.cpu().to(_F64)
    if k_idx_scale is not None:
        from .ops.quant import quantize_e4m3_reference

        q8, q_scale = quantize_e4m3_reference(q_idx.cpu())
        q64 = q8.to(_F64) * q_scale.to(_F64)[..., None]
        k_idx_cache = k_idx_cache.cpu().to(_F64) * k_idx_scale.cpu().to(_F64)[..., None]
    for b, start, end, seq_len in _requests(cu_seqlens_q, seq_lens_k):
        q_len = end - start
        if q_len == 0:
            continue
        keys = _gather_tokens(k_idx_cache, page_table[b], seq_len)  # [L, d_idx]
        n_blocks = (seq_len + B - 1) // B
        for lo, hi in _row_chunks(start, end):
            pos = torch.arange(hi - lo) + (seq_len - q_len) + (lo - start)  # [rows]
            s = torch.einsum("tgd,jd->tgj", q64[lo:hi], keys) * scale  # [rows, Hkv, L]
            visible = torch.arange(seq_len)[None, :] <= pos[:, None]  # [rows, L]
            s = s.masked_fill(~visible[:, None, :], -math.inf)
            s = torch.nn.functional.pad(s, (0, n_blocks * B - seq_len), value=-math.inf)
            out[lo:hi, :, :n_blocks] = s.reshape(hi - lo, dims.num_kv_heads, n_blocks, B).amax(dim=-1)
    return out


def select_blocks(block_scores: torch.Tensor, p: int, config: MSAConfig) -> List[int]:
    """The selection rule of MSA.md section 3 for one (query, group).

    ``block_scores``: float64 ``[>= p + 1]``, scores of blocks ``0..p``. Returns the ascending
    list of ``min(topk, p + 1)`` selected block ids.
    """
    n = p + 1
    k = config.topk
    if n <= k:
        return list(range(n))
    forced = set(range(config.num_init_blocks)) | set(range(p - config.num_local_blocks + 1, p + 1))
    others = [b for b in range(n) if b not in forced]
    # best score first; equal scores go to the lower block id (Python's sort is stable)
    others.sort(key=lambda b: -float(block_scores[b]))
    chosen = others[: k - len(forced)]
    return sorted(forced | set(chosen))


def index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig,
               k_idx_scale=None) -> torch.Tensor:
    """Selected logical blocks, int32 ``[total_q, Hkv, topk]``: ascending ids, ``-1`` tail."""
    scores = index_scores(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, k_idx_scale)
    total_q, num_groups, _ = scores.shape
    _, pos = query_positions(cu_seqlens_q, seq_lens_k)
    out = torch.full((total_q, num_groups, config.topk), -1, dtype=torch.int32)
    for t in range(total_q):
        p = int(pos[t]) // config.block_size
        for g in range(num_groups):
            chosen = select_blocks(scores[t, g], p, config)
            out[t, g, : len(chosen)] = torch.tensor(chosen, dtype=torch.int32)
    return out.to(q_idx.device)


def _attend(q, keys, values, log_weight, scale):
    """Grouped softmax attention with per-key log multiplicities.

    q ``[T, Hkv, G, D]`` (the G query heads of each KV group), keys/values ``[L, Hkv, D]``,
    log_weight ``[T, Hkv, L]`` (``-inf`` = key not attended; shared by the group's heads).
    Returns out ``[T, Hkv * G, D]`` (zero where a row attends nothing) and lse ``[T, Hkv * G]``
    (``-inf`` there).
    """
    logits = torch.einsum("tgqd,jgd->tgqj", q, keys) * scale + log_weight[:, :, None, :]
    lse = torch.logsumexp(logits, dim=-1)  # [T, Hkv, G]
    empty = torch.isneginf(lse)
    probs = torch.exp(logits - torch.where(empty, 0.0, lse)[..., None])
    out = torch.einsum("tgqj,jgd->tgqd", probs, values).masked_fill(empty[..., None], 0.0)
    return out.flatten(1, 2), lse.flatten(1, 2)


def _check_main(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config):
    dims = V.check_attention_inputs(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    V.validate_metadata(
        page_table, cu_seqlens_q, seq_lens_k, total_q=dims.total_q, num_pages=dims.num_pages, block_size=dims.block_size
    )
    return dims


def sparse_attention(
    q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config: MSAConfig, return_lse: bool = False
):
    """Exact softmax attention of every query head over its group's selected blocks.

    ``topk_idx[t, g]`` lists slots of logical block ids; the keys attended are the visible
    keys (``j <= pos``) of every slot, concatenated: a negative id is an empty slot, an id
    past the query's own block adds nothing (its keys are all in the future), and an id listed
    twice counts twice (the kernels merge one partial result per slot). Selections made by
    :func:`index_topk` hold unique ids, so there this is plain attention over their union.

    Returns float64 ``out [total_q, Hq, D]`` (and float64 ``lse [total_q, Hq]``, natural log, when
    ``return_lse``); a row with no attended key gets ``out = 0`` and ``lse = -inf``.
    """
    dims = _check_main(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    V.check_topk_idx(topk_idx, dims, config, q)
    B, G = config.block_size, dims.group_size
    scale = config.resolved_softmax_scale(dims.head_dim)
    out = torch.zeros(dims.total_q, dims.num_q_heads, dims.head_dim, dtype=_F64)
    lse = torch.full((dims.total_q, dims.num_q_heads), -math.inf, dtype=_F64)
    q64, sel = q.cpu().to(_F64), topk_idx.cpu().to(torch.int64)
    for b, start, end, seq_len in _requests(cu_seqlens_q, seq_lens_k):
        q_len = end - start
        if q_len == 0:
            continue
        keys = _gather_tokens(k_cache, page_table[b], seq_len)  # [L, Hkv, D]
        values = _gather_tokens(v_cache, page_table[b], seq_len)  # [L, Hkv, D]
        n_blocks = (seq_len + B - 1) // B
        for lo, hi in _row_chunks(start, end):
            # count[t, g, blk]: how many slots of (t, g) name block blk (ids < 0 or >= n_blocks: none)
            ids = sel[lo:hi]  # [rows, Hkv, topk]
            count = torch.zeros(hi - lo, dims.num_kv_heads, n_blocks + 1, dtype=_F64)
            in_range = (ids >= 0) & (ids < n_blocks)
            count.scatter_add_(2, torch.where(in_range, ids, n_blocks), in_range.to(_F64))
            count = count[..., :n_blocks].repeat_interleave(B, dim=2)[..., :seq_len]  # per key [rows, Hkv, L]
            pos = torch.arange(hi - lo) + (seq_len - q_len) + (lo - start)  # [rows]
            visible = torch.arange(seq_len)[None, :] <= pos[:, None]  # [rows, L]
            log_weight = torch.log(count * visible[:, None, :])  # log 0 = -inf: key not attended
            q_rows = q64[lo:hi].unflatten(1, (dims.num_kv_heads, G))  # [rows, Hkv, G, D]
            out[lo:hi], lse[lo:hi] = _attend(q_rows, keys, values, log_weight, scale)
    out = out.to(q.device)
    return (out, lse.to(q.device)) if return_lse else out


def msa_attention(
    q,
    k_cache,
    v_cache,
    q_idx,
    k_idx_cache,
    page_table,
    cu_seqlens_q,
    seq_lens_k,
    config: MSAConfig,
    return_lse: bool = False,
    k_idx_scale=None,
):
    """Index branch then main branch (float64)."""
    V.check_msa_inputs(q, k_cache, v_cache, q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config,
                       k_idx_scale)
    topk_idx = index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, k_idx_scale)
    return sparse_attention(
        q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, return_lse=return_lse
    )


def quantize_index_keys(k_idx, slots, k8_cache, scale_cache) -> None:
    """What ``msa_sgl.quantize_index_keys`` stores, written with torch ops (in place)."""
    from .ops.quant import quantize_e4m3_reference

    V.check_quantize_inputs(k_idx, slots, k8_cache, scale_cache)
    n_slots = k8_cache.shape[0] * k8_cache.shape[1]
    keep = (slots >= 0) & (slots < n_slots)
    x8, scale = quantize_e4m3_reference(k_idx[keep])
    k8_cache.view(n_slots, -1)[slots[keep].long()] = x8
    scale_cache.view(n_slots)[slots[keep].long()] = scale


def dense_attention(
    q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, softmax_scale=None, return_lse: bool = False
):
    """Dense causal GQA over the paged cache (float64), bottom-right aligned.

    Independent of the selection code: the cross-check that MSA with ``topk >= number of blocks``
    is dense attention. Same layouts as :func:`sparse_attention`; the page size is read from
    ``k_cache.shape[1]``.
    """
    config = MSAConfig(block_size=k_cache.shape[1], topk=1)
    dims = _check_main(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config)
    G = dims.group_size
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(dims.head_dim)
    out = torch.zeros(dims.total_q, dims.num_q_heads, dims.head_dim, dtype=_F64)
    lse = torch.full((dims.total_q, dims.num_q_heads), -math.inf, dtype=_F64)
    for b, start, end, seq_len in _requests(cu_seqlens_q, seq_lens_k):
        q_len = end - start
        if q_len == 0:
            continue
        keys = _gather_tokens(k_cache, page_table[b], seq_len)
        values = _gather_tokens(v_cache, page_table[b], seq_len)
        for h in range(dims.num_q_heads):
            qh = q[start:end, h].cpu().to(_F64)  # [q_len, D]
            kh, vh = keys[:, h // G], values[:, h // G]  # [L, D]
            logits = (qh @ kh.T) * scale
            causal = torch.ones(q_len, seq_len, dtype=torch.bool).tril(diagonal=seq_len - q_len)
            logits = logits.masked_fill(~causal, -math.inf)
            out[start:end, h] = torch.softmax(logits, dim=-1) @ vh
            lse[start:end, h] = torch.logsumexp(logits, dim=-1)
    out = out.to(q.device)
    return (out, lse.to(q.device)) if return_lse else out
