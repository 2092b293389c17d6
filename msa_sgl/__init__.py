"""msa_sgl: MiniMax Sparse Attention (MSA) for NVIDIA Hopper, for SGLang.

Layouts (every entry point; the contract is ../shared/MSA.md of the project):

    q            [total_q, Hq, D]                 queries of all requests, packed (varlen)
    q_idx        [total_q, Hkv, d_idx]            index queries, one head per KV group
    k_cache      [num_pages, block_size, Hkv, D]  paged keys (page = one KV block)
    v_cache      [num_pages, block_size, Hkv, D]  paged values
    k_idx_cache  [num_pages, block_size, d_idx]   paged index keys, one head shared by all groups
                                                  (q_idx's dtype, or float8_e4m3fn with
    k_idx_scale  float32 [num_pages, block_size]  per-token scales: 8-bit keys, see
                                                  msa_sgl.quantize_index_keys)
    page_table   int32 [batch, max_pages]         logical block -> physical page, per request
    cu_seqlens_q int32 [batch + 1]                query offsets: request b owns rows
                                                  cu_seqlens_q[b]:cu_seqlens_q[b+1]
    seq_lens_k   int32 [batch]                    keys in the cache per request, this call's
                                                  new tokens included
    topk_idx     int32 [total_q, Hkv, topk]       selected logical blocks, ascending, -1 tail
    out          [total_q, Hq, D]                 q's dtype
    lse          float32 [total_q, Hq]            natural-log logsumexp of the scaled logits

Queries are bottom-right aligned: query i of request b sits at position
``seq_lens_k[b] - q_len[b] + i`` and sees keys ``0..pos``. Prefill, chunked prefill (a cached
prefix), decode and multi-token decode are all this one call. SGLang's flat ``[slots, H, D]``
pools are viewed as paged caches without a copy (msa_sgl.paging).

Host-side checks (shapes, dtypes, devices, strides) raise ValueError naming the argument.
Device values (page ids, lengths) are not read in the hot path: they must satisfy
``0 <= q_len <= seq_len_k <= max_pages * block_size`` and page ids in ``[0, num_pages)`` for
the pages a request uses; ``msa_sgl.validate_metadata`` checks them on demand.
"""

from . import reference
from ._validate import validate_metadata
from .api import index_topk, msa_attention, quantize_index_keys, sparse_attention
from .config import MSAConfig
from .decode import MSADecodeWrapper
from .paging import page_table_from_req_to_token, paged_view
from .prefill import MSAPrefillWrapper

__version__ = "0.1.0.dev0"

__all__ = [
    "MSAConfig",
    "index_topk",
    "sparse_attention",
    "msa_attention",
    "quantize_index_keys",
    "MSADecodeWrapper",
    "MSAPrefillWrapper",
    "reference",
    "validate_metadata",
    "paged_view",
    "page_table_from_req_to_token",
]
