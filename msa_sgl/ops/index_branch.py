"""Index branch: exp-free block scoring and top-k selection (MSA.md section 3), in Triton.

Two kernels, no ``[tokens, blocks]`` score matrix in memory:

1. ``_index_partial_kernel``, grid ``(request-aligned token tiles, splits)``: one program
   stacks the index queries of ``BLOCK_T`` tokens x all ``Hkv`` groups into one tile of
   ``BLOCK_T * HKV_P`` rows (all groups read the same index-key head, so each key block is
   loaded once for all of them), walks its share of the candidate blocks, scores each block
   ``max_j <q, k_j>`` with one tensor-core product, and keeps a running top-``KF`` list per row
   on chip. Only non-forced candidates (``n_init <= b <= p - n_local``) enter the list; they
   hold only visible keys, so no causal mask is needed in the loop. The index scale is positive
   and does not change a row's ranking, so it is never applied. Output: per split, the list
   ``[n_split, total_q, Hkv, KF]`` (scores fp32, ids int32).
2. ``_index_finalize_kernel``, grid over ``(token, group)`` rows: merges the splits' lists
   with the same total order (score descending, then block id ascending), adds the forced
   init and local blocks, and writes the ascending ids with the ``-1`` tail.

Extra memory: O(n_split x total_q x Hkv x KF). Ties: equal scores go to the lower block id,
exactly, because every insertion compares (score, id) pairs; bitwise-equal scores therefore
select as the reference does, and scores that differ only by fp32 rounding are genuine ties.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .metadata import build_tile_map, find_tile_request, launch_options, token_requests

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
def _index_partial_kernel(
    Q, K, PAGE_TABLE, SEQ_LENS, CU_SEQLENS, TILE_CUM,
    OUT_S, OUT_I,
    batch, num_pages, total_q,
    stride_qt, stride_qh,
    stride_kp, stride_kb,
    stride_pt_b,
    n_split,
    HKV: tl.constexpr, HKV_P: tl.constexpr, BLOCK_T: tl.constexpr,
    D: tl.constexpr, D_P: tl.constexpr, BLOCK: tl.constexpr,
    N_INIT: tl.constexpr, N_LOCAL: tl.constexpr, K_FREE: tl.constexpr, KF: tl.constexpr,
    SEARCH_STEPS: tl.constexpr, IEEE: tl.constexpr,
):
    pid = tl.program_id(0)
    i_split = tl.program_id(1)
    if pid >= tl.load(TILE_CUM + batch):
        return
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

    # the tile's candidate range [N_INIT, hi), split evenly
    hi = tl.max(last_cand, axis=0) + 1
    n_cand = tl.maximum(hi - N_INIT, 0)
    per_split = (n_cand + n_split - 1) // n_split
    b_lo = N_INIT + i_split * per_split
    b_hi = tl.minimum(b_lo + per_split, hi)

    o_d = tl.arange(0, D_P)
    tok = (q_start + o_t).to(tl.int64)
    p_q = Q + tok[:, None] * stride_qt + o_g[:, None] * stride_qh + o_d[None, :]
    b_q = tl.load(p_q, mask=m_r[:, None] & (o_d[None, :] < D), other=0.0)  # [R, D_P]

    top_s, top_i = _empty_list(R, KF, K_FREE)
    o_j = tl.arange(0, BLOCK)
    pt_row = PAGE_TABLE + i_b.to(tl.int64) * stride_pt_b
    for b in range(b_lo, b_hi):
        page = tl.load(pt_row + b)
        page = tl.minimum(tl.maximum(page, 0), num_pages - 1).to(tl.int64)  # clamp: never outside the cache
        p_k = K + page * stride_kp + o_j[None, :] * stride_kb + o_d[:, None]
        b_k = tl.load(p_k, mask=o_d[:, None] < D, other=0.0)  # [D_P, BLOCK]
        if IEEE:
            b_s = tl.dot(b_q, b_k, input_precision="ieee")  # [R, BLOCK] fp32
        else:
            b_s = tl.dot(b_q, b_k)
        m_b = tl.max(b_s, axis=1)  # [R]: block max-logit (unscaled)
        top_s, top_i = _topk_insert(top_s, top_i, m_b, b + tl.zeros([R], dtype=tl.int32), b <= last_cand)

    o_k = tl.arange(0, KF)
    row = (tok * HKV + o_g)[:, None]
    off = (i_split.to(tl.int64) * total_q * HKV + row) * KF + o_k[None, :]
    m_out = m_r[:, None] & (o_k[None, :] < KF)
    tl.store(OUT_S + off, top_s, mask=m_out)
    tl.store(OUT_I + off, top_i, mask=m_out)


@triton.jit
def _index_finalize_kernel(
    IN_S, IN_I, OUT, TOKEN_REQ, SEQ_LENS, CU_SEQLENS,
    total_rows, total_q, n_split,
    HKV: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK: tl.constexpr,
    TOPK: tl.constexpr, TOPK_P: tl.constexpr,
    N_INIT: tl.constexpr, N_LOCAL: tl.constexpr, K_FREE: tl.constexpr, KF: tl.constexpr,
):
    o_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # row = token * HKV + group
    m_r = o_r < total_rows
    tok = tl.where(m_r, o_r // HKV, 0)
    i_b = tl.load(TOKEN_REQ + tok, mask=m_r, other=0)
    q_start = tl.load(CU_SEQLENS + i_b, mask=m_r, other=0)
    q_len = tl.load(CU_SEQLENS + i_b + 1, mask=m_r, other=0) - q_start
    seq_len = tl.load(SEQ_LENS + i_b, mask=m_r, other=1)
    p = (seq_len - q_len + tok - q_start) // BLOCK  # [BLOCK_R]

    o_k = tl.arange(0, KF)
    rows64 = o_r.to(tl.int64)
    if n_split == 1:
        top_i = tl.load(IN_I + rows64[:, None] * KF + o_k[None, :], mask=m_r[:, None], other=-1)
    else:
        top_s, top_i = _empty_list(BLOCK_R, KF, K_FREE)
        for s in range(n_split):
            base = (s * total_q * HKV + rows64) * KF
            for k in tl.static_range(KF):
                c_s = tl.load(IN_S + base + k, mask=m_r, other=float("-inf"))
                c_i = tl.load(IN_I + base + k, mask=m_r, other=-1)
                top_s, top_i = _topk_insert(top_s, top_i, c_s, c_i, m_r & (c_i >= 0))
    used = (o_k[None, :] < K_FREE) & (top_i >= 0)  # [BLOCK_R, KF]
    # rank of every chosen id among the row's chosen ids (ascending)
    rank = tl.sum((top_i[:, None, :] < top_i[:, :, None]) & used[:, None, :], axis=2)  # [BLOCK_R, KF]

    o_c = tl.arange(0, TOPK_P)  # output column
    col = o_c[None, :] + tl.zeros([BLOCK_R, TOPK_P], dtype=tl.int32)
    pick = (rank[:, None, :] == (col - N_INIT)[:, :, None]) & used[:, None, :]  # [BLOCK_R, TOPK_P, KF]
    free_id = tl.sum(tl.where(pick, top_i[:, None, :], 0), axis=2)  # [BLOCK_R, TOPK_P]
    local_id = p[:, None] - (TOPK - 1 - col)
    sparse_row = tl.where(col < N_INIT, col, tl.where(col >= TOPK - N_LOCAL, local_id, free_id))
    dense_row = tl.where(col <= p[:, None], col, -1)  # p + 1 <= TOPK: every block 0..p
    out = tl.where((p + 1 <= TOPK)[:, None], dense_row, sparse_row)
    tl.store(OUT + rows64[:, None] * TOPK + col, out, mask=m_r[:, None] & (col < TOPK))


def _num_sms(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 4


def index_topk(q_idx, k_idx_cache, page_table, cu_seqlens_q, seq_lens_k, config, *, block_t=None, n_split=None,
               num_warps=None, num_stages=None):
    """Kernel behind msa_sgl.index_topk (arguments already validated). Returns int32
    ``[total_q, Hkv, topk]``. The keyword options override the launch heuristics (benchmarks)."""
    total_q, hkv, d = q_idx.shape
    batch, max_pages = page_table.shape
    B, topk = config.block_size, config.topk
    k_free = topk - config.num_init_blocks - config.num_local_blocks
    kf = max(1, triton.next_power_of_2(k_free))
    hkv_p = triton.next_power_of_2(hkv)
    out = torch.empty(total_q, hkv, topk, dtype=torch.int32, device=q_idx.device)
    if total_q == 0:
        return out
    if block_t is None:  # rows = tokens x groups; at least 16 rows for the tensor cores
        # 128 rows, 8 warps: 562 TF/s at M3 shapes, 16K chunk after 112K (H200, 2026-11-26),
        # against 390 for 64 rows / 4 warps and 456 for 256 rows (benchmarks/NOTES.md)
        rows = 128 if total_q >= 4 * batch * 32 else 16
        block_t = max(1, rows // hkv_p)
        if num_warps is None:
            num_warps = 8 if rows >= 128 else 4
    tiles = build_tile_map(cu_seqlens_q, total_q, block_t)
    if n_split is None:  # enough programs to fill the chip, bounded by the blocks to walk
        want = triton.cdiv(2 * _num_sms(q_idx.device), max(1, tiles.grid_tiles))
        n_split = max(1, min(want, triton.cdiv(max_pages, 8), 64))
    part_s = torch.empty(n_split, total_q, hkv, kf, dtype=torch.float32, device=q_idx.device)
    part_i = torch.empty(n_split, total_q, hkv, kf, dtype=torch.int32, device=q_idx.device)
    _index_partial_kernel[(tiles.grid_tiles, n_split)](
        q_idx, k_idx_cache, page_table, seq_lens_k, cu_seqlens_q, tiles.tile_cum,
        part_s, part_i,
        batch, k_idx_cache.shape[0], total_q,
        q_idx.stride(0), q_idx.stride(1),
        k_idx_cache.stride(0), k_idx_cache.stride(1),
        page_table.stride(0),
        n_split,
        HKV=hkv, HKV_P=hkv_p, BLOCK_T=block_t, D=d, D_P=max(16, triton.next_power_of_2(d)), BLOCK=B,
        N_INIT=config.num_init_blocks, N_LOCAL=config.num_local_blocks, K_FREE=k_free, KF=kf,
        SEARCH_STEPS=max(1, batch.bit_length()), IEEE=q_idx.dtype == torch.float32,
        **launch_options(num_warps, num_stages),
    )
    block_r = 32
    rows = total_q * hkv
    _index_finalize_kernel[(triton.cdiv(rows, block_r),)](
        part_s, part_i, out, token_requests(cu_seqlens_q, total_q), seq_lens_k, cu_seqlens_q,
        rows, total_q, n_split,
        HKV=hkv, BLOCK_R=block_r, BLOCK=B, TOPK=topk, TOPK_P=triton.next_power_of_2(topk),
        N_INIT=config.num_init_blocks, N_LOCAL=config.num_local_blocks, K_FREE=k_free, KF=kf,
    )
    return out
