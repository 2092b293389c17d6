"""Index branch: exp-free block scoring and top-k selection (MSA.md section 3), in Triton.

Two kernels, no ``[tokens, blocks]`` score matrix in memory:

1. ``_index_partial_kernel``, grid ``(request-aligned token tiles, splits)`` (``(splits,
   tiles)`` for decode and MTP tiles where the grid may hold empty tiles: _SPLIT_MAJOR): one program
   stacks the index queries of ``BLOCK_T`` tokens x all ``Hkv`` groups into one tile of
   ``BLOCK_T * HKV_P`` rows (all groups read the same index-key head, so each key block is
   loaded once for all of them), walks its share of the candidate blocks, scores each block
   ``max_j <q, k_j>`` with one tensor-core product, and keeps a running top-``KF`` list per row
   on chip. Only non-forced candidates (``n_init <= b <= p - n_local``) enter the list; they
   hold only visible keys, so no causal mask is needed in the loop. The index scale is positive
   and does not change a row's ranking, so it is never applied. Output: per row and split, the
   list as int64 order keys (score, then block id; see ``_order_key``), best first,
   ``[total_q * Hkv, n_split, KF]``.
2. ``_index_finalize_kernel``, grid over ``(token, group)`` rows: merges the splits' lists
   with the same total order (score descending, then block id ascending) in parallel (a tree
   of bitonic merges of the sorted lists; or the lists' heads first: ``_HEADS_MERGE``), adds
   the forced init and local blocks, and writes the ascending ids with the ``-1`` tail. The merge
   is a helper (``_merge_select``): for small decode steps the decode wrapper skips this kernel
   and the main branch's slot kernel runs the helper itself (main_branch ``SELECT``).

On Hopper the prefill tiles' partial lists come from ``index_ws.py`` where it supports the call
(``_INDEX_WS``): the same lists in a warp-specialized Gluon kernel, on 128-row tiles up to 256
blocks a request and 256-row tiles past that (``index_ws.tile_rows``).

Extra memory: O(n_split x total_q x Hkv x KF). Ties: equal scores go to the lower block id,
exactly, because every insertion compares (score, id) pairs; bitwise-equal scores therefore
select as the reference does, and scores that differ only by fp32 rounding are genuine ties.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import index_ws
from .quant import round_e4m3
from .metadata import call_rows, find_tile_request, launch_options, num_sms, pdl_mode, pdl_wait, tile_grid

_NEG_INF = float("-inf")


@triton.jit
def _topk_insert(top_s, top_i, s, i, ok):
    """Offer (s[r], i[r]) to each row's list where ok[r]. The list keeps the best KF entries
    under (score desc, id asc): the new entry replaces the row's worst entry (lowest score,
    then highest id) when it is better. top_s/top_i [R, KF], s/i/ok [R]."""
    worst_s = tl.min(top_s, axis=1)  # [R]
    is_worst = top_s == worst_s[:, None]
    worst_i = tl.max(tl.where(is_worst, top_i, -2147483647), axis=1)  # [R]
    better = ok & ((s > worst_s) | ((s == worst_s) & (i < worst_i)))
    slot = is_worst & (top_i == worst_i[:, None]) & better[:, None]  # exactly one slot per row
    top_s = tl.where(slot, s[:, None], top_s)
    top_i = tl.where(slot, i[:, None], top_i)
    return top_s, top_i


@triton.jit
def _empty_list(R: tl.constexpr, KF: tl.constexpr, K_FREE: tl.constexpr):
    """A row list of KF slots: K_FREE usable slots at -inf with distinct negative ids, the
    padding slots at +inf (never the worst, so never replaced)."""
    col = tl.arange(0, KF)[None, :] + tl.zeros([R, KF], dtype=tl.int32)
    top_s = tl.where(col < K_FREE, float("-inf"), float("inf"))
    top_i = -1 - col
    return top_s, top_i


@triton.jit
def _order_key(s, i):
    """(score, block id) as one int64 that orders like the selection rule: larger is better
    (higher score, then lower id). The fp32 bits map to an order-preserving int32 (negative
    scores flip their magnitude bits; -0.0 counts as +0.0), the id fills the low 32 bits."""
    s = tl.where(s == 0.0, 0.0, s)
    b = s.to(tl.int32, bitcast=True)
    b = tl.where(b < 0, b ^ 0x7FFFFFFF, b)
    return (b.to(tl.int64) << 32) | (2147483647 - i).to(tl.int64)


_NONE = tl.constexpr(-9223372036854775807 - 1)  # an order key below every real one


@triton.jit
def _bitonic_sort_desc(x, LOG2_N: tl.constexpr):
    """Sorts each bitonic row x[a, b, :] (length 2^LOG2_N) descending: LOG2_N half-cleaner
    steps, each comparing entries d apart within segments of 2d (d = N/2, N/4, ..., 1)."""
    A: tl.constexpr = x.shape[0]
    B: tl.constexpr = x.shape[1]
    N: tl.constexpr = x.shape[2]
    for j in tl.static_range(LOG2_N):  # d = N >> (j + 1); segments of 2d: 1 << j of them
        y = tl.permute(tl.reshape(x, [A, B, 1 << j, 2, N >> (j + 1)]), [0, 1, 2, 4, 3])  # [.., seg, d, 2]
        lo, hi = tl.split(y)
        x = tl.reshape(tl.permute(tl.join(tl.maximum(lo, hi), tl.minimum(lo, hi)), [0, 1, 2, 4, 3]), [A, B, N])
    return x


@triton.jit
def _split_len(n_cand, n_split, FLOOR: tl.constexpr, PIECES: tl.constexpr):
    """Blocks per split of a tile whose candidate range holds ``n_cand`` blocks: an even share
    over ``n_split`` splits, but at least min(FLOOR, n_cand / PIECES), so that a short range
    takes fewer, longer splits (the trailing ones stay empty and the finalize kernel skips
    them). Non-decreasing in n_cand, which the finalize kernel's skip relies on."""
    return tl.maximum((n_cand + n_split - 1) // n_split, tl.minimum(FLOOR, (n_cand + PIECES - 1) // PIECES))


@triton.jit
def _clamped_page(pt_row, b, num_pages):
    """Physical page of block ``b`` from the request's page-table row, clamped into the cache
    (never an address outside it), as int64."""
    page = tl.load(pt_row + b)
    return tl.minimum(tl.maximum(page, 0), num_pages - 1).to(tl.int64)


@triton.jit
def _index_partial_kernel(
    Q, K, K_SCALE, PAGE_TABLE, SEQ_LENS, CU_SEQLENS, TILE_CUM,
    OUT_KEY,
    batch, num_pages, total_q,
    stride_qt, stride_qh,
    stride_kp, stride_kb,
    stride_pt_b,
    n_split,
    HKV: tl.constexpr, HKV_P: tl.constexpr, BLOCK_T: tl.constexpr,
    D: tl.constexpr, D_P: tl.constexpr, BLOCK: tl.constexpr,
    N_INIT: tl.constexpr, N_LOCAL: tl.constexpr, K_FREE: tl.constexpr, KF: tl.constexpr,
    SEARCH_STEPS: tl.constexpr, IEEE: tl.constexpr, FP8: tl.constexpr, Q8: tl.constexpr,
    SPLIT_FLOOR: tl.constexpr = 1, SPLIT_PIECES: tl.constexpr = 1, USE_PDL: tl.constexpr = 0,
    SCALE_AHEAD: tl.constexpr = 0, KEYS_M: tl.constexpr = 0, LAST_FIRST: tl.constexpr = 0,
    SPLIT_MAJOR: tl.constexpr = 0,
):
    pdl_wait(USE_PDL)  # everything below may read what the step's previous kernels wrote
    if SPLIT_MAJOR:  # grid (splits, tiles): a tile's programs side by side, the grid's empty tiles last
        pid = tl.program_id(1)
        i_split = tl.program_id(0)
    else:  # grid (tiles, splits)
        pid = tl.program_id(0)
        i_split = tl.program_id(1)
    n_tiles = tl.load(TILE_CUM + batch)
    if pid >= n_tiles:
        return
    if LAST_FIRST:  # programs take the tiles last to first: a request's later tokens see more
        pid = n_tiles - 1 - pid  # blocks, so the longest scans start first (causal balance)
    # (one vector load of TILE_CUM in place of the search's dependent loads measured no faster
    # at batch 1-64: NOTES.md v15)
    i_b = find_tile_request(TILE_CUM, pid, batch, SEARCH_STEPS)
    q_start = tl.load(CU_SEQLENS + i_b)
    q_len = tl.load(CU_SEQLENS + i_b + 1) - q_start
    seq_len = tl.load(SEQ_LENS + i_b)
    t0 = (pid - tl.load(TILE_CUM + i_b)) * BLOCK_T  # first token of the tile within the request

    R: tl.constexpr = BLOCK_T * HKV_P
    o_r = tl.arange(0, R)
    o_t = t0 + o_r // HKV_P  # token within the request
    o_g = o_r % HKV_P  # group
    m_r = (o_t < q_len) & (o_g < HKV)
    pos = seq_len - q_len + o_t
    p = pos // BLOCK
    last_cand = tl.where(m_r, p - N_LOCAL, -1)  # candidates: N_INIT <= b <= last_cand

    # the tile's candidate range [N_INIT, hi), split evenly (short ranges: fewer splits)
    hi = tl.max(last_cand, axis=0) + 1
    n_cand = tl.maximum(hi - N_INIT, 0)
    per_split = _split_len(n_cand, n_split, SPLIT_FLOOR, SPLIT_PIECES)
    b_lo = N_INIT + i_split * per_split
    b_hi = tl.minimum(b_lo + per_split, hi)
    if b_lo >= b_hi:  # past the tile's range: nothing to read or write (the finalize kernel skips it)
        return

    o_d = tl.arange(0, D_P)
    tok = (q_start + o_t).to(tl.int64)
    p_q = Q + tok[:, None] * stride_qt + o_g[:, None] * stride_qh + o_d[None, :]
    b_q = tl.load(p_q, mask=m_r[:, None] & (o_d[None, :] < D), other=0.0)  # [R, D_P]
    if Q8:  # 8-bit keys: the query row in e4m3 too, scaled by 448 / max|q| (a positive row factor)
        b_q = b_q.to(tl.float32)
        amax = tl.max(tl.abs(b_q), axis=1)
        inv = tl.div_rn(tl.full([R], 448.0, tl.float32), tl.where(amax > 0, amax, 1.0))  # IEEE, as the reference
        b_q = round_e4m3(b_q * tl.where(amax > 0, inv, 0.0)[:, None])
        b_q = b_q.to(K.dtype.element_ty)

    top_s, top_i = _empty_list(R, KF, K_FREE)
    o_j = tl.arange(0, BLOCK)
    pt_row = PAGE_TABLE + i_b.to(tl.int64) * stride_pt_b
    # 8-bit keys, SCALE_AHEAD: the key scales are prefetched by hand one block ahead (their pages
    # two ahead). Triton pipelines only the loads that feed the dot (the keys and their page
    # ids); a scale load in the loop waits a full memory latency every block.
    sc_next = tl.zeros([BLOCK], dtype=tl.float32)
    pg_next = b_lo.to(tl.int64) * 0
    if FP8 and SCALE_AHEAD:
        pg_next = _clamped_page(pt_row, b_lo, num_pages)
        sc_next = tl.load(K_SCALE + pg_next * BLOCK + o_j)
        pg_next = _clamped_page(pt_row, tl.minimum(b_lo + 1, b_hi - 1), num_pages)
    # KEYS_M: the product as keys x queries ([BLOCK, R]: the keys are the tensor-core M side, so
    # a tile of few query rows still fills a Hopper warpgroup MMA read from shared memory), the
    # block maxima a reduction over axis 0; else queries x keys ([R, BLOCK]).
    b_qt = tl.trans(b_q)  # [D_P, R]
    for b in range(b_lo, b_hi):
        page = _clamped_page(pt_row, b, num_pages)
        if KEYS_M:
            p_k = K + page * stride_kp + o_j[:, None] * stride_kb + o_d[None, :]
            b_k = tl.load(p_k, mask=o_d[None, :] < D, other=0.0)  # [BLOCK, D_P]
        else:
            p_k = K + page * stride_kp + o_j[None, :] * stride_kb + o_d[:, None]
            b_k = tl.load(p_k, mask=o_d[:, None] < D, other=0.0)  # [D_P, BLOCK]
        if FP8:  # e4m3 x e4m3 products (or e4m3 keys widened to q's dtype), fp32 sums, each key's scale
            if SCALE_AHEAD:
                b_sc = sc_next
                sc_next = tl.load(K_SCALE + pg_next * BLOCK + o_j)  # block b + 1 (the last block again at the end)
                pg_next = _clamped_page(pt_row, tl.minimum(b + 2, b_hi - 1), num_pages)
            else:
                b_sc = tl.load(K_SCALE + page * BLOCK + o_j)
            if not Q8:
                b_k = b_k.to(Q.dtype.element_ty)
        # m_b [R]: each row's block max-logit (unscaled); fp32 queries without 8-bit keys: IEEE sums
        if KEYS_M:
            if IEEE and not FP8:
                b_s = tl.dot(b_k, b_qt, input_precision="ieee")  # [BLOCK, R]
            else:
                b_s = tl.dot(b_k, b_qt)
            if FP8:
                b_s = b_s * b_sc[:, None]
            m_b = tl.max(b_s, axis=0)
        else:
            if IEEE and not FP8:
                b_s = tl.dot(b_q, b_k, input_precision="ieee")  # [R, BLOCK]
            else:
                b_s = tl.dot(b_q, b_k)
            if FP8:
                b_s = b_s * b_sc[None, :]
            m_b = tl.max(b_s, axis=1)
        top_s, top_i = _topk_insert(top_s, top_i, m_b, b + tl.zeros([R], dtype=tl.int32), b <= last_cand)

    # the list as order keys, best first (unused slots: NONE)
    key = tl.sort(tl.where(top_i >= 0, _order_key(top_s, top_i), _NONE), dim=1, descending=True)
    o_k = tl.arange(0, KF)
    row = (tok * HKV + o_g)[:, None]
    off = (row * n_split + i_split) * KF + o_k[None, :]  # [rows, n_split, KF]: a row's lists side by side
    tl.store(OUT_KEY + off, key, mask=m_r[:, None] & (o_k[None, :] < KF))


@triton.jit
def _rows_used_splits(TOKEN_REQ, SEQ_LENS, CU_SEQLENS, o_r, m_r, n_split,
                      HKV: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK: tl.constexpr, N_INIT: tl.constexpr,
                      N_LOCAL: tl.constexpr, SPLIT_FLOOR: tl.constexpr, SPLIT_PIECES: tl.constexpr):
    """For rows ``o_r`` (token * HKV + group; ``m_r``: real rows) of a call's metadata (written
    before the step's index kernels, so readable before a PDL wait): the query's own block ``p``
    and ``n_used``, the splits whose lists the partial kernel wrote for the row: those holding a
    part of the row's tile's candidate range (the tile: BLOCK_T tokens of the request; its range
    ends at its last token's, and is split by the partial kernel's rule) and ``per_split``, the
    blocks of each of those splits (block b is in split (b - N_INIT) // per_split)."""
    tok = tl.where(m_r, o_r // HKV, 0)
    i_b = tl.load(TOKEN_REQ + tok, mask=m_r, other=0)
    q_start = tl.load(CU_SEQLENS + i_b, mask=m_r, other=0)
    q_len = tl.load(CU_SEQLENS + i_b + 1, mask=m_r, other=0) - q_start
    seq_len = tl.load(SEQ_LENS + i_b, mask=m_r, other=1)
    p = (seq_len - q_len + tok - q_start) // BLOCK
    t_last = tl.minimum((tok - q_start) // BLOCK_T * BLOCK_T + BLOCK_T - 1, q_len - 1)  # the tile's last token
    p_last = (seq_len - q_len + t_last) // BLOCK
    n_tile = tl.where(m_r, tl.maximum(p_last - N_LOCAL - N_INIT + 1, 0), 0)  # the tile's candidate blocks
    per_tile = tl.maximum(_split_len(n_tile, n_split, SPLIT_FLOOR, SPLIT_PIECES), 1)
    n_used = tl.minimum(tl.where(n_tile > 0, (n_tile - 1) // per_tile + 1, 0), n_split)
    return p, n_used, per_tile


@triton.jit
def _merge_all_lists(IN_KEY, rows64, n_used, n_split, NS_C: tl.constexpr, LOG2_NS_C: tl.constexpr, KF: tl.constexpr,
                     LOG2_KF: tl.constexpr):
    """Every list of the rows merged, NS_C splits at a time: [R, 1, KF] keys, descending."""
    R: tl.constexpr = rows64.shape[0]
    o_k = tl.arange(0, KF)
    o_s = tl.arange(0, NS_C)
    n_used_max = tl.max(n_used, axis=0)
    top = tl.full([R, 1, KF], _NONE, dtype=tl.int64)  # best keys so far, descending
    for c0 in range(0, n_used_max, NS_C):
        i_split = c0 + o_s
        off = (rows64[:, None, None] * n_split + i_split[None, :, None]) * KF + o_k[None, None, :]  # [R, NS_C, KF]
        m_c = i_split[None, :, None] < n_used[:, None, None]  # the row's tile's splits only
        x = tl.load(IN_KEY + off, mask=m_c, other=_NONE)
        for _ in tl.static_range(LOG2_NS_C):
            a, b = tl.split(tl.permute(tl.reshape(x, [R, x.shape[1] // 2, 2, KF]), [0, 1, 3, 2]))
            x = _bitonic_sort_desc(tl.maximum(a, tl.flip(b, 2)), LOG2_KF)
        top = _bitonic_sort_desc(tl.maximum(top, tl.flip(x, 2)), LOG2_KF)
    return top


@triton.jit
def _merge_heads_first(IN_KEY, rows64, n_used, per_split, n_split, N_INIT: tl.constexpr, K_FREE: tl.constexpr,
                       KF: tl.constexpr, LOG2_KF: tl.constexpr, NS_H: tl.constexpr):
    """The rows' best K_FREE keys from the lists' heads first (see _merge_select): [R, 1, KF]."""
    R: tl.constexpr = rows64.shape[0]
    o_k = tl.arange(0, KF)
    o_h = tl.arange(0, NS_H)
    heads = tl.load(IN_KEY + (rows64[:, None] * n_split + o_h[None, :]) * KF,
                    mask=o_h[None, :] < n_used[:, None], other=_NONE)  # [R, NS_H]: each list's best key
    heads = tl.reshape(tl.sort(heads, dim=1, descending=True), [R, NS_H // KF, KF])
    o_c = tl.arange(0, NS_H // KF)
    best = tl.max(tl.where(o_c[None, :, None] == 0, heads, _NONE), axis=1)  # [R, KF]: the KF best heads
    blk = 2147483647 - (best & 0xFFFFFFFF).to(tl.int32)
    lst = (blk - N_INIT) // per_split[:, None]  # the split that offered it
    take = (best != _NONE)[:, :, None] & (o_k[None, None, :] < K_FREE - o_k[None, :, None])  # key j of rank r
    off = (rows64[:, None, None] * n_split + lst[:, :, None]) * KF + o_k[None, None, :]  # [R, KF, KF]
    x = tl.load(IN_KEY + off, mask=take, other=_NONE)
    for _ in tl.static_range(LOG2_KF):
        a, b = tl.split(tl.permute(tl.reshape(x, [R, x.shape[1] // 2, 2, KF]), [0, 1, 3, 2]))
        x = _bitonic_sort_desc(tl.maximum(a, tl.flip(b, 2)), LOG2_KF)
    return x


@triton.jit
def _merge_select(IN_KEY, rows64, p, n_used, per_split, n_split,
                  NS_C: tl.constexpr, LOG2_NS_C: tl.constexpr, TOPK: tl.constexpr, TOPK_P: tl.constexpr,
                  N_INIT: tl.constexpr, N_LOCAL: tl.constexpr, K_FREE: tl.constexpr, KF: tl.constexpr,
                  LOG2_KF: tl.constexpr, NS_H: tl.constexpr):
    """The selection of rows ``rows64`` [R] (query block ``p``, ``n_used`` lists of ``per_split``
    blocks each; see _rows_used_splits) from the partial kernel's lists, ``[R, TOPK_P]`` int32:
    ascending block ids, ``-1`` tail, columns from TOPK on undefined. The lists hold int64 order
    keys, each list descending; keys are distinct, as every block id is offered by one split only.

    Full merge (_merge_all_lists): every list, NS_C splits at a time, in a tree of log2(NS_C)
    levels: the KF best of two descending lists a, b are max(a, flip(b)), a bitonic sequence that
    log2(KF) compare-exchange steps sort again; the chunk's best list joins the running one the
    same way. Heads first (_merge_heads_first; NS_H > 0, at least the lists a row can have and
    KF, powers of 2; taken at runtime where the rows' lists exceed one chunk, which the full
    merge would walk chunk after chunk): a list whose best key ranks r among the lists' best keys
    can give the K_FREE best at most its first K_FREE - r keys (the r better heads and its own
    earlier keys all beat its key j, so r + j < K_FREE). So only the lists' first keys are loaded
    and sorted, then the first K_FREE - r keys of the list of rank r (its index from its head's
    block id), and those KF lists are merged in log2(KF) levels.
    The first K_FREE keys are the free picks; the forced init and local blocks are added."""
    R: tl.constexpr = rows64.shape[0]
    o_k = tl.arange(0, KF)
    if NS_H > 0:
        if tl.max(n_used, axis=0) > NS_C:
            top = _merge_heads_first(IN_KEY, rows64, n_used, per_split, n_split, N_INIT, K_FREE, KF, LOG2_KF, NS_H)
        else:
            top = _merge_all_lists(IN_KEY, rows64, n_used, n_split, NS_C, LOG2_NS_C, KF, LOG2_KF)
    else:
        top = _merge_all_lists(IN_KEY, rows64, n_used, n_split, NS_C, LOG2_NS_C, KF, LOG2_KF)
    top = tl.reshape(top, [R, KF])
    top_i = tl.where(top != _NONE, 2147483647 - (top & 0xFFFFFFFF).to(tl.int32), -1)
    used = (o_k[None, :] < K_FREE) & (top_i >= 0)  # [R, KF]
    # rank of every chosen id among the row's chosen ids (ascending)
    rank = tl.sum((top_i[:, None, :] < top_i[:, :, None]) & used[:, None, :], axis=2)  # [R, KF]

    o_o = tl.arange(0, TOPK_P)  # output column
    col = o_o[None, :] + tl.zeros([R, TOPK_P], dtype=tl.int32)
    pick = (rank[:, None, :] == (col - N_INIT)[:, :, None]) & used[:, None, :]  # [R, TOPK_P, KF]
    free_id = tl.sum(tl.where(pick, top_i[:, None, :], 0), axis=2)  # [R, TOPK_P]
    local_id = p[:, None] - (TOPK - 1 - col)
    sparse_row = tl.where(col < N_INIT, col, tl.where(col >= TOPK - N_LOCAL, local_id, free_id))
    dense_row = tl.where(col <= p[:, None], col, -1)  # p + 1 <= TOPK: every block 0..p
    return tl.where((p + 1 <= TOPK)[:, None], dense_row, sparse_row)


@triton.jit
def _index_finalize_kernel(
    IN_KEY, OUT, TOKEN_REQ, SEQ_LENS, CU_SEQLENS,
    total_rows, n_split,
    HKV: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_R: tl.constexpr, NS_C: tl.constexpr, LOG2_NS_C: tl.constexpr, BLOCK: tl.constexpr,
    TOPK: tl.constexpr, TOPK_P: tl.constexpr,
    N_INIT: tl.constexpr, N_LOCAL: tl.constexpr, K_FREE: tl.constexpr, KF: tl.constexpr, LOG2_KF: tl.constexpr,
    SPLIT_FLOOR: tl.constexpr = 1, SPLIT_PIECES: tl.constexpr = 1, USE_PDL: tl.constexpr = 0, NS_H: tl.constexpr = 0,
):
    """BLOCK_R rows (token * HKV + group) per program: the splits' lists merged into the row's
    selection (_merge_select), written as ascending ids with the ``-1`` tail. Exactly the
    splits the partial kernel wrote are read (_rows_used_splits); the others it left unwritten."""
    o_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    m_r = o_r < total_rows
    # the step's metadata was written before the partial kernel ran (PDL: it can be read before
    # the wait, which only the partial lists need)
    p, n_used, per_split = _rows_used_splits(TOKEN_REQ, SEQ_LENS, CU_SEQLENS, o_r, m_r, n_split, HKV, BLOCK_T, BLOCK,
                                             N_INIT, N_LOCAL, SPLIT_FLOOR, SPLIT_PIECES)
    pdl_wait(USE_PDL)
    rows64 = o_r.to(tl.int64)
    out = _merge_select(IN_KEY, rows64, p, n_used, per_split, n_split, NS_C, LOG2_NS_C, TOPK, TOPK_P, N_INIT, N_LOCAL,
                        K_FREE, KF, LOG2_KF, NS_H)
    col = tl.arange(0, TOPK_P)[None, :]
    tl.store(OUT + rows64[:, None] * TOPK + col, out, mask=m_r[:, None] & (col < TOPK))


@dataclass(frozen=True)
class IndexLaunch:
    """Launch shapes of the index branch, from shapes only (so a plan can be reused by a CUDA
    graph): ``block_t`` tokens x ``hkv_p`` groups per tile, ``n_split`` pieces of each tile's
    block range (at runtime a range of n blocks takes splits of at least min(split_floor,
    n / split_pieces) blocks), ``kf`` slots per partial list; the finalize kernel merges
    ``ns_c`` splits at a time for ``block_r`` rows per program; ``scale_ahead``: 8-bit keys, the
    partial kernel prefetches each block's key scales one block ahead (decode and MTP tiles);
    ``keys_m``: it computes a block's scores as keys x queries (see ``_KEYS_M_MAX_ROWS``);
    ``gluon``: the launch shapes are the heuristics' (no override), so launch_index may take the
    warp-specialized Gluon scan (index_ws) where it supports the call (``_INDEX_WS``)."""

    block_t: int
    hkv_p: int
    n_split: int
    kf: int
    num_warps: int | None
    num_stages: int | None
    block_r: int
    ns_c: int
    split_floor: int = 1
    split_pieces: int = 1
    scale_ahead: bool = False
    keys_m: bool = False
    gluon: bool = False

    def merge_constexprs(self, config) -> dict:
        """The constexprs of the list merge (``_rows_used_splits`` + ``_merge_select``) for this
        launch: the finalize kernel and the slot kernel's SELECT mode take the same ones."""
        return dict(BLOCK_T=self.block_t, NS_C=self.ns_c, LOG2_NS_C=self.ns_c.bit_length() - 1,
                    TOPK_P=triton.next_power_of_2(config.topk), N_INIT=config.num_init_blocks,
                    N_LOCAL=config.num_local_blocks,
                    K_FREE=config.topk - config.num_init_blocks - config.num_local_blocks, KF=self.kf,
                    LOG2_KF=self.kf.bit_length() - 1, SPLIT_FLOOR=self.split_floor, SPLIT_PIECES=self.split_pieces,
                    NS_H=max(triton.next_power_of_2(self.n_split), self.kf) if self.heads_merge() else 0)

    def heads_merge(self) -> bool:
        """Whether the list merge may take the lists' best keys first (see _HEADS_MERGE)."""
        return bool(_HEADS_MERGE) and self.n_split > self.ns_c

    def workspace(self, total_q: int, hkv: int, device) -> torch.Tensor:
        """The partial lists as int64 order keys, ``[total_q * hkv, n_split, kf]``."""
        return torch.empty(total_q * hkv, self.n_split, self.kf, dtype=torch.int64, device=device)


# Most splits of one tile's block range (each split walks at least _MIN_BLOCKS_PER_SPLIT blocks
# of the page table's width), with keys in q's dtype and with 8-bit keys. Fewer lists make the
# finalize merge shorter; more splits keep more of a batch-1 scan in flight. H100, 1 x 1M: bf16
# keys 105.6 us a step at 128 against 107.9 at 256 (32K / 128K / batch >= 8 within 0.5 us), 8-bit
# keys 90.0 at 128 against 71.1 (benchmarks/NOTES.md v12).
_MAX_SPLIT = 128
_MAX_SPLIT_FP8 = 256
# bf16 / fp16 keys, decode tiles (under 128 rows) of at least _MTP_MIN_ROWS rows (any 32-64-row
# tile: 5-16 query tokens a request at Hkv 4, one token at Hkv 32) on page tables past
# _MTP_WIDE_PAGES blocks: the cap (such a tile does
# 2x+ the arithmetic of a one-token tile a key block). 256 measured against 128, H200, M3 shapes,
# step us back to back / behind the matmul lead (benchmarks/NOTES.md v32a): 1 x 1M q 8 95.0 / 104.2
# against 99.6 / 126.4, but q 16 108.4 / 120.0 against 102.7 / 113.9 and SGLang's 1M-wide tables at
# 1 x 128K / 32K q 8 3% slower (256 splits planned, 128 / 64 used): not shipped, 128 = _MAX_SPLIT.
_MAX_SPLIT_MTP = 128
_MTP_MIN_ROWS = 32
_MTP_WIDE_PAGES = 1024
# 8-bit keys with page tables of at most _FP8_NARROW_PAGES blocks take the _MAX_SPLIT cap: their
# scan is short, so the finalize merge's lists weigh more. H100, 8-bit keys, 1 x 128K, cap 128 /
# 256: q = 1 21.8 / 21.9 us, q = 2 26.9 / 28.4, q = 4 32.2 / 34.4, q = 8 44.7 / 47.7; 1 x 32K q = 8
# 36.2 / 36.9; but 1 x 1M q = 1 71.9 / 64.1 and q = 8 119.8 / 107.4 (benchmarks/NOTES.md v15).
_FP8_NARROW_PAGES = 1024
_MIN_BLOCKS_PER_SPLIT = 1
# At runtime a tile's range of n candidate blocks takes splits of at least min(_SPLIT_FLOOR,
# n / _SPLIT_PIECES) blocks: with the launch sized for the page table's width (SGLang's: the
# longest context), a 32K request walks 64 splits of 4 blocks, 128K 128 of 8, 1M 256 of 32
# (batch 1, H100: 22, 33 and 111 us a step, against 26, 34, 111 for splits as short as the
# width allows - the finalize merge grows with the lists, the scan needs 2 programs per SM;
# benchmarks/NOTES.md v8).
_SPLIT_FLOOR = 8
_SPLIT_PIECES = 64
# Programs per SM the splits aim at (tiles x splits ~ this x SMs, rounding up), with bf16/fp16 and
# 8-bit keys.
_SPLIT_PROGRAMS_PER_SM = 2
_SPLIT_PROGRAMS_PER_SM_FP8 = 3
# 8-bit keys, one-token decode tiles (16 rows), calls of at least _FP8_ONE_WAVE_MIN_TILES tiles:
# splits for one whole wave instead - as many programs as the SMs hold at once (a decode program
# takes 37-52 KB of shared memory and 4 warps: 4 an SM), rounding down, since a few programs past
# the resident slots run as a second wave alone. H200, M3 shapes, step us, old rule / one wave
# (benchmarks/NOTES.md v29g-i): 8 x 1M 315.7 / 286.6, 8 x 128K 66.0 / 62.5, 16 x 128K 113.9 /
# 107.5, 64 x 128K 355.2 / 346.6, 64 x 32K 154.0 / 151.7, 8 x 32K 37.4 / 38.0. Fewer tiles would
# need 128-256 splits a tile to fill the wave, and the longer list merge costs more than the wave
# gains (4 x 1M 149.5 / 152.6, 2 x 1M 82.7 / 87.8): they keep the old rule. 0: never.
_FP8_WAVE_PROGRAMS_PER_SM = 4
_FP8_ONE_WAVE_MIN_TILES = 8
# The same for bf16 / fp16 keys (~70 KB a program at 6 stages: 3 an SM, kept at 6 stages when it
# applies). NOT measured (benchmarks/NOTES.md v29k: decode_ab.py bf16wave): off.
_BF16_WAVE_PROGRAMS_PER_SM = 3
_BF16_ONE_WAVE_MIN_TILES = 0
# Candidates (splits x KF) the finalize kernel merges per row at a time (H100, batch 1: 2048 is
# 1.8-3.6 us faster than 1024 at 128K-1M, 4096 slower at 32K-128K; benchmarks/NOTES.md v9). Chunks
# sized to the lists a row can use at the plan's width, with the next chunk's load issued ahead,
# were tried with the merge in the slot kernel: within 1 us with narrow page tables, 1.1-1.7 us
# slower at 32K-128K with 1M-wide ones (SGLang's); not kept (NOTES.md v14).
_CHUNK_CANDIDATES = 2048
# The list merge may take the lists' best keys first (see _merge_select, NS_H: it sorts the
# n_split heads and merges only the KF lists those can come from). Same selections; H100, M3
# shapes, step us full / heads first for every row (the code of 004a1ed): 8-bit keys 1 x 1M (256
# lists, two merge chunks) 64.3 / 63.3; 128 lists or fewer: bf16 keys 1 x 32K 17.6 / 18.3, 1 x 128K
# 25.8 / 26.3, 1 x 1M 103.3 / 103.7 (sorting the heads and merging 16 lists take as many
# compare-exchange steps as the full tree, whose cost is per step, not per key; benchmarks/NOTES.md
# v16b). True: plans with more lists than one chunk compile both merges and each program takes
# heads first only if its rows' lists exceed one chunk (the kernel decides: the plan sees the page
# table's width, not the lengths, and SGLang's tables are 1M wide). That two-path kernel, H100,
# 8-bit keys, step us full / two-path (NOTES.md v17): narrow tables 1 x 128K 21.4 / 21.4, MTP q = 8
# 41.9 / 42.0, 1 x 1M 64.5 / 63.2; 1M-wide tables 1 x 32K 17.0 / 17.1, 1 x 128K 21.9 / 22.0, 1 x 1M
# 64.4 / 63.0; selections and outputs bitwise equal. On; False: the full merge only. (A merge by
# counting - every pair of heads, then of candidates, compared - was 5-6 us slower a step with
# 128 lists, 15-26 us with 256: NOTES.md v17b.)
_HEADS_MERGE = True
# 8-bit keys: round the index queries to e4m3 too (fp8 tensor cores; what msa_sgl.reference
# scores). False (benchmarks only, for now): widen the keys to q's dtype, q unrounded.
FP8_QUERY = True
# Triton num_stages of the partial kernel for tiles under 128 rows (decode, MTP). With Triton's
# default (3) the block loop prefetches the next block's page id but not its keys (the key load
# waits on the page id, and the pipeliner gives each of the two loads its own stages); 5-6 buffer
# one key block ahead, 8 two. 8-bit keys take 6 always; bf16/fp16 keys take 6 where the launch
# puts at most _STAGED_PROGRAMS_PER_SM programs on an SM (~70 KB of buffers a program: 3 fit),
# Triton's default beyond (there the resident programs hide the latency). None: Triton's default
# everywhere.
_SHORT_TILE_STAGES = 6
# H200, M3 shapes, bf16 keys, step us default stages / 6, back to back and behind the suite's
# matmul lead, variant order rotated, with an A/A pair (benchmarks/NOTES.md v31g): 64 x 128K
# 575.1 / 581.5 and 660.3 / 616.3 (A/A 612.1); 32 x 128K 317.3 / 312.0 and 353.1 / 329.9; 16 x 128K
# 170.7 / 168.2 and 192.9 / 182.8; 300 x 8K (one split each) 461.1 / 461.8 and 500.9 / 481.2 (A/A
# 489.9). The key block in flight pays at the clocks of a card under sustained load (~1.53-1.62
# GHz, v30h) and is within -1.7..+1.1% back to back (v31a measured up to +3.3% there, and v9 +5.1%
# on the H100 at 64 x 128K; not re-measured on the H100): shipped for the loaded card, a serving
# engine's state. The rule counts programs, not requests: on 132 SMs with 1024+ blocks a table,
# one-token batches 5, 7, 9-10, 13-21, 23, 25-32, 34-43, 45-65, 67-87, 89-131, 133-198 and 265-396
# now take 6 stages (their tiles x splits land between 2 and 3 programs an SM); 199-264 and 397+
# keep Triton's default. 0: only up to _SPLIT_PROGRAMS_PER_SM (the rule before v31).
_STAGED_PROGRAMS_PER_SM = 3
# num_warps of the partial kernel for tiles under 128 rows (decode, MTP).
_SHORT_TILE_WARPS = 4
# num_stages of 128-row tiles (prefill) with 8-bit keys (bf16/fp16 keys: Triton's default).
_FP8_TILE_STAGES = 5
# 8-bit keys: tiles of at most this many rows (decode, MTP) prefetch their key scales a block
# ahead (see the partial kernel). H100: decode steps 1-2.6% faster (1 x 1M 71.0 -> 68.9 us, 8 x 1M
# 416.9 -> 406.0), but 128-row prefill tiles 8-9% slower (16K chunk after 112K: 732 -> 677 TF/s),
# so those keep the load in the loop (benchmarks/NOTES.md v12). 0: never.
_SCALE_AHEAD_MAX_ROWS = 64
# Block scores as keys x queries (KEYS_M) for tiles of at most this many rows (bf16 / 8-bit keys)
# whose splits walk at most _KEYS_M_MAX_SPLIT_BLOCKS blocks (at the plan's page-table width).
# Compiled for sm_90 (Triton 3.6) a 16- or 32-row decode tile then takes fp8 warpgroup MMAs read
# from shared memory (wgmma m64n16k32 e4m3) instead of f16 mma.sync on keys converted in
# registers: ~380 SASS instructions a block against ~430 (benchmarks/sass_loop.py). H100, M3
# shapes, 8-bit keys (benchmarks/NOTES.md v14): steps 1.5-2.5 us faster at batch 1-4 (1 x 1M 68.1
# -> 65.6 us), 5 us at 8 query tokens; slower with long splits (8 x 1M, 164 blocks a split, +8 us;
# 64 x 128K, 146 blocks, +35 us), with many requests (64 x 32K, +27 us; not understood) and with
# 64-row tiles (which take warpgroup MMAs either way: q = 16, +15 us). bf16 keys: 1.4-2.2 us slower
# at batch 1 (~420 instructions against ~270), 7% at 8 x 128K with 8 query tokens: off.
_KEYS_M_MAX_ROWS = 0
_KEYS_M_MAX_ROWS_FP8 = 32
_KEYS_M_MAX_SPLIT_BLOCKS = 128
_KEYS_M_MAX_BATCH = 8  # and calls of at most this many requests (64 x 32K, 37 blocks a split: +27 us)
# Prefill tiles (128 rows) scanned last tile first: the longest candidate ranges of a causal
# chunk start first instead of last. H100, M3 shapes, one 16K chunk, lower median of four rounds,
# in order / last first, ms: bf16 keys P = 16K 0.827 / 0.781, 32K 1.304 / 1.259, 112K 3.768 /
# 3.559; 8-bit keys P = 0 0.331 / 0.296, 16K 0.686 / 0.624, 32K 1.049 / 0.982, 112K a tie (bf16
# keys at P = 0: 0.31-0.46 ms either way, run to run; benchmarks/NOTES.md v15b).
_LAST_FIRST = True
# The prefill tiles' partial lists by the warp-specialized Gluon scan (index_ws: a TMA producer,
# two consumers with two 64-row products in flight) where it supports the call: a plan that took
# its tiles (plan_index with dtype and index_dim: index_ws.plan_supported, bf16 / fp16 keys, index
# dim = block = 128, KF = 16, on Hopper; 128- or 256-row tiles, index_ws.tile_rows) and a launch it
# takes (index_ws.index_ws_supported: layout, alignment, no PDL). The same lists as the Triton
# kernel's on the same tiles, bit for bit (benchmarks/NOTES.md v27b-d). False: the Triton kernel
# always, on its 128-row tiles.
_INDEX_WS = True
# The partial kernel's grid as (splits, tiles) instead of (tiles, splits) for decode and MTP tiles
# where the grid may hold tiles without tokens (requests of several tokens: tile_grid's bound can
# exceed the real count, e.g. in batches of mixed lengths). Programs start in about the order of
# their linear id, the first axis fastest (inferred from timings, not traced): with tiles first, a
# grid of 2 tiles for one MTP request (tile_grid's bound before v32) put its 128 real programs on
# alternate ids, and the bf16 step was 5-18% slower than with its 1 tile (benchmarks/NOTES.md v32a).
# Splits first keep a tile's programs adjacent and the empty tiles' last. One-token batches and
# one request (grid = batch under the tight bound) keep (tiles, splits). Against tiles first, both
# on the tight bound (H200, M3 shapes, step us back to back / behind the matmul lead, v32b): bf16
# keys 2 x 1M q 8 177.7 / 228.8 -> 179.5 / 226.9, 2 x 128K q 8 61.0 / 72.8 -> 60.0 / 70.8, 8 x 128K
# q 2 105.7 / 122.6 -> 104.5 / 112.2, 4 x 128K q 8 and 8 x 128K q 8 within 0.7%; 8-bit keys 4 x 128K
# q 8 95.7 / 112.3 -> 90.7 / 111.5, 8 x 128K q 8 145.7 / 199.8 -> 148.4 / 179.7: -5% to +2% back to
# back (behind the lead, identical launches differed by up to 8% in that run). v32's gain is the
# tight bound's (metadata.TIGHT_TILE_GRID); this order keeps a looser count harmless. False: tiles
# first always.
_SPLIT_MAJOR = True
# Tests only: force the number of splits (None: the heuristic), to exercise multi-chunk merges.
_FORCE_N_SPLIT = None


def plan_index(total_q, batch, max_pages, hkv, config, device, *, fp8=False, block_t=None, n_split=None,
               num_warps=None, num_stages=None, dtype=None, index_dim=None) -> IndexLaunch:
    """The launch shapes for a call of these sizes (``fp8``: 8-bit index keys); the keyword
    options override the heuristics. ``dtype`` and ``index_dim`` (the index queries' dtype and
    head dim) let the plan take the Gluon scan's tiles (index_ws.plan_supported) and mark it as
    one launch_index may give that scan (``gluon``); without them (the decode wrapper) neither."""
    hkv_p = triton.next_power_of_2(hkv)
    k_free = config.topk - config.num_init_blocks - config.num_local_blocks
    kf = max(1, triton.next_power_of_2(k_free))
    gluon = (block_t is None and num_warps is None and num_stages is None and _INDEX_WS
             and index_ws.plan_supported(torch.device(device), fp8, dtype, index_dim, config.block_size, kf))
    if block_t is None:  # rows = tokens x groups; at least 16 rows for the tensor cores
        # 128 rows, 8 warps: 562 TF/s at M3 shapes, 16K chunk after 112K (H200, 2026-11-26),
        # against 390 for 64 rows / 4 warps and 456 for 256 rows (benchmarks/NOTES.md). Short
        # calls (decode, MTP) take one tile of all of a request's tokens when they fit in 128 rows,
        # so every index key is read once per request. 8-bit keys: 128 rows on 4 warps, 5 stages
        # (H100, same chunk: 735 TF/s against 408 with 8 warps / 3 stages; NOTES.md v10).
        rows = _tile_rows(triton.cdiv(max(total_q, 1), max(batch, 1)), hkv_p)
        if rows == 128 and gluon:  # the Gluon scan's tiles
            rows = index_ws.tile_rows(max_pages)
        block_t = max(1, rows // hkv_p)
        if num_warps is None:
            num_warps = (8 if not fp8 else 4) if rows >= 128 else _SHORT_TILE_WARPS
        if num_stages is None and rows >= 128 and fp8:
            num_stages = _FP8_TILE_STAGES
    grid_tiles = tile_grid(total_q, batch, block_t)
    programs = _programs(device, fp8)
    if n_split is None:
        n_split = _FORCE_N_SPLIT
    wave = 0  # one-token decode tiles: the resident programs one wave holds, where they aim at it
    if n_split is None:  # enough programs to fill the chip, bounded by the blocks to walk
        want = triton.cdiv(programs, max(1, grid_tiles))
        min_tiles, per_sm = _wave_rule(fp8)
        if block_t * hkv_p <= 16 and 0 < min_tiles <= grid_tiles:
            wave = per_sm * num_sms(device)
            want = max(1, wave // grid_tiles)
        n_split = max(1, min(want, triton.cdiv(max_pages, _MIN_BLOCKS_PER_SPLIT),
                             _max_split(fp8, max_pages, block_t * hkv_p)))
    staged = max(programs, wave, _STAGED_PROGRAMS_PER_SM * num_sms(device))
    if num_stages is None and block_t * hkv_p < 128 and (fp8 or grid_tiles * n_split <= staged):
        num_stages = _SHORT_TILE_STAGES
    ns_c = min(triton.next_power_of_2(n_split), max(1, _CHUNK_CANDIDATES // kf))
    block_r = max(1, min(32, 2048 // (ns_c * kf)))
    return IndexLaunch(block_t, hkv_p, n_split, kf, num_warps, num_stages, block_r, ns_c, _SPLIT_FLOOR,
                       _SPLIT_PIECES, fp8 and block_t * hkv_p <= _SCALE_AHEAD_MAX_ROWS,
                       block_t * hkv_p <= (_KEYS_M_MAX_ROWS_FP8 if fp8 else _KEYS_M_MAX_ROWS)
                       and triton.cdiv(max_pages, n_split) <= _KEYS_M_MAX_SPLIT_BLOCKS
                       and batch <= _KEYS_M_MAX_BATCH, gluon)


def _tile_rows(per_req, hkv_p):
    """Rows of plan_index's Triton tiles for calls of ``per_req`` query tokens a request (on
    average): one tile of all of a request's tokens x groups, at least 16 (the tensor cores), or
    128 (prefill; the Gluon scan may take 256 instead)."""
    return 128 if per_req * hkv_p >= 128 else max(16, triton.next_power_of_2(per_req) * hkv_p)


def _max_split(fp8, max_pages, rows):
    """The most splits a tile of ``rows`` rows takes (the caps above)."""
    if fp8:
        return _MAX_SPLIT_FP8 if max_pages > _FP8_NARROW_PAGES else _MAX_SPLIT
    return _MAX_SPLIT_MTP if _MTP_MIN_ROWS <= rows < 128 and max_pages > _MTP_WIDE_PAGES else _MAX_SPLIT


def _wave_rule(fp8):
    """(least tiles, programs an SM) of the one-wave split rule for these keys (0 tiles: off)."""
    if fp8:
        return _FP8_ONE_WAVE_MIN_TILES, _FP8_WAVE_PROGRAMS_PER_SM
    return _BF16_ONE_WAVE_MIN_TILES, _BF16_WAVE_PROGRAMS_PER_SM


def _programs(device, fp8):
    """Programs the index partial kernel's splits aim at."""
    return (_SPLIT_PROGRAMS_PER_SM_FP8 if fp8 else _SPLIT_PROGRAMS_PER_SM) * num_sms(device)


def workspace_bound(max_batch, max_q_len, max_pages, hkv, config, device, fp8=False) -> int:
    """Elements (int64) of the partial lists that any call of at most ``max_batch`` requests
    and ``max_batch * max_q_len`` query rows can ask plan_index for: an upper bound of
    ``total_q * hkv * n_split * kf`` over every (batch, total_q), in O(max_batch).

    With ``b`` requests and ``t`` rows plan_index launches ``tile_grid(t, b, .)`` tiles: ``t``
    when t < b, at least ``b`` otherwise; its splits are cdiv(P, tiles) for P programs, capped.
    So t * n_split <= P + t when t < b, and <= t * min(cap, cdiv(P, b)) otherwise."""
    k_free = config.topk - config.num_init_blocks - config.num_local_blocks
    kf = max(1, triton.next_power_of_2(k_free))
    programs = _programs(device, fp8)
    min_tiles, per_sm = _wave_rule(fp8)
    if min_tiles > 0:  # (plan_index's one-wave splits: floor(wave / tiles) <= cdiv(wave, b))
        programs = max(programs, per_sm * num_sms(device))
    # (the largest cap a tile of these calls can take: 16 rows up to those of max_q_len tokens)
    most_rows = _tile_rows(max(1, max_q_len), triton.next_power_of_2(hkv))
    cap = min(triton.cdiv(max_pages, _MIN_BLOCKS_PER_SPLIT),
              max(_max_split(fp8, max_pages, r) for r in (16, _MTP_MIN_ROWS, most_rows) if r <= most_rows))
    rows = 0
    for b in range(1, max_batch + 1):
        if _FORCE_N_SPLIT is not None:
            rows = max(rows, b * max_q_len * _FORCE_N_SPLIT)
        else:
            rows = max(rows, programs + b, b * max_q_len * max(1, min(cap, triton.cdiv(programs, b))))
    return rows * hkv * kf


def launch_index(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, plan: IndexLaunch,
                 tile_cum, grid_tiles, token_req, part_keys, out, k_idx_scale=None, pdl=False, finalize=True):
    """Both index kernels into preallocated buffers: no allocation, no synchronisation.
    ``k_idx_scale`` (float32 ``[num_pages, block_size]``) with fp8 ``k_idx_cache``: 8-bit keys.
    ``pdl``: programmatic dependent launch (metadata.pdl_enabled): 0/False off, 1/True the next
    kernel launches once every program passed its wait, 2 when this one exits. ``finalize``
    False: the partial kernel only (``part_keys`` filled, ``out`` untouched); the caller merges
    the lists (main_branch.launch_split's ``select``)."""
    fp8 = k_idx_scale is not None
    total_q, hkv, _ = q_idx.shape
    k_free = config.topk - config.num_init_blocks - config.num_local_blocks
    if total_q == 0:
        return out
    pdl_key = "index_partial" if finalize else ("index_partial_fused_fp8" if fp8 else "index_partial_fused")
    last_first = plan.block_t * plan.hkv_p >= 128 and _LAST_FIRST
    if (_INDEX_WS and plan.gluon and index_ws.index_ws_supported(q_idx, k_idx_cache, plan.block_t * plan.hkv_p,
                                                                  plan.kf, fp8, pdl_mode(pdl, pdl_key))):
        index_ws.launch_index_ws(
            q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, tile_cum, grid_tiles, part_keys,
            hkv_p=plan.hkv_p, block_t=plan.block_t, n_split=plan.n_split, block=config.block_size,
            n_init=config.num_init_blocks, n_local=config.num_local_blocks, k_free=k_free, kf=plan.kf,
            split_floor=plan.split_floor, split_pieces=plan.split_pieces, last_first=last_first)
    else:
        _launch_partial(q_idx, k_idx_cache, k_idx_scale, page_table, cu_seqlens_q, seq_lens_k, config, plan, tile_cum,
                        grid_tiles, part_keys, pdl, pdl_key, last_first, k_free)
    if not finalize:
        return out
    rows = total_q * hkv
    _index_finalize_kernel[(triton.cdiv(rows, plan.block_r),)](
        part_keys, out, token_req, seq_lens_k, cu_seqlens_q,
        rows, plan.n_split,
        HKV=hkv, BLOCK_R=plan.block_r, BLOCK=config.block_size, TOPK=config.topk, **plan.merge_constexprs(config),
        USE_PDL=pdl_mode(pdl, "index_finalize"),
        **launch_options(None, None, pdl_mode(pdl, "index_finalize") > 0),
    )
    return out


def _launch_partial(q_idx, k_idx_cache, k_idx_scale, page_table, cu_seqlens_q, seq_lens_k, config, plan, tile_cum,
                    grid_tiles, part_keys, pdl, pdl_key, last_first, k_free):
    """The Triton partial kernel of launch_index."""
    fp8 = k_idx_scale is not None
    total_q, hkv, d = q_idx.shape
    batch = page_table.shape[0]
    split_major = split_major_grid(plan, grid_tiles, batch)
    _index_partial_kernel[(plan.n_split, grid_tiles) if split_major else (grid_tiles, plan.n_split)](
        q_idx, k_idx_cache, k_idx_scale if fp8 else k_idx_cache, page_table, seq_lens_k, cu_seqlens_q, tile_cum,
        part_keys,
        batch, k_idx_cache.shape[0], total_q,
        q_idx.stride(0), q_idx.stride(1),
        k_idx_cache.stride(0), k_idx_cache.stride(1),
        page_table.stride(0),
        plan.n_split,
        HKV=hkv, HKV_P=plan.hkv_p, BLOCK_T=plan.block_t, D=d, D_P=max(32 if fp8 else 16, triton.next_power_of_2(d)),
        BLOCK=config.block_size, N_INIT=config.num_init_blocks, N_LOCAL=config.num_local_blocks, K_FREE=k_free,
        KF=plan.kf, SEARCH_STEPS=max(1, batch.bit_length()), IEEE=q_idx.dtype == torch.float32, FP8=fp8,
        Q8=fp8 and FP8_QUERY, SPLIT_FLOOR=plan.split_floor, SPLIT_PIECES=plan.split_pieces,
        USE_PDL=pdl_mode(pdl, pdl_key), SCALE_AHEAD=int(plan.scale_ahead), KEYS_M=int(plan.keys_m),
        LAST_FIRST=int(last_first), SPLIT_MAJOR=int(split_major),
        **launch_options(plan.num_warps, plan.num_stages, pdl_mode(pdl, pdl_key) > 0),
    )


def split_major_grid(plan, grid_tiles, batch) -> bool:
    """Whether the partial kernel's grid puts the splits on its first axis (see _SPLIT_MAJOR):
    decode and MTP tiles whose grid may hold tiles without tokens (more than one a request)."""
    return bool(_SPLIT_MAJOR) and plan.block_t * plan.hkv_p < 128 and batch < grid_tiles <= 65535


def index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, *, k_idx_scale=None, block_t=None,
               n_split=None, num_warps=None, num_stages=None, with_token_req=False):
    """Kernel behind msa_sgl.index_topk (arguments already validated). Returns int32
    ``[total_q, Hkv, topk]``, and with ``with_token_req`` also metadata.token_requests of the
    call (built with the tile map in one launch; msa_attention hands it to the main branch).
    The keyword options override the launch heuristics (benchmarks)."""
    total_q, hkv, _ = q_idx.shape
    batch, max_pages = page_table.shape
    out = torch.empty(total_q, hkv, config.topk, dtype=torch.int32, device=q_idx.device)
    if total_q == 0:
        return (out, torch.empty(0, dtype=torch.int32, device=q_idx.device)) if with_token_req else out
    plan = plan_index(total_q, batch, max_pages, hkv, config, q_idx.device, fp8=k_idx_scale is not None,
                      block_t=block_t, n_split=n_split, num_warps=num_warps, num_stages=num_stages,
                      dtype=q_idx.dtype, index_dim=q_idx.shape[-1])
    tiles, token_req = call_rows(cu_seqlens_q, total_q, plan.block_t)
    launch_index(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, plan, tiles.tile_cum,
                 tiles.grid_tiles, token_req, plan.workspace(total_q, hkv, q_idx.device), out, k_idx_scale)
    return (out, token_req) if with_token_req else out
