"""msa_sgl on SGLang 0.5.23's own pools (on the CPU, or on CUDA where there is a GPU): a real ReqToTokenPool and MiniMaxSparseKVPool,
K/V and index keys written through the pool's own setters at page-aligned, shuffled slots, then
read by msa_sgl through zero-copy paged views and a page table derived from req_to_token.

SGLang is installed with --no-deps plus the packages of ci/sglang-cpu-requirements.txt. Where it
is missing the module is skipped, unless MSA_REQUIRE_SGLANG=1 (ci/test.sh sets it), so CI cannot
pass by skipping.
"""

import os
from types import SimpleNamespace

import pytest
import torch

try:
    from sglang.srt.mem_cache.memory_pool import MiniMaxSparseKVPool, ReqToTokenPool
except ImportError as exc:  # pragma: no cover - depends on the environment
    if os.environ.get("MSA_REQUIRE_SGLANG") == "1":
        raise
    pytest.skip(f"sglang is not installed: {exc}", allow_module_level=True)

from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNELS, kernel_examples
from harness.problems import DTYPES, Problem, ProblemSpec
from harness.tolerance import compare_topk, lse_error, output_error
from msa_sgl import page_table_from_req_to_token, paged_view, reference

SPARSE_LAYER = 1
# SGLang picks its store path from the platform (on CUDA its own store kernel, which takes CUDA
# tensors only): the pools live where the kernels run.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def build_sglang_state(problem: Problem, seed: int):
    """Real pools holding the problem's requests; returns (msa_sgl kwargs, pool, req_to_token pool)."""
    spec, B = problem.spec, problem.spec.block_size
    gen = torch.Generator().manual_seed(seed)
    n_blocks = [(s + B - 1) // B for s in problem.seq_lens]
    num_pages = sum(n_blocks) + 2
    pool = MiniMaxSparseKVPool(
        size=num_pages * B, page_size=B, dtype=DTYPES[spec.dtype], head_num=spec.num_kv_heads,
        head_dim=spec.head_dim, idx_head_dim=spec.index_dim, dense_layer_ids=[0],
        sparse_layer_ids=[SPARSE_LAYER, 2], device=DEVICE, disable_value_sparse_layer_ids=[SPARSE_LAYER, 2],
        start_layer=0, end_layer=3,
    )
    batch = len(problem.requests)
    r2t = ReqToTokenPool(size=batch + 2, max_context_len=max(problem.seq_lens) + 4, device=DEVICE,
                         enable_memory_saver=False)
    # page 0 is SGLang's padding page; the requests own shuffled pages 1..
    physical = (torch.randperm(num_pages - 1, generator=gen) + 1).tolist()
    rows = (torch.randperm(batch + 2, generator=gen)[:batch] + 1).to(DEVICE, torch.int64)  # row 0: padding
    layer = SimpleNamespace(layer_id=SPARSE_LAYER)
    cursor = 0
    for b, req in enumerate(problem.requests):
        pages = torch.tensor(physical[cursor : cursor + n_blocks[b]])
        cursor += n_blocks[b]
        pos = torch.arange(req.seq_len)
        slots = (pages[pos // B] * B + pos % B).to(DEVICE)
        r2t.req_to_token[rows[b], : req.seq_len] = slots.to(torch.int32)
        pool.set_kv_buffer(layer, slots, req.k.to(DEVICE), req.v.to(DEVICE))
        pool.set_index_k_buffer(layer, slots, req.k_idx[:, None, :].to(DEVICE))
    index_buffer = pool.get_index_k_buffer(SPARSE_LAYER)  # [slots, 1, d_idx]
    width = r2t.req_to_token.shape[1]
    args = dict(
        q=problem.args()["q"],
        q_idx=problem.args()["q_idx"],
        k_cache=paged_view(pool.get_key_buffer(SPARSE_LAYER), B),
        v_cache=paged_view(pool.get_value_buffer(SPARSE_LAYER), B),
        k_idx_cache=paged_view(index_buffer.view(index_buffer.shape[0], -1), B),
        page_table=page_table_from_req_to_token(r2t.req_to_token, rows, B, -(-width // B)),
        cu_seqlens_q=problem.args()["cu_seqlens_q"],
        seq_lens_k=problem.args()["seq_lens_k"],
    )
    return args, pool


# the interpreter cannot run bf16 products; SGLang's pools hold 16-bit K/V on the GPU
TEST_DTYPES = ("float16", "float32") if DEVICE == "cpu" else ("bfloat16", "float16")


@settings(max_examples=kernel_examples())
@given(
    q_lens=st.lists(st.integers(0, 40), min_size=1, max_size=3),
    extra=st.lists(st.integers(0, 90), min_size=3, max_size=3),
    topk=st.integers(1, 6),
    dtype=st.sampled_from(TEST_DTYPES),
    seed=st.integers(0, 2**16),
)
def test_kernels_on_sglang_pools(q_lens, extra, topk, dtype, seed):
    seq_lens = tuple(max(1, q + e) for q, e in zip(q_lens, extra))
    spec = ProblemSpec(q_lens=tuple(q_lens), seq_lens=seq_lens, block_size=16, topk=topk, num_kv_heads=2,
                       group_size=4, head_dim=32, index_dim=16, dtype=dtype, seed=seed, layout_seed=seed + 1)
    problem = Problem.from_spec(spec)
    note(problem.describe())
    args, pool = build_sglang_state(problem, seed)
    assert args["k_cache"].data_ptr() == pool.get_key_buffer(SPARSE_LAYER).data_ptr()  # a view, no copy
    config = problem.config
    topk_idx = KERNELS.index_topk(**{k: args[k] for k in ("q_idx", "k_idx_cache", "page_table", "cu_seqlens_q",
                                                           "seq_lens_k")}, config=config)
    out, lse = KERNELS.msa_attention(**args, config=config, return_lse=True)
    # the same requests laid out by msa_sgl's own harness, through the float64 reference
    ref_args = problem.index_args()
    ref_topk = reference.index_topk(**ref_args)
    compare_topk(topk_idx, ref_topk, reference.index_scores(**ref_args), ref_args["q_idx"], ref_args["k_idx_cache"],
                 config)
    if torch.equal(topk_idx, ref_topk):
        ref_out, ref_lse = reference.sparse_attention(**problem.attention_args(ref_topk), return_lse=True)
        output_error(out, ref_out, out.dtype)
        lse_error(lse, ref_lse, out.dtype)
