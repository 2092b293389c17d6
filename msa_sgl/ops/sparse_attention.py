"""Main branch: exact softmax attention over each (token, group)'s selected blocks, in Triton.

Version 1, query-outer: one program per (query token, KV group) holds the group's G query
heads as the rows of one tile (padded to 16 for the tensor cores), walks the token's top-k
slots, loads each selected K/V block once for all G heads, and runs an online softmax in base 2
(the scale and log2(e) folded into one multiplier). Only the query's own block can hold keys
past the query, so only it is masked. A slot is skipped when its id is negative or past the
query's own block (it would attend nothing); an id listed twice counts twice, as in the
reference. Output and natural-log LSE; a row that attends nothing gets 0 and -inf.

The key-value-outer form of the MSA paper (one load of a block for every query that chose it)
is the next version; see benchmarks/NOTES.md.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .index_topk import _launch_options
from .metadata import token_requests

_LOG2E = 1.4426950408889634


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
    BLOCK: tl.constexpr, TOPK: tl.constexpr, IEEE: tl.constexpr,
):
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
    for s in range(TOPK):
        blk = tl.load(p_sel + s)
        if (blk >= 0) & (blk <= p):
            page = tl.load(pt_row + blk)
            page = tl.minimum(tl.maximum(page, 0), num_pages - 1).to(tl.int64)
            o_key = blk * BLOCK + o_j
            m_key = o_key <= pos  # only the own block holds invisible keys
            p_k = K + page * stride_kp + o_j[None, :] * stride_kb + i_g * stride_kh + o_d[:, None]
            b_k = tl.load(p_k, mask=m_key[None, :] & m_d[:, None], other=0.0)  # [D_P, BLOCK]
            if IEEE:
                b_s = tl.dot(b_q, b_k, input_precision="ieee")
            else:
                b_s = tl.dot(b_q, b_k)  # [G_P, BLOCK] fp32
            b_s = tl.where(m_key[None, :], b_s * qk_scale, float("-inf"))
            m_new = tl.maximum(b_m, tl.max(b_s, axis=1))  # finite: key blk*BLOCK <= pos is visible
            alpha = tl.exp2(b_m - m_new)
            b_p = tl.exp2(b_s - m_new[:, None])
            b_l = b_l * alpha + tl.sum(b_p, axis=1)
            p_v = V + page * stride_vp + o_j[:, None] * stride_vb + i_g * stride_vh + o_d[None, :]
            b_v = tl.load(p_v, mask=m_key[:, None] & m_d[None, :], other=0.0)  # [BLOCK, D_P]
            if IEEE:
                b_acc = b_acc * alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v, input_precision="ieee")
            else:
                b_acc = b_acc * alpha[:, None] + tl.dot(b_p.to(b_v.dtype), b_v)
            b_m = m_new
    has = b_l > 0
    b_o = b_acc / tl.where(has, b_l, 1.0)[:, None]
    p_o = OUT + i_t64 * stride_ot + (i_g * G + o_h)[:, None] * stride_oh + o_d[None, :]
    tl.store(p_o, b_o.to(OUT.dtype.element_ty), mask=m_h[:, None] & m_d[None, :])
    # natural-log LSE: (m + log2 l) / log2(e)
    b_lse = tl.where(has, (b_m + tl.log2(tl.where(has, b_l, 1.0))) * 0.6931471805599453, float("-inf"))
    tl.store(LSE + i_t64 * (G * tl.num_programs(1)) + i_g * G + o_h, b_lse, mask=m_h)


def sparse_attention(q, k_cache, v_cache, topk_idx, page_table, cu_seqlens_q, seq_lens_k, config, return_lse=False,
                     *, num_warps=None, num_stages=None):
    """Kernel behind msa_sgl.sparse_attention (arguments already validated). The keyword
    options override the launch heuristics (benchmarks)."""
    total_q, hq, d = q.shape
    hkv = k_cache.shape[2]
    g = hq // hkv
    out = torch.empty(total_q, hq, d, dtype=q.dtype, device=q.device)
    lse = torch.empty(total_q, hq, dtype=torch.float32, device=q.device)
    if total_q:
        scale = config.resolved_softmax_scale(d) * _LOG2E
        _sparse_attn_fwd_kernel[(total_q, hkv)](
            q, k_cache, v_cache, topk_idx, page_table, seq_lens_k, cu_seqlens_q, token_requests(cu_seqlens_q, total_q),
            out, lse,
            k_cache.shape[0], scale,
            q.stride(0), q.stride(1),
            k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
            v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
            topk_idx.stride(0), topk_idx.stride(1),
            page_table.stride(0),
            out.stride(0), out.stride(1),
            G=g, G_P=max(16, triton.next_power_of_2(g)), D=d, D_P=max(16, triton.next_power_of_2(d)),
            BLOCK=config.block_size, TOPK=config.topk, IEEE=q.dtype == torch.float32,
            **_launch_options(num_warps, num_stages),
        )
    return (out, lse) if return_lse else out
