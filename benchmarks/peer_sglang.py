"""SGLang 0.5.23's built-in MiniMax sparse Triton kernels as a peer: same inputs, same process.

They are called as SGLang's MiniMax backend calls them on CUDA (minimax_sparse_prefill /
minimax_sparse_decode: block_size_q 1, score "max", no sink, no index value, page size = block
size), on msa_sgl's problem laid out as SGLang's flat slot pools + req_to_token (zero-copy
views of the same caches). Needs the sglang wheel installed with --no-deps plus its small
pure-Python imports (see benchmarks/README.md).
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("SGLANG_OPT_USE_MINIMAX_DECODE_TOPK_RADIX", "0")  # the Triton top-k (no JIT toolchain)


def load():
    """The four SGLang entry points and get_cu_seqblocks, or None with the import error."""
    try:
        from sglang.kernels.ops.attention.minimax_sparse.common.utils import get_cu_seqblocks
        from sglang.kernels.ops.attention.minimax_sparse.decode import flash_with_topk_idx as dec_idx
        from sglang.kernels.ops.attention.minimax_sparse.decode import topk_sparse as dec_attn
        from sglang.kernels.ops.attention.minimax_sparse.prefill import flash_with_topk_idx as pf_idx
        from sglang.kernels.ops.attention.minimax_sparse.prefill import topk_sparse as pf_attn
    except Exception as e:  # noqa: BLE001
        return None, repr(e)[:300]
    return dict(get_cu_seqblocks=get_cu_seqblocks, pf_idx=pf_idx.flash_prefill_with_topk_index,
                pf_attn=pf_attn.flash_prefill_with_gqa_share_sparse, dec_idx=dec_idx.flash_decode_with_topk_idx,
                dec_attn=dec_attn.flash_decode_with_gqa_share_sparse), None


class SGLangCall:
    """One msa_sgl BigProblem seen through SGLang's layout."""

    def __init__(self, sg, prob):
        a, cfg = prob.args, prob.config
        B = cfg.block_size
        self.sg, self.prob, self.B = sg, prob, B
        pages, _, hkv, d = a["k_cache"].shape
        self.k = a["k_cache"].view(pages * B, hkv, d)
        self.v = a["v_cache"].view(pages * B, hkv, d)
        self.idx_k = a["k_idx_cache"].view(pages * B, 1, a["k_idx_cache"].shape[2])
        table = a["page_table"].long()
        max_ctx = table.shape[1] * B
        pos = torch.arange(max_ctx, device=table.device)
        self.req_to_token = (table[:, pos // B] * B + pos % B).to(torch.int32).contiguous()
        self.slot_ids = torch.arange(table.shape[0], device=table.device, dtype=torch.int64)
        self.cu = a["cu_seqlens_q"]
        self.seq_lens = a["seq_lens_k"]
        q_lens = prob.q_lens
        self.prefix = torch.tensor([s - q for s, q in zip(prob.seq_lens, q_lens)], dtype=torch.int32,
                                   device=table.device)
        self.max_q, self.max_k = max(q_lens), max(prob.seq_lens)
        self.q_lens = q_lens
        self.hkv, self.topk = hkv, cfg.topk
        self.init, self.local = cfg.num_init_blocks, cfg.num_local_blocks

    # prefill ---------------------------------------------------------------------------------
    def prefill_indexer(self):
        if not hasattr(self, "blocks"):
            self.blocks = self.sg["get_cu_seqblocks"](self.cu, self.max_q, 1, self.B, list(self.q_lens))
        cu_b, max_b, all_b = self.blocks[:3]
        a = self.prob.args
        _, topk = self.sg["pf_idx"](
            q=a["q_idx"], k_cache=self.idx_k, v_cache=None, sink=None, req_to_token=self.req_to_token,
            slot_ids=self.slot_ids, cu_seqlens=self.cu, seq_lens=self.seq_lens, prefix_lens=self.prefix,
            max_seqlen_q=self.max_q, max_seqlen_k=self.max_k, block_size_q=1, block_size_k=self.B, topk=self.topk,
            init_blocks=self.init, local_blocks=self.local, sm_scale=None, score_type="max",
            disable_index_value=True, cu_seqblocks_q=cu_b, max_seqblock_q=max_b, all_seqblock_q=all_b,
            page_size=self.B, q_scale=None, k_scale=None, v_scale=None)
        return topk  # [Hkv, total_q, topk]

    def prefill_attn(self, topk):
        cu_b, max_b = self.blocks[:2]
        a = self.prob.args
        return self.sg["pf_attn"](
            q=a["q"], k_cache=self.k, v_cache=self.v, sink=None, req_to_token=self.req_to_token,
            slot_ids=self.slot_ids, topk_idx=topk, block_size_q=1, block_size_k=self.B, cu_seqlens=self.cu,
            seq_lens=self.seq_lens, prefix_lens=self.prefix, max_seqlen_q=self.max_q, sm_scale=None,
            cu_seqblocks_q=cu_b, max_seqblock_q=max_b, q_scale=None, k_scale=None, v_scale=None, loc_mapping=None)

    # decode (one query token per request) ----------------------------------------------------
    def decode(self):
        a = self.prob.args
        seq = self.seq_lens.long()
        _, topk, _ = self.sg["dec_idx"](
            q=a["q_idx"], sink=None, k_cache=self.idx_k, v_cache=None, req_to_token=self.req_to_token,
            seq_lens=seq, max_seqlen=self.max_k, slot_ids=self.slot_ids, block_size=self.B, topk=self.topk,
            init_blocks=self.init, local_blocks=self.local, sm_scale=None, score_type="max",
            disable_index_value=True, use_dense_main_attn=False, page_size=self.B, q_scale=None, k_scale=None,
            v_scale=None)
        return self.sg["dec_attn"](
            q=a["q"], sink=None, k_cache=self.k, v_cache=self.v, req_to_token=self.req_to_token, seq_lens=seq,
            slot_ids=self.slot_ids, block_size=self.B, topk_idx=topk, sm_scale=None, page_size=self.B,
            q_scale=None, k_scale=None, v_scale=None, hisparse_slots=None), topk


def as_msa_topk(topk_sg: torch.Tensor) -> torch.Tensor:
    """SGLang's [Hkv, total_q, topk] selection as msa_sgl's int32 [total_q, Hkv, topk]."""
    return topk_sg.permute(1, 0, 2).to(torch.int32).contiguous()
