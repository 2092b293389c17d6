"""8-bit index keys: quantize on store, and the indexer reading them, against the float64 reference.

The reference scores the same e4m3 values (keys ``k8 * scale``, each index query row rounded to
e4m3 after scaling by ``448 / max|q|``), so the kernels' selection must equal it up to ties of
the fp8 products' summation (harness.tolerance.EPS[float8_e4m3fn]).
"""

import pytest
import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNEL_DEVICE, KERNEL_PROBLEMS, KERNELS, kernel_examples
from harness.strategies import problems
from harness.tolerance import compare_topk, output_error
from msa_sgl import MSADecodeWrapper, reference

FP8 = torch.float8_e4m3fn
_FP8_PROBLEMS = {**KERNEL_PROBLEMS, "dtypes": tuple(d for d in KERNEL_PROBLEMS.get("dtypes", ("float16",))
                                                  if d != "float32") or ("float16",)}


def _quantized(problem):
    """The problem's index-key cache as 8-bit keys (every slot, poison included)."""
    k = problem.args()["k_idx_cache"]
    pages, B, d = k.shape
    k8 = torch.zeros(pages, B, d, dtype=FP8)
    scale = torch.zeros(pages, B, dtype=torch.float32)
    reference.quantize_index_keys(k.reshape(-1, d), torch.arange(pages * B), k8, scale)
    return k8, scale


def _dequantized(problem, k8, scale):
    from msa_sgl.ops.quant import quantize_e4m3_reference

    q8, qs = quantize_e4m3_reference(problem.args()["q_idx"])
    return q8.double() * qs.double()[..., None], k8.double() * scale.double()[..., None]


@settings(max_examples=kernel_examples())
@given(problem=problems(**_FP8_PROBLEMS))
def test_kernel_fp8_index_matches_reference(problem):
    note(problem.describe())
    k8, scale = _quantized(problem)
    ia = {**problem.index_args(), "k_idx_cache": k8, "k_idx_scale": scale}
    topk = KERNELS.index_topk(**ia)
    ref_topk = reference.index_topk(**ia)
    q_deq, k_deq = _dequantized(problem, k8, scale)
    report = compare_topk(topk, ref_topk, reference.index_scores(**ia), q_deq, torch.nan_to_num(k_deq), problem.config,
                          input_dtype=FP8)
    note(str(report))
    # both branches in one call: the main branch on that selection
    args = {**problem.msa_args(), "k_idx_cache": k8, "k_idx_scale": scale}
    out = KERNELS.msa_attention(**args)
    ref_out = reference.sparse_attention(**problem.attention_args(topk))
    output_error(out, ref_out, out.dtype)


@settings(max_examples=max(2, kernel_examples() // 5))
@given(problem=problems(**{**_FP8_PROBLEMS, "decode_only": True}), spare=st.integers(0, 2))
def test_kernel_fp8_decode_wrapper_equals_plain_api(problem, spare):
    note(problem.describe())
    k8, scale = _quantized(problem)
    s = problem.spec
    a = {k: (v.to(KERNEL_DEVICE) if isinstance(v, torch.Tensor) else v) for k, v in problem.msa_args().items()}
    w = MSADecodeWrapper(problem.config, num_q_heads=s.num_q_heads, num_kv_heads=s.num_kv_heads, head_dim=s.head_dim,
                         index_dim=s.index_dim, max_batch=len(s.q_lens) + spare,
                         max_pages=a["page_table"].shape[1] + spare, max_q_len=max(s.q_lens),
                         dtype=a["q"].dtype, device=KERNEL_DEVICE, index_fp8=True)
    w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], total_q=a["q"].shape[0])
    w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8.to(KERNEL_DEVICE), k_idx_scale=scale.to(KERNEL_DEVICE))
    plain = KERNELS.index_topk(**{**problem.index_args(), "k_idx_cache": k8, "k_idx_scale": scale})
    assert torch.equal(w.topk_idx.cpu(), plain), "wrapper's 8-bit selection != msa_sgl.index_topk's"


@pytest.mark.parametrize("keys_m", [0, 1], ids=["queries_x_keys", "keys_x_queries"])
@pytest.mark.parametrize("ahead_rows", [0, 1 << 30], ids=["scales_in_loop", "scales_ahead"])
@pytest.mark.parametrize("q_len,n_split", [(1, 3), (4, 5), (1, 1)], ids=["decode_3_splits", "mtp_5_splits", "one_split"])
def test_kernel_fp8_scale_paths_match_reference(ahead_rows, q_len, n_split, keys_m, monkeypatch):
    """The partial kernel's two ways of reading the key scales (prefetched a block ahead, as
    decode tiles do; loaded in the loop, as 128-row prefill tiles do) and its two forms of the
    block scores (queries x keys; keys x queries, the 8-bit decode tiles' form, index_branch.
    _KEYS_M_*), each forced on a request of 47 candidate blocks in a few long splits, with key
    magnitudes that differ by up to 2^6 between tokens (so a scale from the wrong block, or a
    block maximum over the wrong axis, changes the ranking): the selection equals the float64
    reference's on the same e4m3 values exactly (random data: no ties)."""
    from msa_sgl import MSAConfig
    from msa_sgl.ops import index_branch as ib

    B, D, HKV = 16, 16, 2
    config = MSAConfig(block_size=B, topk=6, num_init_blocks=1, num_local_blocks=1)
    g = torch.Generator().manual_seed(7 + q_len)
    seq_len = 48 * B + 3
    pages = 50
    table = (torch.randperm(pages - 1, generator=g)[:49] + 1).to(torch.int32)[None, :]
    k = torch.randn(pages, B, D, generator=g) * torch.exp2(torch.randint(-3, 4, (pages, B, 1), generator=g).float())
    k8 = torch.zeros(pages, B, D, dtype=FP8)
    scale = torch.zeros(pages, B, dtype=torch.float32)
    reference.quantize_index_keys(k.reshape(-1, D).half(), torch.arange(pages * B), k8, scale)
    ia = dict(q_idx=torch.randn(q_len, HKV, D, generator=g).half(), k_idx_cache=k8, k_idx_scale=scale,
              page_table=table, cu_seqlens_q=torch.tensor([0, q_len], dtype=torch.int32),
              seq_lens_k=torch.tensor([seq_len], dtype=torch.int32), config=config)
    monkeypatch.setattr(ib, "_SCALE_AHEAD_MAX_ROWS", ahead_rows)
    monkeypatch.setattr(ib, "_FORCE_N_SPLIT", n_split)
    monkeypatch.setattr(ib, "_KEYS_M_MAX_ROWS_FP8", 64 if keys_m else 0)
    monkeypatch.setattr(ib, "_KEYS_M_MAX_SPLIT_BLOCKS", 1 << 30)
    got = KERNELS.index_topk(**ia)
    assert torch.equal(got.cpu(), reference.index_topk(**ia)), "8-bit selection != reference"
