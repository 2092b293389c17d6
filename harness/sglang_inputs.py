"""SGLang-shaped inputs: flat token-slot pools plus ``req_to_token``, and back to page tables.

SGLang (page size == MSA block size) stores K, V and index keys per token slot:
``k_buffer [num_slots, Hkv, D]``, ``index_k_buffer [num_slots, d_idx]``; request ``b`` lives in
row ``req_pool_indices[b]`` of ``req_to_token [max_reqs, max_context]`` (slot of every position),
and this call's new tokens were written at ``out_cache_loc``. :func:`to_sglang` lays a
:class:`harness.problems.Problem` out that way (rows shuffled, unused rows and columns filled
with junk slots); :func:`msa_args_from_sglang` rebuilds msa_sgl's arguments from it with the
package's own zero-copy helpers, the path the SGLang backend takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from msa_sgl import MSAConfig, page_table_from_req_to_token, paged_view

from .problems import Problem


@dataclass
class SGLangBatch:
    q: torch.Tensor  # [total_q, Hq, D]
    q_idx: torch.Tensor  # [total_q, Hkv, d_idx]
    k_buffer: torch.Tensor  # [num_slots, Hkv, D]
    v_buffer: torch.Tensor  # [num_slots, Hkv, D]
    index_k_buffer: torch.Tensor  # [num_slots, d_idx]
    req_to_token: torch.Tensor  # int32 [max_reqs, max_context]
    req_pool_indices: torch.Tensor  # int64 [batch]
    seq_lens: torch.Tensor  # int32 [batch]: keys including this call's tokens
    extend_prefix_lens: torch.Tensor  # int32 [batch]: keys already cached before this call
    extend_seq_lens: torch.Tensor  # int32 [batch]: this call's new tokens (= q_len)
    out_cache_loc: torch.Tensor  # int64 [total_q]: slots of this call's new tokens
    config: MSAConfig


def to_sglang(problem: Problem, seed: int = 0, spare_rows: int = 2, spare_cols: int = 3) -> SGLangBatch:
    a = problem.args()
    B = problem.config.block_size
    batch = len(problem.requests)
    gen = torch.Generator().manual_seed(seed)
    num_slots = a["k_cache"].shape[0] * B
    max_reqs = batch + spare_rows
    max_context = (a["page_table"].shape[1] + spare_cols) * B + 5  # like SGLang's context_len + 4: no page multiple
    # junk everywhere a request has no token (SGLang leaves stale slots there)
    req_to_token = torch.randint(0, max(num_slots, 1), (max_reqs, max_context), generator=gen).to(torch.int32)
    rows = torch.randperm(max_reqs, generator=gen)[:batch]
    out_cache_loc = []
    for b, (q_len, seq_len) in enumerate(zip(problem.q_lens, problem.seq_lens)):
        pos = torch.arange(seq_len)
        slots = a["page_table"][b, pos // B].to(torch.int64) * B + pos % B
        req_to_token[rows[b], :seq_len] = slots.to(torch.int32)
        out_cache_loc.append(slots[seq_len - q_len :])
    q_lens = torch.tensor(problem.q_lens, dtype=torch.int32)
    seq_lens = a["seq_lens_k"].clone()
    return SGLangBatch(
        q=a["q"],
        q_idx=a["q_idx"],
        k_buffer=a["k_cache"].reshape(num_slots, *a["k_cache"].shape[2:]),
        v_buffer=a["v_cache"].reshape(num_slots, *a["v_cache"].shape[2:]),
        index_k_buffer=a["k_idx_cache"].reshape(num_slots, a["k_idx_cache"].shape[2]),
        req_to_token=req_to_token,
        req_pool_indices=rows.to(torch.int64),
        seq_lens=seq_lens,
        extend_prefix_lens=seq_lens - q_lens,
        extend_seq_lens=q_lens,
        out_cache_loc=torch.cat(out_cache_loc) if out_cache_loc else torch.empty(0, dtype=torch.int64),
        config=problem.config,
    )


def msa_args_from_sglang(batch: SGLangBatch) -> dict:
    """msa_attention keyword arguments from an SGLang-shaped batch (views, no copies of the pools)."""
    B = batch.config.block_size
    max_pages = -(-batch.req_to_token.shape[1] // B)  # every block that starts inside the map
    cu = torch.zeros(batch.extend_seq_lens.numel() + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(batch.extend_seq_lens, 0)
    return {
        "q": batch.q,
        "k_cache": paged_view(batch.k_buffer, B),
        "v_cache": paged_view(batch.v_buffer, B),
        "q_idx": batch.q_idx,
        "k_idx_cache": paged_view(batch.index_k_buffer, B),
        "page_table": page_table_from_req_to_token(batch.req_to_token, batch.req_pool_indices, B, max_pages),
        "cu_seqlens_q": cu,
        "seq_lens_k": batch.seq_lens,
        "config": batch.config,
    }
