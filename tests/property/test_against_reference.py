"""The kernels' outputs, LSE and selections against the float64 reference."""

import torch
from hypothesis import given, note, settings
from hypothesis import strategies as st

from harness.impls import KERNEL_PROBLEMS, KERNEL_VARIANTS, kernel_examples
from harness.strategies import problems
from harness.tolerance import compare_topk, lse_error, output_error
from msa_sgl import reference


@settings(max_examples=kernel_examples())
@given(kernels=st.sampled_from(KERNEL_VARIANTS), problem=problems(**KERNEL_PROBLEMS))
def test_kernel_msa_attention_matches_reference(kernels, problem):
    note(problem.describe())
    args = problem.msa_args()
    out, lse = kernels.msa_attention(**args, return_lse=True)
    assert out.dtype == args["q"].dtype and lse.dtype == torch.float32
    ref_topk = reference.index_topk(**problem.index_args())
    ref_out, ref_lse = reference.sparse_attention(**problem.attention_args(ref_topk), return_lse=True)
    topk = kernels.index_topk(**problem.index_args())
    report = compare_topk(
        topk, ref_topk, reference.index_scores(**problem.index_args()), args["q_idx"], args["k_idx_cache"], problem.config
    )
    if report.differing_rows == 0:
        note(str(output_error(out, ref_out, out.dtype)))
        lse_error(lse, ref_lse, out.dtype)
    # the main branch alone, on the reference's selection
    out2, lse2 = kernels.sparse_attention(**problem.attention_args(ref_topk), return_lse=True)
    output_error(out2, ref_out, out2.dtype)
    lse_error(lse2, ref_lse, out2.dtype)
