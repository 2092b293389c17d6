"""Main branch: exact softmax attention over each (token, group)'s selected blocks, in Triton.

Three forms and the dense rows, same results (up to rounding), chosen by :func:`sparse_attention`:

* **query-outer** (``_sparse_attn_fwd_kernel``): one program per (query token, KV group) holds
  the group's G query heads as the rows of one tile (padded to 16), walks the token's top-k
  slots, loads each selected K/V block for all G heads, and runs an online softmax in base 2
  (scale and log2(e) folded into one multiplier). One launch and no workspace: the form for
  short chunks (too many queries for the split form, too few for KV-outer).
* **split** (``_slot_partial_kernel`` + ``_merge_heads_kernel``): one program per (query
  token, group, slot) attends one block and writes a partial output with its LSE; one program
  per (query, head) merges the slots. Many small programs: the form for decode and MTP, where
  query-outer leaves the GPU nearly empty. Where several of them share an SM, each walks its
  block in pipelined sub-blocks (``slot_sub``).
* **KV-outer** (the MSA paper's form; ``_kv_outer_partial_kernel`` + ``_merge_slots_kernel``):
  a device-built reverse index (``metadata.build_block_tiles``) lists, for each (group,
  request, block), the (query, slot) entries that chose it; one program loads that K/V block
  once and runs it against a packed tile of up to ``128 / G`` of those queries x G heads (one
  128-row tensor-core tile), writing one partial output and base-2 LSE per (query, slot, head).
  A second pass merges the slots of each (query, group) by log-sum-exp in slot order:
  deterministic, no atomics. Hot blocks (the local block, early blocks) are simply cut into
  more tiles, so the grid stays balanced. On Hopper at M3's shapes the partial outputs come from
  ``kv_outer_ws`` instead: the same tiles in a persistent, warp-specialized Gluon kernel (TMA
  producer, two warpgroup-MMA consumers), same partials up to rounding (``_KV_WS``).

* **dense rows** (``_dense_rows_kernel``, ``msa_attention`` only): a query whose own block is
  below topk selects every block up to it (the contract), so its output is dense causal
  attention: one program per tile of consecutive queries x G heads walks keys 0..pos through the
  page table with an online softmax. With the KV-outer form those rows leave its tiles and
  merge; a call whose page table is at most topk blocks wide is this kernel alone.

Common rules: only the query's own block can hold keys past the query, so only it is masked; a
slot with a negative id or an id past the query's own block attends nothing; an id listed twice
counts twice, as in the reference. Output in q's dtype and natural-log LSE; a row that attends
nothing gets 0 and -inf.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import kv_outer_ws
from .index_branch import _clamped_page, _merge_select, _rows_used_splits
from .metadata import build_block_tiles, launch_options, num_sms, pdl_mode, pdl_wait, token_requests

_LOG2E = 1.4426950408889634


@triton.jit
def _attend_tile(b_q, b_k, p_v, m_v, m_s, qk_scale, b_m, b_l, b_acc, IEEE: tl.constexpr,
                 MAY_BE_EMPTY: tl.constexpr = False):
    """One tile of keys into a running softmax (base 2, scores scaled by ``qk_scale``): queries
    b_q [G_P, D_P], keys b_k [D_P, N], the values' pointers p_v [N, D_P] and mask m_v (loaded
    after QK^T), m_s the visible (query, key) pairs ([1, N] or [G_P, N]); the running max b_m
    [G_P], sum b_l [G_P] and unnormalised output b_acc [G_P, D_P], returned updated. b_m must be
    finite after the update (a visible key in this tile or an earlier one), unless MAY_BE_EMPTY:
    then a row that has seen no visible key keeps b_m = -inf, b_l = 0 and b_acc = 0."""
    if IEEE:
        b_s = tl.dot(b_q, b_k, input_precision="ieee")
    else:
        b_s = tl.dot(b_q, b_k)  # [G_P, N] fp32
    b_s = tl.where(m_s, b_s * qk_scale, float("-inf"))
    m_new = tl.maximum(b_m, tl.max(b_s, axis=1))
    m_sub = m_new
    if MAY_BE_EMPTY:  # -inf - -inf is NaN: subtract 0 instead (every term is then exp2(-inf) = 0)
        m_sub = tl.where(m_new > float("-inf"), m_new, 0.0)
    alpha = tl.exp2(b_m - m_sub)
    b_p = tl.exp2(b_s - m_sub[:, None])
    b_l = b_l * alpha + tl.sum(b_p, axis=1)
    b_v = tl.load(p_v, mask=m_v, other=0.0)  # [N, D_P]
    if IEEE:
        b_acc = b_acc * alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v, input_precision="ieee")
    else:
        b_acc = b_acc * alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v)
    return m_new, b_l, b_acc


@triton.jit
def _sparse_attn_fwd_kernel(
    Q, K, V, TOPK_IDX, PAGE_TABLE, SEQ_LENS, CU_SEQLENS, TOKEN_REQ,
    OUT, LSE,
    num_pages, qk_scale,
    stride_qt, stride_qh,
    stride_kp, stride_kb, stride_kh,
    stride_vp, stride_vb, stride_vh,
    stride_it, stride_ih,
    stride_pt_b,
    stride_ot, stride_oh,
    G: tl.constexpr, G_P: tl.constexpr, D: tl.constexpr, D_P: tl.constexpr,
    BLOCK: tl.constexpr, TOPK: tl.constexpr, IEEE: tl.constexpr, USE_PDL: tl.constexpr = 0,
    SUB: tl.constexpr = 0,
):
    """Query-outer form: one program per (query token, group) with the group's G heads as rows.
    SUB > 0 (see _Q_OUTER_SUB): the top-k blocks are walked as one loop of TOPK x BLOCK / SUB
    sub-blocks of SUB keys, with no branch on the slot (a slot that attends nothing, and keys
    past the query, are masked loads that read nothing), which Triton pipelines: the K / V of
    the next sub-blocks, their page ids and slot ids are in flight while one is computed. SUB = 0:
    a branch per slot around whole-block loads, which leaves every block two memory latencies
    (K, then V) that no other load overlaps."""
    pdl_wait(USE_PDL)  # the selection is the previous kernel's
    i_t = tl.program_id(0)  # query token (packed row)
    i_g = tl.program_id(1)  # KV group
    i_b = tl.load(TOKEN_REQ + i_t)
    q_start = tl.load(CU_SEQLENS + i_b)
    q_len = tl.load(CU_SEQLENS + i_b + 1) - q_start
    seq_len = tl.load(SEQ_LENS + i_b)
    pos = seq_len - q_len + (i_t - q_start)
    p = pos // BLOCK

    o_h = tl.arange(0, G_P)
    o_d = tl.arange(0, D_P)
    o_j = tl.arange(0, BLOCK)
    m_h = o_h < G
    m_d = o_d < D
    i_t64 = i_t.to(tl.int64)
    p_q = Q + i_t64 * stride_qt + (i_g * G + o_h)[:, None] * stride_qh + o_d[None, :]
    b_q = tl.load(p_q, mask=m_h[:, None] & m_d[None, :], other=0.0)  # [G_P, D_P]

    b_m = tl.full([G_P], float("-inf"), dtype=tl.float32)
    b_l = tl.zeros([G_P], dtype=tl.float32)
    b_acc = tl.zeros([G_P, D_P], dtype=tl.float32)
    pt_row = PAGE_TABLE + i_b.to(tl.int64) * stride_pt_b
    p_sel = TOPK_IDX + i_t64 * stride_it + i_g * stride_ih
    if SUB > 0:
        NSUB: tl.constexpr = BLOCK // SUB
        o_u = tl.arange(0, SUB)
        p_kd = K + i_g * stride_kh + o_d[:, None]
        p_vd = V + i_g * stride_vh + o_d[None, :]
        for it in range(TOPK * NSUB):
            blk = tl.load(p_sel + it // NSUB)
            ok = (blk >= 0) & (blk <= p)
            page = _clamped_page(pt_row, tl.maximum(tl.minimum(blk, p), 0), num_pages)  # a column of the table
            o_k = (it % NSUB) * SUB + o_u  # key within the block
            m_u = ok & (blk * BLOCK + o_k <= pos)  # [SUB]: only the own block holds invisible keys
            b_k = tl.load(p_kd + page * stride_kp + o_k[None, :] * stride_kb, mask=m_u[None, :] & m_d[:, None],
                          other=0.0)  # [D_P, SUB]
            b_m, b_l, b_acc = _attend_tile(b_q, b_k, p_vd + page * stride_vp + o_k[:, None] * stride_vb,
                                           m_u[:, None] & m_d[None, :], m_u[None, :], qk_scale, b_m, b_l, b_acc,
                                           IEEE, MAY_BE_EMPTY=True)
    else:
        for s in range(TOPK):
            blk = tl.load(p_sel + s)
            if (blk >= 0) & (blk <= p):
                page = _clamped_page(pt_row, blk, num_pages)
                o_key = blk * BLOCK + o_j
                m_key = o_key <= pos  # only the own block holds invisible keys
                p_k = K + page * stride_kp + o_j[None, :] * stride_kb + i_g * stride_kh + o_d[:, None]
                b_k = tl.load(p_k, mask=m_key[None, :] & m_d[:, None], other=0.0)  # [D_P, BLOCK]
                p_v = V + page * stride_vp + o_j[:, None] * stride_vb + i_g * stride_vh + o_d[None, :]
                # the first key blk * BLOCK <= pos is visible, so b_m is finite after the update
                b_m, b_l, b_acc = _attend_tile(b_q, b_k, p_v, m_key[:, None] & m_d[None, :], m_key[None, :],
                                               qk_scale, b_m, b_l, b_acc, IEEE)
    has = b_l > 0
    b_o = b_acc / tl.where(has, b_l, 1.0)[:, None]
    p_o = OUT + i_t64 * stride_ot + (i_g * G + o_h)[:, None] * stride_oh + o_d[None, :]
    tl.store(p_o, b_o.to(OUT.dtype.element_ty), mask=m_h[:, None] & m_d[None, :])
    # natural-log LSE: (m + log2 l) / log2(e)
    b_lse = tl.where(has, (b_m + tl.log2(tl.where(has, b_l, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(LSE + i_t64 * (G * tl.num_programs(1)) + i_g * G + o_h, b_lse, mask=m_h)


@triton.jit
def _slot_partial_kernel(
    Q, K, V, TOPK_IDX, PAGE_TABLE, SEQ_LENS, CU_SEQLENS, TOKEN_REQ,
    O_PART, LSE_PART,
    num_pages, qk_scale,
    stride_qt, stride_qh,
    stride_kp, stride_kb, stride_kh,
    stride_vp, stride_vb, stride_vh,
    stride_it, stride_ih,
    stride_pt_b,
    IN_KEY, n_split,
    HKV: tl.constexpr, G: tl.constexpr, G_P: tl.constexpr, D: tl.constexpr, D_P: tl.constexpr,
    BLOCK: tl.constexpr, TOPK: tl.constexpr, IEEE: tl.constexpr, USE_PDL: tl.constexpr = 0,
    SELECT: tl.constexpr = 0, BLOCK_T: tl.constexpr = 1, NS_C: tl.constexpr = 1, LOG2_NS_C: tl.constexpr = 0,
    TOPK_P: tl.constexpr = 16, N_INIT: tl.constexpr = 0, N_LOCAL: tl.constexpr = 1, K_FREE: tl.constexpr = 1,
    KF: tl.constexpr = 1, LOG2_KF: tl.constexpr = 0, SPLIT_FLOOR: tl.constexpr = 1, SPLIT_PIECES: tl.constexpr = 1,
    SUB: tl.constexpr = 0, NS_H: tl.constexpr = 0,
):
    """Split form (decode, short calls): one program per (query token, group, slot) attends the
    slot's block with the group's G heads and writes the partial output (normalised, fp32) and
    base-2 LSE of entry ``(t * HKV + g) * TOPK + slot`` (then the G heads). A slot that attends
    nothing writes 0 and -inf, so the merge needs no selection lookup. With PDL, the query and
    the step's metadata (written before the index kernels ran) load before the wait; the
    selection after it.

    SELECT = 1 (the decode wrapper): the index finalize step is done here instead of in its own
    kernel. Every program merges its (token, group)'s partial top-k lists ``IN_KEY`` (the index
    partial kernel's, ``n_split`` per row; the other constexprs as in that kernel's plan) into
    the row's selection exactly as ``_index_finalize_kernel`` does, attends the block in its own
    column, and slot 0's program writes the row into ``TOPK_IDX``. The TOPK programs of a row
    repeat the same small merge; in exchange a step has one kernel and one memory round trip
    fewer between the scan and the attention.

    SUB > 0: the block is walked in sub-blocks of SUB keys (online softmax), else loaded whole."""
    i_t = tl.program_id(0)
    i_g = tl.program_id(1)
    i_s = tl.program_id(2)
    i_t64 = i_t.to(tl.int64)
    o_h = tl.arange(0, G_P)
    o_d = tl.arange(0, D_P)
    o_j = tl.arange(0, BLOCK)
    m_h = o_h < G
    m_d = o_d < D
    row = ((i_t64 * HKV + i_g) * TOPK + i_s) * G + o_h
    p_op = O_PART + row[:, None] * D + o_d[None, :]
    m_op = m_h[:, None] & m_d[None, :]
    p_q = Q + i_t64 * stride_qt + (i_g * G + o_h)[:, None] * stride_qh + o_d[None, :]
    b_q = tl.load(p_q, mask=m_h[:, None] & m_d[None, :], other=0.0)  # [G_P, D_P], issued with the id load
    i_b = tl.load(TOKEN_REQ + i_t)
    q_start = tl.load(CU_SEQLENS + i_b)
    q_len = tl.load(CU_SEQLENS + i_b + 1) - q_start
    pos = tl.load(SEQ_LENS + i_b) - q_len + (i_t - q_start)
    if SELECT:
        o_r = i_t * HKV + i_g + tl.arange(0, 1)  # the row (token, group) as a [1] tensor
        p_row, n_used, per_split = _rows_used_splits(TOKEN_REQ, SEQ_LENS, CU_SEQLENS, o_r, o_r >= 0, n_split, HKV,
                                                     BLOCK_T, BLOCK, N_INIT, N_LOCAL, SPLIT_FLOOR, SPLIT_PIECES)
        pdl_wait(USE_PDL)
        sel = _merge_select(IN_KEY, o_r.to(tl.int64), p_row, n_used, per_split, n_split, NS_C, LOG2_NS_C, TOPK, TOPK_P,
                            N_INIT, N_LOCAL, K_FREE, KF, LOG2_KF, NS_H)  # [1, TOPK_P]
        col = tl.arange(0, TOPK_P)[None, :]
        blk = tl.sum(tl.where(col == i_s, sel, 0))
        if i_s == 0:
            tl.store(TOPK_IDX + i_t64 * stride_it + i_g * stride_ih + col, sel, mask=col < TOPK)
    else:
        pdl_wait(USE_PDL)
        blk = tl.load(TOPK_IDX + i_t64 * stride_it + i_g * stride_ih + i_s)
    if (blk < 0) | (blk > pos // BLOCK):
        tl.store(p_op, tl.zeros([G_P, D_P], dtype=O_PART.dtype.element_ty), mask=m_op)
        tl.store(LSE_PART + row, tl.full([G_P], float("-inf"), dtype=tl.float32), mask=m_h)
        return
    page = tl.load(PAGE_TABLE + i_b.to(tl.int64) * stride_pt_b + blk)
    page = tl.minimum(tl.maximum(page, 0), num_pages - 1).to(tl.int64)
    if SUB > 0:  # the block in sub-blocks of SUB keys, online softmax: a loop Triton pipelines, so K
        # and V go to shared memory asynchronously (see _SLOT_SUB)
        o_u = tl.arange(0, SUB)
        p_kb = K + page * stride_kp + i_g * stride_kh + o_d[:, None]
        p_vb = V + page * stride_vp + i_g * stride_vh + o_d[None, :]
        b_mi = tl.full([G_P], float("-inf"), dtype=tl.float32)
        b_li = tl.zeros([G_P], dtype=tl.float32)
        b_acc = tl.zeros([G_P, D_P], dtype=tl.float32)
        for j in range(0, BLOCK, SUB):
            m_u = blk * BLOCK + j + o_u <= pos
            b_k = tl.load(p_kb + (j + o_u)[None, :] * stride_kb, mask=m_u[None, :] & m_d[:, None], other=0.0)  # [D_P, SUB]
            # V [SUB, D_P]; b_mi is finite from the first sub-block on (key blk * BLOCK <= pos)
            b_mi, b_li, b_acc = _attend_tile(b_q, b_k, p_vb + (j + o_u)[:, None] * stride_vb,
                                             m_u[:, None] & m_d[None, :], m_u[None, :], qk_scale, b_mi, b_li, b_acc,
                                             IEEE)
        tl.store(p_op, (b_acc / b_li[:, None]).to(O_PART.dtype.element_ty), mask=m_op)
        tl.store(LSE_PART + row, b_mi + tl.log2(b_li), mask=m_h)
        return
    o_key = blk * BLOCK + o_j
    m_key = o_key <= pos
    p_k = K + page * stride_kp + o_j[None, :] * stride_kb + i_g * stride_kh + o_d[:, None]
    b_k = tl.load(p_k, mask=m_key[None, :] & m_d[:, None], other=0.0)  # [D_P, BLOCK]
    p_v = V + page * stride_vp + o_j[:, None] * stride_vb + i_g * stride_vh + o_d[None, :]
    b_v = tl.load(p_v, mask=m_key[:, None] & m_d[None, :], other=0.0)  # [BLOCK, D_P]
    if IEEE:
        b_s = tl.dot(b_q, b_k, input_precision="ieee")
    else:
        b_s = tl.dot(b_q, b_k)  # [G_P, BLOCK] fp32
    b_s = tl.where(m_key[None, :], b_s * qk_scale, float("-inf"))
    b_m = tl.max(b_s, axis=1)  # finite: key blk * BLOCK <= pos
    b_p = tl.exp2(b_s - b_m[:, None])
    b_l = tl.sum(b_p, axis=1)
    if IEEE:
        b_o = tl.dot(b_p.to(b_v.dtype), b_v, input_precision="ieee")
    else:
        b_o = tl.dot(b_p.to(b_v.dtype), b_v)  # [G_P, D_P]
    b_o = b_o / b_l[:, None]
    tl.store(p_op, b_o.to(O_PART.dtype.element_ty), mask=m_op)
    tl.store(LSE_PART + row, b_m + tl.log2(b_l), mask=m_h)


@triton.jit
def _merge_heads_kernel(
    O_PART, LSE_PART, OUT, LSE,
    stride_ot, stride_oh,
    HQ: tl.constexpr, G: tl.constexpr, D: tl.constexpr, D_P: tl.constexpr,
    TOPK: tl.constexpr, TOPK_P: tl.constexpr, USE_PDL: tl.constexpr = 0,
):
    """Split form's merge, one program per (query, head): out = sum_s w_s o_s / sum_s w_s with
    w_s = 2^(lse_s - max lse), in slot order. One round of independent loads (empty slots hold
    0 and -inf), so a decode step pays one memory latency here."""
    pdl_wait(USE_PDL)  # the partials are the previous kernel's
    t64 = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    o_s = tl.arange(0, TOPK_P)
    o_d = tl.arange(0, D_P)
    m_s = o_s < TOPK
    m_d = o_d < D
    row = ((t64 * (HQ // G) + h // G) * TOPK + o_s) * G + h % G  # [TOPK_P]
    lse = tl.load(LSE_PART + row, mask=m_s, other=float("-inf"))
    o = tl.load(O_PART + row[:, None] * D + o_d[None, :], mask=m_s[:, None] & m_d[None, :], other=0.0)
    b_m = tl.max(lse, axis=0)
    has = b_m > float("-inf")
    w = tl.exp2(lse - tl.where(has, b_m, 0.0))  # 0 for empty slots
    b_w = tl.sum(w, axis=0)
    b_o = tl.sum(w[:, None] * o.to(tl.float32), axis=0) / tl.where(has, b_w, 1.0)
    tl.store(OUT + t64 * stride_ot + h * stride_oh + o_d, b_o.to(OUT.dtype.element_ty), mask=m_d)
    b_lse = tl.where(has, (b_m + tl.log2(tl.where(has, b_w, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(LSE + t64 * HQ + h, b_lse)


@triton.jit
def _tile_query_rows(Q, e, n, i_g, q_start, q_len, seq_len, row_lo, o_r, o_d, m_d, stride_qt, stride_qh,
                     NG: tl.constexpr, G: tl.constexpr, G_P: tl.constexpr, TOPK: tl.constexpr):
    """A KV-outer tile's rows (query of entry ``e`` x head ``o_r % G_P``; the first ``n`` queries
    are real): head in the group, real-row mask, the query's position, and its Q rows [R, D_P]."""
    o_h = o_r % G_P  # head within the group
    m_r = (o_r // G_P < n) & (o_h < G)
    t = row_lo + e // (NG * TOPK)  # packed query row
    pos = seq_len - q_len + (t - q_start)  # [R]
    p_q = Q + t.to(tl.int64)[:, None] * stride_qt + (i_g * G + o_h)[:, None] * stride_qh + o_d[None, :]
    return o_h, m_r, pos, tl.load(p_q, mask=m_r[:, None] & m_d[None, :], other=0.0)


@triton.jit
def _kv_outer_partial_kernel(
    Q, K, V, TILE_E, TILE_INFO,
    O_PART, LSE_PART,
    qk_scale, row_lo,
    stride_qt, stride_qh,
    stride_kp, stride_kb, stride_kh,
    stride_vp, stride_vb, stride_vh,
    NG: tl.constexpr, G: tl.constexpr, G_P: tl.constexpr, MQ: tl.constexpr,
    D: tl.constexpr, D_P: tl.constexpr, BLOCK: tl.constexpr, TOPK: tl.constexpr, IEEE: tl.constexpr,
    SUB: tl.constexpr = 0,
):
    """One tile: one K/V block of one (group, request) against up to MQ of the queries that chose
    it (entries numbered as in metadata.BlockTiles, over the pass's NG groups). (Several tiles per
    program, pipelined or not, and two tiles sharing one K/V load measured slower:
    benchmarks/NOTES.md v2-v4, v15.) SUB > 0: the block in sub-blocks of SUB keys with an online
    softmax, a loop Triton pipelines (K and V to shared memory asynchronously); else loaded whole.
    Dependent loads: the tile's row of TILE_INFO (page and request data precomputed) and its
    entries (TILE_E) at once, then K, V and the entries' Q rows at once."""
    pid = tl.program_id(0).to(tl.int64)
    info = TILE_INFO + pid * 8  # metadata.TILE_INFO_FIELDS
    R: tl.constexpr = MQ * G_P
    o_r = tl.arange(0, R)
    # entry (query, group, slot), local numbering, of each row (0 past the tile's n entries)
    e = tl.load(TILE_E + pid * MQ + o_r // G_P)
    n = tl.load(info + 1)
    blk = tl.load(info + 2)
    i_g = tl.load(info + 3)
    page = tl.load(info + 4).to(tl.int64)  # clamped when written
    q_start = tl.load(info + 5)
    q_len = tl.load(info + 6)
    seq_len = tl.load(info + 7)
    if n == 0:
        return

    o_d = tl.arange(0, D_P)
    m_d = o_d < D
    if SUB > 0:
        o_h, m_r, pos, b_q = _tile_query_rows(Q, e, n, i_g, q_start, q_len, seq_len, row_lo, o_r, o_d, m_d,
                                              stride_qt, stride_qh, NG, G, G_P, TOPK)
        row = e.to(tl.int64) * G + o_h  # partial row: (entry, head)
        o_u = tl.arange(0, SUB)
        p_kb = K + page * stride_kp + i_g * stride_kh + o_d[:, None]
        p_vb = V + page * stride_vp + i_g * stride_vh + o_d[None, :]
        b_mi = tl.full([R], float("-inf"), dtype=tl.float32)
        b_li = tl.zeros([R], dtype=tl.float32)
        b_acc = tl.zeros([R, D_P], dtype=tl.float32)
        for j in range(0, BLOCK, SUB):
            o_key = blk * BLOCK + j + o_u
            m_u = o_key < seq_len
            b_k = tl.load(p_kb + (j + o_u)[None, :] * stride_kb, mask=m_u[None, :] & m_d[:, None], other=0.0)  # [D_P, SUB]
            # a real row sees key blk * BLOCK (first sub-block), so its max is finite from there on;
            # padding rows (q = 0) see every key, so theirs is too
            m_s = (o_key[None, :] <= pos[:, None]) | ~m_r[:, None]
            b_mi, b_li, b_acc = _attend_tile(b_q, b_k, p_vb + (j + o_u)[:, None] * stride_vb,
                                             m_u[:, None] & m_d[None, :], m_s, qk_scale, b_mi, b_li, b_acc, IEEE)
        tl.store(O_PART + row[:, None] * D + o_d[None, :], (b_acc / b_li[:, None]).to(O_PART.dtype.element_ty),
                 mask=m_r[:, None] & m_d[None, :])
        tl.store(LSE_PART + row, b_mi + tl.log2(b_li), mask=m_r)
        return
    o_j = tl.arange(0, BLOCK)
    o_key = blk * BLOCK + o_j
    m_key = o_key < seq_len
    p_k = K + page * stride_kp + o_j[None, :] * stride_kb + i_g * stride_kh + o_d[:, None]
    b_k = tl.load(p_k, mask=m_key[None, :] & m_d[:, None], other=0.0)  # [D_P, BLOCK]
    p_v = V + page * stride_vp + o_j[:, None] * stride_vb + i_g * stride_vh + o_d[None, :]
    b_v = tl.load(p_v, mask=m_key[:, None] & m_d[None, :], other=0.0)  # [BLOCK, D_P], in flight during QK

    o_h, m_r, pos, b_q = _tile_query_rows(Q, e, n, i_g, q_start, q_len, seq_len, row_lo, o_r, o_d, m_d,
                                          stride_qt, stride_qh, NG, G, G_P, TOPK)

    if IEEE:
        b_s = tl.dot(b_q, b_k, input_precision="ieee")
    else:
        b_s = tl.dot(b_q, b_k)  # [R, BLOCK] fp32
    visible = o_key[None, :] <= pos[:, None]
    # the scale folded into the exponent, as kv_outer_ws's softmax does (same bits)
    b_s = tl.where(visible, b_s, float("-inf"))
    b_m = tl.max(b_s, axis=1) * qk_scale  # finite for real rows: key blk*BLOCK <= pos
    b_m = tl.where(m_r, b_m, 0.0)
    b_p = tl.exp2(tl.fma(b_s, qk_scale, -b_m[:, None]))
    b_l = tl.sum(b_p, axis=1)
    if IEEE:
        b_o = tl.dot(b_p.to(b_v.dtype), b_v, input_precision="ieee")
    else:
        b_o = tl.dot(b_p.to(b_v.dtype), b_v)  # [R, D_P]
    b_l = tl.where(m_r, b_l, 1.0)
    b_o = b_o / b_l[:, None]
    row = e.to(tl.int64) * G + o_h  # partial row: (entry, head)
    tl.store(O_PART + row[:, None] * D + o_d[None, :], b_o.to(O_PART.dtype.element_ty), mask=m_r[:, None] & m_d[None, :])
    tl.store(LSE_PART + row, b_m + tl.log2(b_l), mask=m_r)


@triton.jit
def _merge_slots_kernel(
    O_PART, LSE_PART, TOPK_IDX, SEQ_LENS, CU_SEQLENS, TOKEN_REQ,
    OUT, LSE,
    row_lo, g_lo,
    stride_it, stride_ih,
    stride_ot, stride_oh,
    HKV: tl.constexpr, NG: tl.constexpr, G: tl.constexpr, G_P: tl.constexpr, D: tl.constexpr, D_P: tl.constexpr,
    BLOCK: tl.constexpr, TOPK: tl.constexpr, TOPK_P: tl.constexpr, DENSE: tl.constexpr = 0,
):
    """One (query, group) of the pass (rows from row_lo, NG groups from g_lo): out = sum_s w_s o_s
    / sum_s w_s with w_s = 2^(lse_s - max lse), over the valid slots in slot order. The weights
    come from one vector load of the LSEs, so the partial-output loads of the slot loop are
    independent of each other. DENSE: rows with p < TOPK are _dense_rows_kernel's; skipped."""
    t = row_lo + tl.program_id(0)
    i_gp = tl.program_id(1)  # group within the pass
    i_g = g_lo + i_gp
    i_b = tl.load(TOKEN_REQ + t)
    q_start = tl.load(CU_SEQLENS + i_b)
    q_len = tl.load(CU_SEQLENS + i_b + 1) - q_start
    p = (tl.load(SEQ_LENS + i_b) - q_len + (t - q_start)) // BLOCK
    if DENSE:
        if p < TOPK:
            return
    t64 = t.to(tl.int64)
    o_s = tl.arange(0, TOPK_P)
    o_h = tl.arange(0, G_P)
    o_d = tl.arange(0, D_P)
    m_h = o_h < G
    m_hd = m_h[:, None] & (o_d < D)[None, :]
    blk = tl.load(TOPK_IDX + t64 * stride_it + i_g * stride_ih + o_s, mask=o_s < TOPK, other=-1)
    ok = (blk >= 0) & (blk <= p)  # [TOPK_P]
    base = ((t64 - row_lo) * NG + i_gp) * TOPK  # partial entry of slot 0
    lse = tl.load(LSE_PART + (base + o_s)[:, None] * G + o_h[None, :], mask=ok[:, None] & m_h[None, :],
                  other=float("-inf"))  # [TOPK_P, G_P], base 2
    b_m = tl.max(lse, axis=0)  # [G_P]
    has = b_m > float("-inf")
    w = tl.exp2(lse - tl.where(has, b_m, 0.0)[None, :])  # 0 for empty slots
    b_w = tl.sum(w, axis=0)
    b_acc = tl.zeros([G_P, D_P], dtype=tl.float32)
    for s in tl.static_range(TOPK):
        w_s = tl.sum(tl.where(o_s[:, None] == s, w, 0.0), axis=0)  # [G_P]
        row = (base + s) * G + o_h
        o = tl.load(O_PART + row[:, None] * D + o_d[None, :], mask=m_hd & (w_s > 0)[:, None], other=0.0)
        b_acc += w_s[:, None] * o.to(tl.float32)
    b_o = b_acc / tl.where(has, b_w, 1.0)[:, None]
    p_o = OUT + t64 * stride_ot + (i_g * G + o_h)[:, None] * stride_oh + o_d[None, :]
    tl.store(p_o, b_o.to(OUT.dtype.element_ty), mask=m_hd)
    b_lse = tl.where(has, (b_m + tl.log2(tl.where(has, b_w, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(LSE + t64 * (HKV * G) + i_g * G + o_h, b_lse, mask=m_h)


@triton.jit
def _sub_block_page(pt_row, j, num_pages, o_u, SUB: tl.constexpr, BLOCK: tl.constexpr):
    """Key sub-block ``j`` (keys j * SUB + o_u) of a request: its physical page from the page-table
    row ``pt_row`` (clamped to the cache, int64) and the keys' offsets within that page."""
    return _clamped_page(pt_row, (j * SUB) // BLOCK, num_pages), (j * SUB) % BLOCK + o_u


@triton.jit
def _dense_rows_kernel(
    Q, K, V, PAGE_TABLE, SEQ_LENS, CU_SEQLENS,
    OUT, LSE,
    num_pages, qk_scale, n_tiles, n_batch,
    stride_qt, stride_qh,
    stride_kp, stride_kb, stride_kh,
    stride_vp, stride_vb, stride_vh,
    stride_pt_b,
    stride_ot, stride_oh,
    G: tl.constexpr, G_P: tl.constexpr, MQ: tl.constexpr, D: tl.constexpr, D_P: tl.constexpr,
    BLOCK: tl.constexpr, TOPK: tl.constexpr, SUB: tl.constexpr, IEEE: tl.constexpr, BATCH_P: tl.constexpr,
):
    """Dense rows: the queries at positions below TOPK * BLOCK, which select every block up to
    their own (MSA.md section 3: n <= k), so their output is dense causal attention. One program
    per (tile of MQ consecutive queries of a request, group): the MQ queries x G heads as the rows
    of one tile, keys 0..(last query's position) in sub-blocks of SUB keys through the page table,
    online softmax; the sub-blocks every query sees all of first, unmasked, then the one or two
    the tile's diagonal crosses. A request's dense queries are a prefix of its rows (positions are
    consecutive). BATCH_P > 0 (at least ``n_batch``, a power of two): the tile map - program p
    takes the call's p-th dense tile, requests in order, found from the lengths of all requests
    (one vector load each, a cumulative sum), so the grid needs only as many programs as the call
    can have tiles; programs past the last tile exit. BATCH_P == 0: ``n_tiles`` programs a
    request (as many as the longest could need); programs past a request's dense rows exit.
    A ``seq_lens_k`` below its request's ``q_len`` (outside the contract) stays confined to that
    request: its prefix (seq_len - q_len) is taken as 0 and its tiles are capped at ``n_tiles``,
    so it cannot shift the tile map's later requests out of the grid. (Its rows between the span
    and the first row the sparse path takes, which still reads the unclamped prefix, are left
    unwritten.)"""
    pid = tl.program_id(0)
    i_g = tl.program_id(1)
    if BATCH_P > 0:
        o_b = tl.arange(0, BATCH_P)
        m_b = o_b < n_batch
        b_lo = tl.load(CU_SEQLENS + o_b, mask=m_b, other=0)
        b_len = tl.load(CU_SEQLENS + o_b + 1, mask=m_b, other=0) - b_lo
        b_pre = tl.maximum(tl.load(SEQ_LENS + o_b, mask=m_b, other=0) - b_len, 0)  # clamped: see below
        b_nt = (tl.maximum(tl.minimum(b_len, TOPK * BLOCK - b_pre), 0) + MQ - 1) // MQ  # [BATCH_P] dense tiles
        b_nt = tl.minimum(b_nt, n_tiles)
        b_end = tl.cumsum(b_nt, 0)  # tiles up to and with each request
        i_b = tl.sum((b_end <= pid).to(tl.int32), 0)  # the request whose tiles hold tile pid
        if i_b >= n_batch:
            return
        m_i = o_b == i_b
        i0 = (pid - tl.sum(tl.where(m_i, b_end - b_nt, 0), 0)) * MQ  # the tile's first query within it
        q_start = tl.sum(tl.where(m_i, b_lo, 0), 0)
        q_len = tl.sum(tl.where(m_i, b_len, 0), 0)
        prefix = tl.sum(tl.where(m_i, b_pre, 0), 0)
    else:
        i_b = pid // n_tiles
        i0 = (pid % n_tiles) * MQ  # the tile's first query within the request
        q_start = tl.load(CU_SEQLENS + i_b)
        q_len = tl.load(CU_SEQLENS + i_b + 1) - q_start
        prefix = tl.maximum(tl.load(SEQ_LENS + i_b) - q_len, 0)  # position of the request's first query
    n_dense = tl.minimum(q_len, TOPK * BLOCK - prefix)  # its dense queries
    if i0 >= n_dense:
        return

    R: tl.constexpr = MQ * G_P
    o_r = tl.arange(0, R)
    o_h = o_r % G_P  # head within the group
    i_q = i0 + o_r // G_P  # query within the request
    m_r = (i_q < n_dense) & (o_h < G)
    pos = prefix + i_q  # [R]
    o_d = tl.arange(0, D_P)
    m_d = o_d < D
    t = (q_start + i_q).to(tl.int64)
    p_q = Q + t[:, None] * stride_qt + (i_g * G + o_h)[:, None] * stride_qh + o_d[None, :]
    b_q = tl.load(p_q, mask=m_r[:, None] & m_d[None, :], other=0.0)  # [R, D_P]

    b_m = tl.full([R], float("-inf"), dtype=tl.float32)
    b_l = tl.zeros([R], dtype=tl.float32)
    b_acc = tl.zeros([R, D_P], dtype=tl.float32)
    pt_row = PAGE_TABLE + i_b.to(tl.int64) * stride_pt_b
    o_u = tl.arange(0, SUB)
    p_kd = K + i_g * stride_kh + o_d[:, None]
    p_vd = V + i_g * stride_vh + o_d[None, :]
    pos_hi = prefix + tl.minimum(i0 + MQ, n_dense) - 1  # the tile's last query's position
    n_all = pos_hi // SUB + 1  # sub-blocks up to its key
    n_free = (prefix + i0 + 1) // SUB  # sub-blocks the tile's first query sees whole
    for j in range(0, n_free):  # [0, n_free * SUB): visible to every row
        page, o_k = _sub_block_page(pt_row, j, num_pages, o_u, SUB, BLOCK)
        b_k = tl.load(p_kd + page * stride_kp + o_k[None, :] * stride_kb, mask=m_d[:, None], other=0.0)  # [D_P, SUB]
        b_m, b_l, b_acc = _attend_tile(b_q, b_k, p_vd + page * stride_vp + o_k[:, None] * stride_vb, m_d[None, :],
                                       (o_u < SUB)[None, :], qk_scale, b_m, b_l, b_acc, IEEE)
    for j in range(n_free, n_all):  # the diagonal: key <= the row's position (key 0 <= every row's)
        page, o_k = _sub_block_page(pt_row, j, num_pages, o_u, SUB, BLOCK)
        m_u = j * SUB + o_u <= pos_hi  # keys past the tile's last query may lie past the cache's end: not loaded
        b_k = tl.load(p_kd + page * stride_kp + o_k[None, :] * stride_kb, mask=m_u[None, :] & m_d[:, None], other=0.0)
        m_s = (j * SUB + o_u)[None, :] <= pos[:, None]
        b_m, b_l, b_acc = _attend_tile(b_q, b_k, p_vd + page * stride_vp + o_k[:, None] * stride_vb,
                                       m_u[:, None] & m_d[None, :], m_s, qk_scale, b_m, b_l, b_acc, IEEE)
    p_o = OUT + t[:, None] * stride_ot + (i_g * G + o_h)[:, None] * stride_oh + o_d[None, :]
    tl.store(p_o, (b_acc / b_l[:, None]).to(OUT.dtype.element_ty), mask=m_r[:, None] & m_d[None, :])
    # natural-log LSE: (m + log2 l) / log2(e); key 0 is visible to every row, so l > 0
    tl.store(LSE + t * (G * tl.num_programs(1)) + i_g * G + o_h, (b_m + tl.log2(b_l)) * 0.6931471805599453, mask=m_r)


# KV-outer pays when blocks are shared by many queries of the call (prefill chunks); decode and
# short chunks take the query-outer form. H200, M3 shapes, the main branch's GPU time (events
# behind the suite's matmul lead, the host ahead), ms query-outer / KV-outer (NOTES.md v30f):
# after a 32K prefix 512 queries 0.339 / 0.271, 1024 0.652 / 0.400, 2048 1.212 / 0.645; after 1M
# 512 0.486 / 0.574, 1024 0.888 / 0.801, 1536 1.344 / 0.946. (The KV-outer form's host work,
# ~0.9 ms a plain call, exceeds its GPU work below ~2K queries: where the caller waits for each
# call, the query-outer form is faster up to ~1.5K queries.) Was 2048 (v5, before the Gluon
# KV-outer kernel and v30's pipelined query-outer loop).
KV_OUTER_MIN_QUERIES = 1024
# Upper bound on the KV-outer partial outputs held at once; a call whose partials do not fit
# runs in passes (kv_outer_passes): KV groups apart first, as many as fit with all the call's
# rows - each group's K/V is then read in one pass only - and only where one group's rows do not
# fit, row ranges of one group. M3 shapes: 65 KiB a (query row, group), so 2.25 GiB holds a 16K
# chunk two groups at a time. Row ranges (the form before v18) re-read the K/V their queries
# chose once per range: two ranges of a 16K chunk were 2.5-3% slower than one range up to a
# 112K prefix and 10% slower at 1008K (H100, NOTES.md v10, v18).
KV_OUTER_WORKSPACE_BYTES = 9 << 28
# Query rows per tile window of the KV-outer form (metadata.build_block_tiles), used while one
# group's K/V (bounded by the page table's width) fits in half the L2: the query rows a window
# gathers then come from L2 at the price of one K/V read per window, which hits L2 too. H100, M3
# shapes, 16K chunk, main branch (NOTES.md v15): 2048 rows 3-5% faster after no prefix (8 MB of
# K/V a group), 0.4-3% after 16K (16 MB), a tie after 48K (32 MB), 4% slower after 112K and 60%
# after 1008K (K/V re-read from DRAM once per window).
KV_OUTER_Q_WINDOW = 2048
KV_OUTER_WINDOW_MAX_KV_BYTES = 24 << 20
# The KV-outer partial kernel walks its block in pipelined sub-blocks of _KV_SUB_KEYS keys
# (_KV_SUB_STAGES stages) where the call's context (the page table's width) is at least twice
# its query rows, the block whole elsewhere. H100, M3 shapes, a 16K chunk, main branch ms
# whole / sub-blocks of 32 keys, 3 stages (two-group passes; NOTES.md v18): after no prefix 5.90
# / 5.98 (slower), 16K 6.44 / 6.38, 32K 6.63 / 6.46, 112K 6.75 / 6.58, 1008K 7.34 / 7.15. 16 keys
# were 14-17% slower, 64 keys 25-35% (177 registers: one program an SM), 2 stages 6-9%. None: that
# rule; an int: sub-blocks of that many keys always (0: never; tests and A/B studies).
_KV_SUB = None
_KV_SUB_KEYS = 32
_KV_SUB_STAGES = 3
# The KV-outer partial outputs by the warp-specialized Gluon kernel (kv_outer_ws) where it
# supports the call (kv_outer_ws.ws_supported: bf16 / fp16, G 16, D 128, block 128, contiguous
# and aligned q and caches, Hopper, a Triton with Gluon's list form of warp_specialize), else by
# the Triton kernel, which also runs whenever a call or a study asks for its launch settings
# (num_warps, num_stages, _KV_SUB). H200, M3 shapes, a 16K
# chunk, partial kernel ms Triton / Gluon (benchmarks/NOTES.md v26e): after no prefix 4.26 / 2.82,
# 16K 4.75 / 2.90, 112K 4.85 / 3.22, 1008K 5.60 / 3.63. False: always the Triton kernel.
_KV_WS = True


def kv_outer_sub(total_q: int, max_pages: int, block_size: int) -> int:
    """Keys per sub-block of the KV-outer partial kernel (0: the block whole; see _KV_SUB)."""
    if _KV_SUB is not None:
        if _KV_SUB not in (0, 16, 32, 64, 128):
            raise ValueError(f"main_branch._KV_SUB: expected None or one of 0, 16, 32, 64, 128, got {_KV_SUB!r}")
        sub = _KV_SUB
    else:
        sub = _KV_SUB_KEYS if max_pages * block_size >= 2 * total_q else 0
    return sub if sub < block_size else 0


def kv_outer_q_window(batch: int, max_pages: int, block_size: int, head_dim: int, elem_size: int) -> int:
    """Query rows per tile window of the KV-outer form, from shapes only (0: one window)."""
    kv_bytes = batch * max_pages * block_size * 2 * head_dim * elem_size  # one group's K/V, at most
    return KV_OUTER_Q_WINDOW if kv_bytes <= KV_OUTER_WINDOW_MAX_KV_BYTES else 0

# The split form runs while the query-outer form would have fewer programs than the GPU has SMs
# times this factor. Main branch alone at M3 shapes, 16K context, H200 (132 SMs; NOTES.md v6):
# 1 query split 0.021 ms vs query-outer 0.048; 16 queries 0.056 vs 0.069; 64: 0.138 vs 0.085.
SPLIT_PROGRAMS_PER_SM = 1.0
# Tests only: force (1 << 62) or forbid (-1) the split form below KV_OUTER_MIN_QUERIES.
SPLIT_MAX_QUERIES = None


# Passes after the first build their tiles (metadata.build_block_tiles: ~8 small launches) on a
# side stream while the previous pass's kernels run (benchmarks/NOTES.md v18).
_KV_OVERLAP_BUILD = True
_SIDE_STREAMS = {}


def _side_stream(device):
    """One side stream per device, made once (the KV-outer form's overlapped tile builds)."""
    key = torch.device(device).index
    if key not in _SIDE_STREAMS:
        _SIDE_STREAMS[key] = torch.cuda.Stream(device)
    return _SIDE_STREAMS[key]


def kv_outer_passes(total_q: int, hkv: int, per_row_group: int, workspace_bytes: int, min_rows: int):
    """The KV-outer form's passes: a list of (row_lo, row_hi, g_lo, ng), from shapes only.
    ``per_row_group``: bytes of partial outputs and LSEs of one (query row, group);
    ``min_rows``: one tile's query rows (a pass holds at least that many whatever the budget)."""
    fit = min(hkv, workspace_bytes // (per_row_group * max(1, total_q)))  # groups that fit with all rows
    if fit >= 1:
        n_pass = triton.cdiv(hkv, fit)
        ng = triton.cdiv(hkv, n_pass)  # as even as the count allows
        return [(0, total_q, g, min(ng, hkv - g)) for g in range(0, hkv, ng)]
    rows = max(min_rows, workspace_bytes // per_row_group)
    return [(lo, min(total_q, lo + rows), g, 1) for g in range(hkv) for lo in range(0, total_q, rows)]


def choose_method(total_q: int, hkv: int, device) -> str:
    """The main-branch form for a call of ``total_q`` query rows, from shapes only."""
    if total_q >= KV_OUTER_MIN_QUERIES:
        return "kv_outer"
    if SPLIT_MAX_QUERIES is not None:
        return "split" if total_q <= SPLIT_MAX_QUERIES else "q_outer"
    return "split" if total_q * hkv < SPLIT_PROGRAMS_PER_SM * num_sms(device) else "q_outer"


def _block_args(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, token_req):
    """What the query-outer and slot kernels take around their outputs: (the input tensors, the
    scalars and strides after the outputs)."""
    tensors = (q, k_cache, v_cache, topk_idx, page_table, seq_lens_k, cu_seqlens_q, token_req)
    scalars = (
        k_cache.shape[0], config.resolved_softmax_scale(q.shape[2]) * _LOG2E,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        topk_idx.stride(0), topk_idx.stride(1),
        page_table.stride(0),
    )
    return tensors, scalars


# The query-outer form walks its blocks in pipelined sub-blocks of _Q_OUTER_SUB keys (see
# _sparse_attn_fwd_kernel; 0: whole blocks behind a branch per slot, the form before v30). Stages:
# _Q_OUTER_STAGES_DEEP (Triton 3.6 keeps two 64-key sub-blocks of K and V in flight, 71.7 KB of
# shared memory, 3 programs an SM) while the grid fits one wave of _Q_OUTER_DEEP_PROGRAMS_PER_SM
# an SM, else _Q_OUTER_STAGES (one in flight, 38.9 KB: more programs an SM). H200, M3 shapes, the
# kernel's us whole / 64 keys at 3 stages / at 5 (NOTES.md v30c): decode 64 x 128K (256 programs)
# 80.7 / 77.2 / 70.2, behind the suite's matmul lead 98.3 / 92.8 / 77.4; MTP 8 x 128K q 8 76.0 /
# 73.6 / 65.8; a 1024-token chunk after 32K (4096 programs) 826.6 / 528.1 / 561.7.
_Q_OUTER_SUB = 64
_Q_OUTER_STAGES = 3
_Q_OUTER_STAGES_DEEP = 5
_Q_OUTER_DEEP_PROGRAMS_PER_SM = 3


def q_outer_launch(total_q: int, hkv: int, block_size: int, device) -> tuple:
    """(keys per sub-block, num_stages) of the query-outer form, from shapes only (sub-block 0:
    whole blocks at Triton's default stages; see _Q_OUTER_SUB)."""
    if _Q_OUTER_SUB not in (0, 16, 32, 64, 128):
        raise ValueError(f"main_branch._Q_OUTER_SUB: expected one of 0, 16, 32, 64, 128, got {_Q_OUTER_SUB!r}")
    sub = min(_Q_OUTER_SUB, block_size)
    if not sub:
        return 0, None
    deep = total_q * hkv <= _Q_OUTER_DEEP_PROGRAMS_PER_SM * num_sms(device)
    return sub, _Q_OUTER_STAGES_DEEP if deep else _Q_OUTER_STAGES


def launch_q_outer(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, token_req, out, lse,
                   num_warps=None, num_stages=None, pdl=False):
    """Query-outer form into ``out``/``lse``: one launch, no workspace, no synchronisation.
    ``pdl``: programmatic dependent launch, as in index_branch.launch_index."""
    total_q, hq, d = q.shape
    hkv = k_cache.shape[2]
    g = hq // hkv
    tensors, scalars = _block_args(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config,
                                   token_req)
    sub, stages = q_outer_launch(total_q, hkv, config.block_size, q.device)
    _sparse_attn_fwd_kernel[(total_q, hkv)](
        *tensors, out, lse, *scalars, out.stride(0), out.stride(1),
        G=g, G_P=max(16, triton.next_power_of_2(g)), D=d, D_P=max(16, triton.next_power_of_2(d)),
        BLOCK=config.block_size, TOPK=config.topk, IEEE=q.dtype == torch.float32, USE_PDL=pdl_mode(pdl, "q_outer"),
        SUB=sub, **launch_options(num_warps, stages if num_stages is None else num_stages, pdl_mode(pdl, "q_outer") > 0),
    )


# The split form's slot kernel: where an SM runs several slot programs (total_q x Hkv x topk above
# the SM count: batch 8, multi-token steps), each walks its block in sub-blocks of _SLOT_SUB_KEYS
# keys with an online softmax, a loop Triton pipelines (_SLOT_STAGES stages: K and V go to shared
# memory asynchronously, not through registers); with at most one program an SM (batch 1-2) the
# whole block as one tile is as fast or faster. H100, M3 shapes, step us whole / sub-blocks: 8 x
# 128K 120.7 / 118.3 (bf16 keys), 81.6 / 78.9 (8-bit keys); 1 x 128K with 8 query tokens 47.2 /
# 44.8; batch 1 and 2 ties or 0.1-0.4 us slower (benchmarks/NOTES.md v16). None: that rule; an
# int: sub-blocks of that many keys always (0: never; tests and A/B studies).
_SLOT_SUB = None
_SLOT_SUB_KEYS = 64
_SLOT_STAGES = 3


def slot_sub(total_q: int, hkv: int, topk: int, block_size: int, device) -> int:
    """Keys per sub-block of the split form's slot kernel (0: the whole block; see _SLOT_SUB)."""
    if _SLOT_SUB is not None:
        if _SLOT_SUB not in (0, 16, 32, 64, 128):
            raise ValueError(f"main_branch._SLOT_SUB: expected None or one of 0, 16, 32, 64, 128, got {_SLOT_SUB!r}")
        sub = _SLOT_SUB
    else:
        sub = _SLOT_SUB_KEYS if total_q * hkv * topk > num_sms(device) else 0
    return min(sub, block_size)


def split_workspace(total_q, hq, d, topk, device):
    """Partial outputs and base-2 LSEs of the split form: fp32 ``[total_q * Hq * topk, D]`` and
    ``[total_q * Hq * topk]`` (entry ``(t * Hkv + g) * topk + slot``, then the G heads)."""
    rows = total_q * hq * topk
    return (torch.empty(rows, d, dtype=torch.float32, device=device),
            torch.empty(rows, dtype=torch.float32, device=device))


def launch_split(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, token_req, out, lse,
                 o_part, lse_part, num_warps=None, num_stages=None, pdl=False, select=None):
    """Split form into preallocated buffers (see :func:`split_workspace`): no allocation, no
    synchronisation, launch shapes from shapes only. ``pdl``: programmatic dependent launch, as
    in index_branch.launch_index. ``select``: ``(part_keys, index_plan)`` when the index branch
    ran without its finalize kernel (``launch_index(..., finalize=False)``): the slot kernel
    then merges the partial lists itself and writes the selection into ``topk_idx``."""
    total_q, hq, d = q.shape
    hkv = k_cache.shape[2]
    g = hq // hkv
    g_p = max(16, triton.next_power_of_2(g))
    d_p = max(16, triton.next_power_of_2(d))
    tensors, scalars = _block_args(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config,
                                   token_req)
    sel_args = {}
    if select is not None:
        part_keys, plan = select
        sel_args = dict(SELECT=1, **plan.merge_constexprs(config))
    sub = slot_sub(total_q, hkv, config.topk, config.block_size, q.device)
    _slot_partial_kernel[(total_q, hkv, config.topk)](
        *tensors, o_part, lse_part, *scalars,
        part_keys if select is not None else topk_idx, plan.n_split if select is not None else 1,
        HKV=hkv, G=g, G_P=g_p, D=d, D_P=d_p, BLOCK=config.block_size, TOPK=config.topk,
        IEEE=q.dtype == torch.float32, USE_PDL=pdl_mode(pdl, "slot_partial"), SUB=sub, **sel_args,
        **launch_options(num_warps, num_stages if num_stages is not None or not sub else _SLOT_STAGES,
                         pdl_mode(pdl, "slot_partial") > 0),
    )
    _merge_heads_kernel[(total_q, hq)](
        o_part, lse_part, out, lse,
        out.stride(0), out.stride(1),
        HQ=hq, G=g, D=d, D_P=d_p, TOPK=config.topk, TOPK_P=triton.next_power_of_2(config.topk), USE_PDL=pdl_mode(pdl, "merge_heads"),
        **launch_options(None, None, pdl_mode(pdl, "merge_heads") > 0),
    )


def tile_queries(g_p: int, tile_rows: int) -> int:
    """Query tokens a tile of ``tile_rows`` rows of queries x ``g_p`` heads (the group padded to a
    power of two) holds, the KV-outer and dense tiles alike: at least one, and 16 rows."""
    mq = max(1, tile_rows // g_p)
    return 16 // g_p if mq * g_p < 16 else mq


def _kv_outer(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, token_req, out, lse,
              workspace_bytes, num_warps, num_stages, stop_after=None, tile_rows=128, q_window=None, dense=False):
    total_q, hq, d = q.shape
    hkv = k_cache.shape[2]
    g = hq // hkv
    batch, max_pages = page_table.shape
    topk = config.topk
    g_p = triton.next_power_of_2(g)
    mq = tile_queries(g_p, tile_rows)
    d_p = max(16, triton.next_power_of_2(d))
    per_row_group = g * topk * (d * q.element_size() + 4)  # partial outputs + LSEs of one (query row, group)
    passes = kv_outer_passes(total_q, hkv, per_row_group, workspace_bytes, mq)
    scale = config.resolved_softmax_scale(d) * _LOG2E
    n_ws = max((hi - lo) * ng for lo, hi, _, ng in passes)  # (query row, group) pairs of the largest pass
    if q_window is None:
        q_window = kv_outer_q_window(batch, max_pages, config.block_size, d, k_cache.element_size())
    sub = kv_outer_sub(total_q, max_pages, config.block_size)
    o_part = torch.empty(n_ws * topk * g, d, dtype=q.dtype, device=q.device)
    lse_part = torch.empty(n_ws * topk * g, dtype=torch.float32, device=q.device)

    def build(i):
        row_lo, row_hi, g_lo, ng = passes[i]
        return build_block_tiles(topk_idx, cu_seqlens_q, seq_lens_k, token_req, row_lo, row_hi, batch, max_pages,
                                 config.block_size, mq, page_table, k_cache.shape[0], q_window, g_lo, ng,
                                 skip_dense=dense)

    # (launch settings of the Triton kernel asked for explicitly keep it: the A/B studies' knobs)
    use_ws = (_KV_WS and num_warps is None and num_stages is None and _KV_SUB is None
              and kv_outer_ws.ws_supported(q, k_cache, v_cache, g, config.block_size, mq))

    descs = kv_outer_ws.make_descriptors(q, k_cache, v_cache, o_part) if use_ws else None  # once a call

    def run(tiles):  # one pass: its tiles' partial outputs, then their merge
        row_lo, row_hi, g_lo, ng = tiles.row_lo, tiles.row_hi, tiles.g_lo, tiles.ng
        if use_ws:
            kv_outer_ws.launch_kv_outer_ws(q, k_cache, v_cache, tiles, o_part, lse_part, scale, topk, mq,
                                           num_sms(q.device), descs)
        else:
            _kv_outer_partial_kernel[(tiles.grid,)](
                q, k_cache, v_cache, tiles.tile_entries, tiles.tile_info,
                o_part, lse_part,
                scale, row_lo,
                q.stride(0), q.stride(1),
                k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
                v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
                NG=ng, G=g, G_P=g_p, MQ=mq, D=d, D_P=d_p, BLOCK=config.block_size, TOPK=topk,
                IEEE=q.dtype == torch.float32, SUB=sub,
                **launch_options(8 if num_warps is None else num_warps,
                                 num_stages if num_stages is not None or not sub else _KV_SUB_STAGES),
            )
        if stop_after == "partial":
            return
        _merge_slots_kernel[(row_hi - row_lo, ng)](
            o_part, lse_part, topk_idx, seq_lens_k, cu_seqlens_q, token_req,
            out, lse,
            row_lo, g_lo,
            topk_idx.stride(0), topk_idx.stride(1),
            out.stride(0), out.stride(1),
            HKV=hkv, NG=ng, G=g, G_P=g_p, D=d, D_P=d_p, BLOCK=config.block_size, TOPK=topk,
            TOPK_P=triton.next_power_of_2(topk), DENSE=int(dense),
        )

    side = _side_stream(q.device) if len(passes) > 1 and _KV_OVERLAP_BUILD and q.is_cuda else None
    main = torch.cuda.current_stream(q.device) if side is not None else None
    tiles_next = build(0)
    for i in range(len(passes)):
        tiles, tiles_next, built = tiles_next, None, None
        if side is not None and i + 1 < len(passes):  # the next pass's tiles built beside this pass
            side.wait_stream(main)
            with torch.cuda.stream(side):
                tiles_next = build(i + 1)
                built = side.record_event()
            tiles_next.tile_info.record_stream(main)
            tiles_next.tile_entries.record_stream(main)
        if stop_after != "tiles":
            run(tiles)
        if built is not None:
            main.wait_event(built)
        elif i + 1 < len(passes):
            tiles_next = build(i + 1)


# Dense rows: a query whose own block is below topk selects every block up to it (MSA.md section
# 3), so msa_attention (whose selection follows that rule) sends such rows to _dense_rows_kernel,
# a causal flash-attention tile over the paged cache, instead of the reverse index and per-slot
# partials of the KV-outer form; a call whose page table is at most topk blocks wide (every row
# dense) skips the index branch too. _DENSE_ROWS False: never (A/B studies). Tiles of
# _DENSE_TILE_ROWS rows (queries x G heads), sub-blocks of _DENSE_SUB keys (at most the block
# size), _DENSE_STAGES stages, _DENSE_WARPS warps. H100, M3 shapes, bf16 (benchmarks/NOTES.md
# v19): 64 rows / 64 keys / 3 stages / 4 warps (180 registers) 0.214 ms on the 2048 dense rows of
# a first chunk, 1.55-1.60 ms for 8 x 2048-token prompts, 0.68 for 32 x 512; 128 rows / 128 keys /
# 2 stages / 8 warps (243 registers) 0.212, 1.49, 0.72; 128 / 64 / 3 / 8 0.240, 1.68, 0.79.
_DENSE_ROWS = True
_DENSE_SUB = 64
_DENSE_STAGES = 3
# Calls whose page table spans at most _DENSE_ONE_STAGE_KEYS keys take one stage (no pipelining):
# 168 registers and 32 KB of shared memory a program (Triton 3.6, sm_90, M3 shapes, any BATCH_P;
# three stages: 181-184 and 81 KB) put three programs on an SM instead of two,
# and their tiles walk only a few sub-blocks. H100, M3 shapes, msa_attention ms 3 / 1 stages
# (benchmarks/NOTES.md v20b): 32 x 512 0.562 / 0.543, 64 x 256 0.446 / 0.378, 128 x 128 0.378 /
# 0.307, 256 x 64 0.381 / 0.313, 1024 x 16 0.407 / 0.320; 8 x 2048 1.581 / 1.668 (slower).
_DENSE_ONE_STAGE_KEYS = 512
_DENSE_WARPS = 4
_DENSE_TILE_ROWS = 64


def dense_rows_tiles(total_q: int, config, mq: int) -> int:
    """Tiles of ``mq`` queries a request in the dense kernel's grid, from shapes only: a request
    has at most min(total_q, topk * block_size) dense queries."""
    return triton.cdiv(min(total_q, config.topk * config.block_size), mq)


def dense_tile_queries(hq: int, hkv: int, tile_rows=None) -> int:
    """Queries a tile of the dense kernel (``tile_rows`` default _DENSE_TILE_ROWS)."""
    return tile_queries(triton.next_power_of_2(hq // hkv), _DENSE_TILE_ROWS if tile_rows is None else tile_rows)


# Calls of at most _DENSE_MAP_MAX_BATCH requests take the dense kernel's tile map (every program
# finds its request from all requests' lengths, BATCH_P in _dense_rows_kernel): a grid of at most
# the tiles a call can need, ceil(min(total_q, batch * topk * block_size) / tile queries) + batch.
# Larger calls give every request the tiles the longest one could need (shapes only): with many
# short requests most of those programs exit at once, so msa_attention takes the dense rows there
# only while that grid is at most _DENSE_MAX_WASTE times the tiles a call can need; measured up to
# ~4x (32 x 512-token prompts: 0.68 ms against 2.03 without dense rows, benchmarks/NOTES.md v19).
_DENSE_MAP_MAX_BATCH = 1024
_DENSE_MAX_WASTE = 4


def _dense_tiles_bound(total_q: int, batch: int, config, mq: int) -> int:
    """The most dense tiles a call can have: at most min(total_q, batch * topk * block_size)
    dense queries, each request's last tile maybe partial."""
    return triton.cdiv(min(total_q, batch * config.topk * config.block_size), mq) + batch


def every_row_dense(page_table, config) -> bool:
    """Whether every query of a call selects every block up to its own (MSA.md section 3), from
    shapes only: the page table is at most topk blocks wide, so no own block reaches topk."""
    return page_table.shape[1] <= config.topk


def dense_rows_pay(total_q: int, batch: int, hq: int, hkv: int, config) -> bool:
    """Whether msa_attention takes the dense rows for a call of these shapes (see _DENSE_ROWS,
    _DENSE_MAP_MAX_BATCH, _DENSE_MAX_WASTE)."""
    if not _DENSE_ROWS or total_q == 0:
        return False
    if batch <= _DENSE_MAP_MAX_BATCH:
        return True
    mq = dense_tile_queries(hq, hkv)
    return batch * dense_rows_tiles(total_q, config, mq) <= _DENSE_MAX_WASTE * _dense_tiles_bound(total_q, batch,
                                                                                                  config, mq)


def launch_dense_rows(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config, out, lse, num_warps=None,
                      num_stages=None, sub=None, tile_rows=None):
    """The dense rows of a call (see _dense_rows_kernel) into ``out``/``lse``; other rows are
    left as they are. One launch: no workspace, no metadata, no synchronisation."""
    total_q, hq, d = q.shape
    hkv = k_cache.shape[2]
    g = hq // hkv
    g_p = triton.next_power_of_2(g)
    mq = dense_tile_queries(hq, hkv, tile_rows)
    sub = min(config.block_size, _DENSE_SUB if sub is None else sub)
    batch = page_table.shape[0]
    n_tiles = dense_rows_tiles(total_q, config, mq)
    grid = batch * n_tiles
    batch_p = 0
    if batch <= _DENSE_MAP_MAX_BATCH:  # the tile map (see _dense_rows_kernel's BATCH_P)
        # at least 32: Triton 3.6 compiles the kernel for sm_90 to 242-247 registers with BATCH_P
        # 2 to 16, to 181-184 from 32 on (and with BATCH_P 1); masked lanes cost nothing
        batch_p = max(32, triton.next_power_of_2(batch))
        grid = min(grid, _dense_tiles_bound(total_q, batch, config, mq))
    if num_stages is None:
        num_stages = 1 if page_table.shape[1] * config.block_size <= _DENSE_ONE_STAGE_KEYS else _DENSE_STAGES
    _dense_rows_kernel[(grid, hkv)](
        q, k_cache, v_cache, page_table, seq_lens_k, cu_seqlens_q, out, lse,
        k_cache.shape[0], config.resolved_softmax_scale(d) * _LOG2E, n_tiles, batch,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        page_table.stride(0), out.stride(0), out.stride(1),
        G=g, G_P=g_p, MQ=mq, D=d, D_P=max(16, triton.next_power_of_2(d)), BLOCK=config.block_size, TOPK=config.topk,
        SUB=sub, IEEE=q.dtype == torch.float32, BATCH_P=batch_p,
        **launch_options(_DENSE_WARPS if num_warps is None else num_warps, num_stages),
    )


def sparse_attention(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, return_lse=False,
                     *, method=None, workspace_bytes=None, num_warps=None, num_stages=None, stop_after=None,
                     tile_rows=128, q_window=None, dense_rows=False, token_req=None):
    """Kernel behind msa_sgl.sparse_attention and msa_attention (arguments already validated).

    ``method``: ``"kv_outer"``, ``"q_outer"``, ``"split"`` or None (by the number of queries,
    from shapes only); the keyword options override the launch heuristics (tests, benchmarks);
    ``stop_after`` ("tiles" or "partial") stops the KV-outer form early, to time its stages;
    ``q_window`` sets its query windows (0: none; None: kv_outer_q_window's rule).
    ``dense_rows``: the selection follows the contract (``topk_idx`` lists every block of a query
    whose own block is below topk), so those rows may take the dense kernel: with the KV-outer
    form, or for every row when the page table is at most topk blocks wide (``topk_idx`` is then
    not read and may be None). ``token_req``: metadata.token_requests of the call, where the
    caller has it already (msa_attention: the index branch's).
    """
    if method not in (None, "kv_outer", "q_outer", "split"):
        raise ValueError(f"method: expected 'kv_outer', 'q_outer', 'split' or None, got {method!r}")
    total_q, hq, d = q.shape
    out = torch.empty(total_q, hq, d, dtype=q.dtype, device=q.device)
    lse = torch.empty(total_q, hq, dtype=torch.float32, device=q.device)
    if total_q:
        if dense_rows and every_row_dense(page_table, config):
            launch_dense_rows(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config, out, lse)
            return (out, lse) if return_lse else out
        if topk_idx is None:
            raise ValueError("topk_idx: expected a tensor unless every row is dense (dense_rows and a page table "
                             f"at most topk = {config.topk} blocks wide), got None with {page_table.shape[1]} blocks")
        if token_req is None:
            token_req = token_requests(cu_seqlens_q, total_q)
        if method is None:
            method = choose_method(total_q, k_cache.shape[2], q.device)
        if method == "kv_outer":
            if dense_rows:
                launch_dense_rows(q, k_cache, v_cache, page_table, cu_seqlens_q, seq_lens_k, config, out, lse)
            _kv_outer(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, token_req, out, lse,
                      workspace_bytes or KV_OUTER_WORKSPACE_BYTES, num_warps, num_stages, stop_after, tile_rows,
                      q_window, dense_rows)
        elif method == "q_outer":
            launch_q_outer(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, token_req, out, lse,
                     num_warps, num_stages)
        elif method == "split":
            o_part, lse_part = split_workspace(total_q, hq, d, config.topk, q.device)
            launch_split(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, token_req, out,
                         lse, o_part, lse_part, num_warps, num_stages)
    return (out, lse) if return_lse else out
