"""Every implementation's outputs, LSE and selections against the float64 reference."""

import pytest
import torch
from hypothesis import given, note

from harness.impls import IMPLEMENTATIONS
from harness.strategies import problems
from harness.tolerance import compare_topk, lse_error, output_error
from msa_sgl import reference


@pytest.mark.parametrize("impl_name", sorted(IMPLEMENTATIONS))
@given(problem=problems())
def test_msa_attention_matches_reference(impl_name, problem):
    note(problem.describe())
    impl = IMPLEMENTATIONS[impl_name]
    args = problem.msa_args()
    out, lse = impl.msa_attention(**args, return_lse=True)
    assert out.dtype == (torch.float64 if impl is reference else args["q"].dtype)
    ref_topk = reference.index_topk(**problem.index_args())
    ref_out, ref_lse = reference.sparse_attention(**problem.attention_args(ref_topk), return_lse=True)
    topk = impl.index_topk(**problem.index_args())
    report = compare_topk(
        topk, ref_topk, reference.index_scores(**problem.index_args()), args["q_idx"], args["k_idx_cache"], problem.config
    )
    if report.differing_rows == 0:
        note(str(output_error(out, ref_out, out.dtype)))
        lse_error(lse, ref_lse, out.dtype)
    # the main branch alone, on the reference's selection
    out2, lse2 = impl.sparse_attention(**problem.attention_args(ref_topk), return_lse=True)
    output_error(out2, ref_out, out2.dtype)
    lse_error(lse2, ref_lse, out2.dtype)
